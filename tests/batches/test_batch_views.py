"""IMPORT SNAPSHOTS as an operator, an auditor and another team, over the sandbox's store."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from importer.batches.models import ImportBatch
from importer.imports.models import ImportJob
from importer.teams.models import Role
from sandbox.run import Sandbox
from tests.batches.test_batches import manifest
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db


def operator_client(
    client: Client, role: str = Role.OPERATOR, team_name: str = "ops", who: str = ""
) -> Client:
    username = f"{role}-{team_name}{who}"
    client.force_login(make_user(username, team=make_team(team_name), role=role))
    return client


def confirm_fields(page: str) -> dict[str, str]:
    form = page[page.index('action="/imports/batches/create"') :]
    return dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', form))


def test_a_pasted_manifest_is_previewed_then_imported_once_as_a_batch(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    operator_client(client)
    good = api_on_sandbox.presign(expires=6 * 3600)
    signature = parse_qs(urlsplit(good).query)["X-Amz-Signature"][0]
    text = manifest(
        {"name": "web-1", "url": good, "tags": "env=prod"},
        {"name": "web-2", "url": good, "size": "lots"},
    )
    page = client.post(reverse("batch_new"), {"manifest": text})
    body = page.content.decode()
    assert page.status_code == 200 and "Import 1 snapshot" in body
    assert "Refused" in body and "whole number of bytes" in body
    assert signature not in body  # the manifest goes back encrypted, never in clear
    assert not ImportJob.objects.exists()
    fields = confirm_fields(body)
    first = client.post(reverse("batch_create"), fields)
    second = client.post(reverse("batch_create"), fields)
    batch = ImportBatch.objects.get()
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == reverse("batch_detail", args=[batch.pk])
    assert [job.name for job in batch.jobs.all()] == ["web-1"]
    detail = client.get(first["Location"]).content.decode()
    assert "web-1" in detail and 'hx-trigger="every 3s"' in detail and signature not in detail


def test_an_uploaded_file_is_read_and_a_refused_manifest_says_why(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    operator_client(client)
    upload = SimpleUploadedFile("estate.csv", b"\x89PNG\r\n\x1a\n\x00\x00binary")
    refused = client.post(reverse("batch_new"), {"manifest_file": upload})
    assert refused.status_code == 422 and "cannot be imported" in refused.content.decode()
    empty = client.post(reverse("batch_new"), {"manifest": "  "})
    assert (
        empty.status_code == 422 and "Paste a manifest or choose its file" in empty.content.decode()
    )
    text = manifest({"name": "from-file", "url": api_on_sandbox.presign(expires=6 * 3600)})
    good = client.post(
        reverse("batch_new"), {"manifest_file": SimpleUploadedFile("estate.csv", text.encode())}
    )
    assert good.status_code == 200 and "Preview of estate.csv" in good.content.decode()


def test_a_tampered_or_foreign_preview_imports_nothing(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    operator_client(client)
    text = manifest({"name": "x", "url": api_on_sandbox.presign(expires=6 * 3600)})
    fields = confirm_fields(client.post(reverse("batch_new"), {"manifest": text}).content.decode())
    tampered = client.post(reverse("batch_create"), {**fields, "manifest_token": "garbage"})
    assert tampered.status_code == 422 and "paste the manifest again" in tampered.content.decode()
    other = operator_client(Client(), team_name="ops", who="-2")
    foreign = other.post(reverse("batch_create"), fields)
    assert foreign.status_code == 422
    assert not ImportJob.objects.exists() and not ImportBatch.objects.exists()


def test_auditors_cannot_import_many_and_other_teams_see_no_batch(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    operator_client(client)
    text = manifest({"name": "x", "url": api_on_sandbox.presign(expires=6 * 3600)})
    fields = confirm_fields(client.post(reverse("batch_new"), {"manifest": text}).content.decode())
    batch_url = client.post(reverse("batch_create"), fields)["Location"]
    auditor = operator_client(Client(), role=Role.AUDITOR)
    assert auditor.get(reverse("batch_new")).status_code == 403
    assert auditor.get(batch_url).status_code == 200
    stranger = operator_client(Client(), team_name="elsewhere")
    assert stranger.get(batch_url).status_code == 404
