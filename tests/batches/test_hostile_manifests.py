"""Hostile manifests posted through IMPORT SNAPSHOTS itself, pasted and uploaded: each gets a
clear message in the page, never a 500, and leaves nothing behind (no batch, no job).

tests/batches/test_manifest.py checks the reader's every message word for word; these check
that the page a person sees says it, whichever way the manifest arrived. The last test holds
the batch's bulk writes (imports_create_many) to what the dialog saves for one job.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import time
import uuid
import zipfile
from collections.abc import Callable
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from importer.batches.manifest import MAX_BYTES
from importer.batches.models import ImportBatch
from importer.imports.models import ImportJob
from importer.teams.models import Role
from sandbox.run import Sandbox
from tests.batches.test_batch_views import confirm_fields
from tests.batches.test_batches import manifest
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db

URL = "https://oos.eu-west-2.outscale.com/bucket/disk.qcow2?X-Amz-Signature=abc"
FORMULA = "so it looks like a spreadsheet formula"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("manifest.csv", "name,url\nweb-1,https://x\n")
    return out.getvalue()


@pytest.fixture
def operator(client: Client) -> Client:
    client.force_login(make_user("hostile-op", team=make_team("ops"), role=Role.OPERATOR))
    return client


def pasted(client: Client, text: str) -> tuple[int, str]:
    answer = client.post(reverse("batch_new"), {"manifest": text})
    return answer.status_code, answer.content.decode()


def uploaded(client: Client, data: bytes, name: str = "estate.csv") -> tuple[int, str]:
    answer = client.post(reverse("batch_new"), {"manifest_file": SimpleUploadedFile(name, data)})
    return answer.status_code, answer.content.decode()


def said(page: str) -> str:
    """The page's text as a person reads it: tags removed, entities decoded, spaces folded."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page)))


def refused_whole(status: int, page: str, *words: str) -> None:
    assert status == 422
    text = said(page)
    assert "This manifest cannot be imported." in text
    for word in words:
        assert word in text
    assert not ImportBatch.objects.exists() and not ImportJob.objects.exists()


BOTH_WAYS: list[Callable[[Client, str], tuple[int, str]]] = [
    pasted,
    lambda client, text: uploaded(client, text.encode()),
]


@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_a_wrong_header_names_the_header_to_use(operator: Client, send) -> None:
    status, page = send(operator, f"snapshot,link\nweb-1,{URL}\n")
    refused_whole(status, page, "The first line must be the header, such as")
    assert "name,description,url,size,tags" in said(page)


@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_10001_rows_are_refused_with_their_count_and_how_to_split(operator: Client, send) -> None:
    text = "name,url\n" + "".join(f"s{i},https://x/{i}\n" for i in range(10_001))
    status, page = send(operator, text)
    refused_whole(status, page, "at most 500 rows; this one has 10,001", "batches of 500")


def test_50_mb_pasted_is_answered_by_the_oversize_page_before_anything_reads_it(
    operator: Client,
) -> None:
    started = time.monotonic()
    answer = operator.post(reverse("batch_new"), {"manifest": "x" * 50_000_000})
    assert answer.status_code == 413
    assert "files of at most 2 MiB and 500 rows" in said(answer.content.decode())
    assert time.monotonic() - started < 15
    assert not ImportBatch.objects.exists()


def test_50_mb_uploaded_is_refused_by_its_size_without_being_read(operator: Client) -> None:
    status, page = uploaded(operator, b"name,url\n" + b"x" * 50_000_000)
    assert status == 422
    text = said(page)
    assert f"A manifest is at most 2 MiB ({MAX_BYTES:,} bytes); this file is 47.7 MiB" in text
    assert "Split it into manifests of at most 500 rows" in text
    assert not ImportBatch.objects.exists()


@pytest.mark.parametrize(
    ("data", "kind"),
    [(PNG, "a PNG image"), (zip_bytes(), "a ZIP archive or an Excel workbook (.xlsx)")],
    ids=["png", "zip"],
)
def test_a_binary_file_is_named_for_what_it_is(operator: Client, data: bytes, kind: str) -> None:
    status, page = uploaded(operator, data)
    refused_whole(status, page, f"it looks like {kind}", "Upload a CSV or JSON lines file")


def test_binary_pasted_as_text_is_refused_in_words(operator: Client) -> None:
    # What a browser sends when a PNG's bytes are pasted: the text they decode to, NULs and all.
    status, page = pasted(operator, PNG.decode("latin-1"))
    assert status == 422
    assert "contains NUL characters, as binary files do" in said(page)
    assert not ImportBatch.objects.exists()


@pytest.mark.parametrize("start", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)"])
@pytest.mark.parametrize("column", ["name", "description"])
@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_formula_cells_are_refused_in_their_row(
    operator: Client, send, start: str, column: str
) -> None:
    row = {"name": "web-1", "url": URL, column: start}
    status, page = send(operator, manifest(row))
    assert status == 422  # the only row is refused: nothing to import
    text = said(page)
    assert f"The {column} starts with" in text and FORMULA in text
    assert "Import 1 snapshot" not in text and not ImportJob.objects.exists()


def exported_cells(client: Client, url: str) -> list[str]:
    answer = client.get(url)
    assert answer.status_code == 200, url
    body = b"".join(answer.streaming_content).decode()
    return [cell for line in csv.reader(io.StringIO(body)) for cell in line]


def test_no_export_writes_a_formula_back_unescaped(client: Client, api_on_sandbox: Sandbox) -> None:
    admin = make_user("hostile-admin", team=make_team("ops"), role=Role.ADMIN)
    client.force_login(admin)
    good = api_on_sandbox.presign(expires=6 * 3600)
    text = manifest(
        {"name": "web-1", "url": good, "description": "daily"},
        {"name": '=HYPERLINK("http://evil")', "url": good},
        {"name": "web-2", "url": good, "description": "@SUM(A1)"},
        {"name": "web-3", "url": good, "tags": "+x=1"},
    )
    # The file's name is the person's too, and it is kept as the batch's source.
    upload = SimpleUploadedFile("=cmd|' calc'!A0.csv", text.encode())
    page = client.post(reverse("batch_new"), {"manifest_file": upload}).content.decode()
    assert "Import 1 snapshot" in page
    # As a browser sends them back: the entities of the page decoded.
    fields = {name: unescape(value) for name, value in confirm_fields(page).items()}
    created = client.post(reverse("batch_create"), fields)
    assert created.status_code == 302
    assert list(ImportJob.objects.values_list("name", flat=True)) == ["web-1"]
    batch = ImportBatch.objects.get()
    exports = [
        reverse("history_csv"),
        reverse("audit_log_csv"),
        reverse("batch_csv", args=[batch.pk]),
    ]
    for url in exports:
        cells = exported_cells(client, url)
        assert cells, url
        dangerous = [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
        assert dangerous == [], url
    audit = exported_cells(client, reverse("audit_log_csv"))
    # The file's name is exported, inside the batch's audit details: never at a cell's start.
    assert any("=cmd|' calc'!A0.csv" in cell for cell in audit)


@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_duplicate_names_are_refused_naming_the_first_line(operator: Client, send) -> None:
    status, page = send(
        operator, manifest({"name": "web-1", "url": URL}, {"name": "web-1", "url": URL})
    )
    assert 'The name "web-1" is already used on line 2' in said(page)
    assert not ImportJob.objects.exists()
    del status


def test_a_nul_in_an_uploaded_file_is_refused_as_binary(operator: Client) -> None:
    status, page = uploaded(operator, f"name,url\nweb\x00-1,{URL}\n".encode())
    refused_whole(status, page, "it contains NUL bytes")


def test_a_nul_pasted_is_refused_in_words(operator: Client) -> None:
    status, page = pasted(operator, f"name,url\nweb\x00-1,{URL}\n")
    assert status == 422 and "contains NUL characters" in said(page)


@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_a_control_character_in_a_name_refuses_its_row(operator: Client, send) -> None:
    status, page = send(operator, manifest({"name": "web\x07bell", "url": URL}))
    assert status == 422
    assert "invisible or control character (U+0007)" in said(page)
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_a_manifest_full_of_control_characters_is_refused_as_binary(operator: Client, send) -> None:
    status, page = send(operator, "name,url\n" + "\x01\x02\x03\x1b" * 200)
    refused_whole(status, page, "full of control characters")


def test_latin1_bytes_inside_utf8_are_named_with_their_line(operator: Client) -> None:
    data = f"name,url\nvolumé-1,{URL}\n".encode() + f"caf\xe9,{URL}\n".encode("latin-1")
    status, page = uploaded(operator, data)
    refused_whole(status, page, "byte 0xE9", "on line 3", "mixes encodings", "CSV UTF-8")


def test_utf16_with_its_bom_is_told_to_be_saved_as_utf8(operator: Client) -> None:
    data = codecs.BOM_UTF16_LE + f"name,url\nweb-1,{URL}\n".encode("utf-16-le")
    status, page = uploaded(operator, data)
    refused_whole(status, page, "saved as UTF-16 text", "Save the file as UTF-8")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"name": 5, "url": URL}, "The name is a number; write it as text in double quotes."),
        ({"name": "a", "url": URL, "size": "big"}, "whole number of bytes"),
        ({"name": "a", "url": URL, "size": True}, "The size is true or false"),
        ({"name": "a", "url": URL, "size": 1.5}, "The size is a number; write it as a whole"),
        ({"name": "a", "url": {"href": URL}}, "The url is an object; write it as text"),
        ({"name": ["a"], "url": URL}, "The name is a list"),
        ({"name": "a", "url": URL, "tags": {"env": {"deep": 1}}}, "tag"),
        ({"name": "a", "url": URL, "owner": "me"}, 'unknown key "owner"'),
    ],
    ids=[
        "name-number",
        "size-text",
        "size-bool",
        "size-fraction",
        "url-object",
        "name-list",
        "tags-nested",
        "unknown-key",
    ],
)
@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_json_lines_of_the_wrong_types_refuse_their_row(
    operator: Client, send, line: dict[str, object], problem: str
) -> None:
    status, page = send(operator, json.dumps(line) + "\n")
    assert status == 422
    assert problem in said(page)
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"name": "a", "url": "u", "size": ' + "9" * 5000 + "}", "number too long to read"),
        ('{"name": "a", "url": "u", "size": 1e400}', "The size is a number"),
        ('{"name": "a", "url": "u", "size": NaN}', "The size is a number"),
        ('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests too deeply"),
        ('{"name": "a", "name": "b", "url": "u"}', 'the key "name" twice'),
        ("[1, 2]", "This looks like a JSON array, not JSON lines"),
        ('{"name": "a", "url": "u"}\n17', "This line is a number, not an object"),
        ('{"name": "a", "url": ', "is not valid JSON"),
    ],
    ids=["huge-int", "huge-float", "nan", "deep", "twice", "array", "number", "cut-short"],
)
@pytest.mark.parametrize("send", BOTH_WAYS, ids=["pasted", "uploaded"])
def test_hostile_json_lines_refuse_their_row_in_words(
    operator: Client, send, text: str, problem: str
) -> None:
    status, page = send(operator, text + "\n")
    assert status == 422
    assert problem in said(page)
    assert not ImportJob.objects.exists()


def test_a_size_too_big_for_the_api_is_refused_by_the_dialogs_own_check(
    operator: Client, api_on_sandbox: Sandbox
) -> None:
    line = {"name": "a", "url": api_on_sandbox.presign(expires=6 * 3600), "size": 10**30}
    status, page = pasted(operator, json.dumps(line) + "\n")
    assert status == 422
    assert "Refused" in page and "Snapshot Size" in said(page)
    assert not ImportJob.objects.exists()


def test_a_batchs_jobs_are_saved_as_the_dialog_saves_one_and_queued_after_commit(
    api_on_sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks,
) -> None:
    # batch_create writes its jobs in bulk (imports_create_many): what it saves must be what
    # import_create saves for one job of the dialog, and nothing reaches the queue before commit.
    from django.db import transaction

    from importer.audit.models import AuditAction, AuditEvent
    from importer.batches import services
    from importer.batches.forms import preview_manifest
    from importer.imports import services as import_services

    sent: list[str] = []
    from importer.imports import slots

    for module in (import_services, slots):
        monkeypatch.setattr(
            module, "enqueue", lambda name, *, row_id, countdown=0: sent.append(str(row_id))
        )
    team, user = make_team("ops"), make_user("bulk-op", team=make_team("ops"))
    good = api_on_sandbox.presign(expires=6 * 3600)
    signature = good.rsplit("X-Amz-Signature=", 1)[1].split("&")[0]
    preview = preview_manifest(
        manifest({"name": "one", "url": good, "tags": "env=prod"}, {"name": "two", "url": good})
    )
    dialog = import_services.import_create(
        team=team,
        user=user,
        name="dialog",
        description="",
        url=preview.rows[0].url,
        snapshot_size=preview.rows[0].snapshot_size,
    )
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        batch, _ = services.batch_create(
            team=team, user=user, preview=preview, key=uuid.uuid4(), ip="10.0.0.1"
        )
        assert sent == []  # not before the commit
    assert callbacks
    jobs = list(batch.jobs.order_by("name"))
    # The team has free slots for both: they are queued, each sent once.
    assert sorted(sent) == sorted(str(job.pk) for job in jobs)
    for job in jobs:
        assert job.state == dialog.state and job.submitted_by == user
        assert job.url_redacted == dialog.url_redacted and signature not in job.url_redacted
        assert signature not in job.url_encrypted
        assert [event.message for event in job.events.all()] == [
            "Submitted by bulk-op.",
            "A slot is free: queued for sending.",
        ]
        entry = AuditEvent.objects.get(action=AuditAction.IMPORT_SUBMITTED, target=str(job.pk))
        assert entry.ip == "10.0.0.1" and entry.details["name"] == job.name
        assert entry.details["object"] == job.url_redacted
    assert jobs[0].tags == {"env": "prod"}
