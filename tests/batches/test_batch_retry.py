"""RETRY FAILED ROWS: a new manifest for a batch's failed rows, matched by name, imported again
in the same batch, once; over the sandbox's object store."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from importer.audit.models import AuditAction, AuditEvent
from importer.batches import retry
from importer.batches.forms import preview_manifest
from importer.batches.models import ImportBatch
from importer.imports.models import ImportJob, JobState
from importer.teams.models import Role, Team
from sandbox.run import Sandbox
from tests.batches.test_batches import manifest
from tests.support.factories import make_job, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def team() -> Team:
    return make_team("ops")


@pytest.fixture
def operator(team: Team) -> User:
    return make_user("op", team=team, role=Role.OPERATOR)


@pytest.fixture
def batch(operator: User, team: Team) -> ImportBatch:
    """A batch of three rows: web-1 and web-3 failed, web-2 completed."""
    batch = ImportBatch.objects.create(team=team, created_by=operator, source_name="estate.csv")
    for name in ("web-1", "web-2", "web-3"):
        job = make_job(operator, name=name, batch=batch)
        if name == "web-2":
            ImportJob.objects.filter(pk=job.pk).update(state=JobState.COMPLETED, progress=100)
        else:
            job.mark_failed(code="9999", type="ObjectNotFound", details="The object is gone.")
    return batch


def confirm_fields(page: str) -> dict[str, str]:
    form = page[page.index('class="preview-confirm"') :]
    return dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', form))


def preview(client: Client, batch: ImportBatch, text: str) -> tuple[int, str]:
    response = client.post(reverse("batch_retry", args=[batch.pk]), {"manifest": text})
    return response.status_code, response.content.decode()


def test_it_retries_the_failed_rows_in_the_same_batch_once(
    api_on_sandbox: Sandbox, client: Client, operator: User, batch: ImportBatch
) -> None:
    client.force_login(operator)
    good = api_on_sandbox.presign(expires=6 * 3600)
    signature = parse_qs(urlsplit(good).query)["X-Amz-Signature"][0]
    status, body = preview(
        client,
        batch,
        manifest(
            {"name": "web-1", "url": good, "tags": "env=prod"},
            {"name": "web-2", "url": good},
            {"name": "brand-new", "url": good},
        ),
    )
    assert status == 200 and signature not in body
    assert "Retry 1 row in this batch" in body
    assert "&quot;web-2&quot; is not a failed row of this batch" in body
    assert "&quot;brand-new&quot; is not a failed row of this batch" in body
    fields = confirm_fields(body)
    confirm = reverse("batch_retry_confirm", args=[batch.pk])
    first, second = client.post(confirm, fields), client.post(confirm, fields)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == reverse("batch_detail", args=[batch.pk])
    jobs = batch.jobs.filter(name="web-1").order_by("created_at")
    assert [job.state for job in jobs] == [JobState.ERROR, JobState.QUEUED]  # the old one stays
    assert jobs.last().tags == {"env": "prod"} and batch.jobs.count() == 4
    assert not ImportJob.objects.filter(name="brand-new").exists()
    audits = AuditEvent.objects.filter(action=AuditAction.BATCH_RETRIED, target=str(batch.pk))
    assert [audit.details["imports"] for audit in audits] == [1]
    page = client.get(first["Location"]).content.decode()
    assert "1 failed row imported again in this batch." in page
    # The batch's rows are the latest job of each name: web-1 is queued again, web-3 still failed.
    assert "Failed rows (1)" in page and "1 queued" in page and "3 rows" in page
    assert "1 earlier failed job of retried rows is kept as history" in page
    assert signature not in page


def test_a_manifest_without_a_failed_row_is_refused_and_imports_nothing(
    api_on_sandbox: Sandbox, client: Client, operator: User, batch: ImportBatch
) -> None:
    client.force_login(operator)
    good = api_on_sandbox.presign(expires=6 * 3600)
    status, body = preview(client, batch, manifest({"name": "web-2", "url": good}))
    assert status == 422 and "is not a failed row of this batch" in body
    assert "preview-confirm" not in body
    status, body = preview(client, batch, "   ")
    assert status == 422 and "Paste a manifest or choose its file" in body
    assert batch.jobs.count() == 3


def test_a_tampered_preview_imports_nothing(
    api_on_sandbox: Sandbox, client: Client, operator: User, batch: ImportBatch
) -> None:
    client.force_login(operator)
    good = api_on_sandbox.presign(expires=6 * 3600)
    _, body = preview(client, batch, manifest({"name": "web-1", "url": good}))
    fields = confirm_fields(body)
    confirm = reverse("batch_retry_confirm", args=[batch.pk])
    tampered = client.post(confirm, {**fields, "manifest_token": "garbage"})
    assert tampered.status_code == 422 and "paste the manifest again" in tampered.content.decode()
    forged = client.post(confirm, {**fields, "idempotency_key": str(uuid.uuid4())})
    assert forged.status_code == 422
    assert batch.jobs.count() == 3


def test_the_form_offers_the_failed_rows_with_their_url_left_empty(
    client: Client, operator: User, batch: ImportBatch
) -> None:
    client.force_login(operator)
    body = client.get(reverse("batch_retry", args=[batch.pk])).content.decode()
    assert "2 failed rows: web-1, web-3" in body
    assert "&quot;name&quot;: &quot;web-3&quot;" in body and "web-2&quot;" not in body
    healthy = ImportBatch.objects.create(team=batch.team, created_by=operator)
    make_job(operator, name="fine", batch=healthy)
    calm = client.get(reverse("batch_retry", args=[healthy.pk])).content.decode()
    assert "This batch has no failed row to retry now" in calm


def test_auditors_cannot_retry_and_other_teams_see_no_batch(
    client: Client, team: Team, batch: ImportBatch
) -> None:
    client.force_login(make_user("aud", team=team, role=Role.AUDITOR))
    for name in ("batch_retry", "batch_retry_confirm"):
        assert client.post(reverse(name, args=[batch.pk])).status_code == 403
    assert client.get(reverse("batch_retry", args=[batch.pk])).status_code == 403
    stranger = Client()
    stranger.force_login(make_user("far", team=make_team("elsewhere"), role=Role.OPERATOR))
    assert stranger.get(reverse("batch_retry", args=[batch.pk])).status_code == 404
    assert stranger.post(reverse("batch_retry_confirm", args=[batch.pk])).status_code == 404


def test_two_retries_with_different_keys_cannot_both_retry_a_row(
    api_on_sandbox: Sandbox, operator: User, team: Team, batch: ImportBatch
) -> None:
    good = api_on_sandbox.presign(expires=6 * 3600)
    rows = preview_manifest(manifest({"name": "web-1", "url": good}))
    made, created = retry.batch_retry(
        team=team, user=operator, batch=batch, preview=rows, key=uuid.uuid4()
    )
    assert (made, created) == (1, True)
    with pytest.raises(retry.NothingToRetry):
        retry.batch_retry(team=team, user=operator, batch=batch, preview=rows, key=uuid.uuid4())
    assert batch.jobs.filter(name="web-1").count() == 2
