"""A manifest previewed row by row against the sandbox's object store, then imported as a batch."""

from __future__ import annotations

import csv
import io
import uuid

import pytest

from importer.audit.models import AuditAction, AuditEvent
from importer.batches import services
from importer.batches.forms import preview_manifest
from importer.batches.models import ImportBatch
from importer.batches.rows import READY, REFUSED, WARNING
from importer.imports.models import ImportJob
from sandbox.run import Sandbox
from sandbox.store import DEMO_VIRTUAL_SIZE
from tests.support.factories import make_team, make_user

pytestmark = pytest.mark.django_db

GIB = 1024**3


def manifest(*rows: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["name", "description", "url", "size", "tags"])
    writer.writeheader()
    for row in rows:
        writer.writerow({"description": "", "size": "", "tags": "", **row})
    return out.getvalue()


def test_each_row_gets_the_dialogs_verdict_and_an_empty_size_comes_from_the_image(
    api_on_sandbox: Sandbox,
) -> None:
    good = api_on_sandbox.presign(expires=6 * 3600)
    preview = preview_manifest(
        manifest(
            {"name": "web-1", "url": good, "tags": "env=prod;team=web"},
            {"name": "web-2", "url": good, "size": str(20 * GIB)},
            {"name": "soon", "url": api_on_sandbox.presign(expires=1200), "size": str(10 * GIB)},
            {"name": "small", "url": good, "size": "1024"},
            {"name": "=cmd()", "url": good},
            {"name": "web-1", "url": good},
            {"name": "no-url", "url": "https://example.com/x"},
        )
    )
    assert preview.problem == ""
    verdicts = [(row.row.name, row.verdict) for row in preview.rows]
    assert verdicts == [
        ("web-1", READY),
        ("web-2", WARNING),
        ("soon", WARNING),
        ("small", REFUSED),
        ("=cmd()", REFUSED),
        ("web-1", REFUSED),
        ("no-url", REFUSED),
    ]
    first, bigger, soon, small, formula, twice, foreign = preview.rows
    assert first.snapshot_size == DEMO_VIRTUAL_SIZE and first.size_found
    assert first.row.tags == {"env": "prod", "team": "web"}
    assert "above what the image needs" in bigger.messages[0]
    assert "expires in" in soon.messages[0]
    assert any("needs at least" in message for message in small.messages)
    assert "spreadsheet formula" in formula.messages[0]
    assert "line 2" in twice.messages[0].lower()
    assert foreign.messages and foreign.url is None
    assert all(
        good.split("?")[1] not in message for row in preview.rows for message in row.messages
    )


def test_a_manifest_refused_whole_says_why_and_previews_nothing() -> None:
    preview = preview_manifest("nom,lien\nx,y\n")
    assert preview.rows == () and "Add the header as the first line" in preview.problem


def test_the_ready_rows_become_one_batch_once_and_refused_rows_leave_nothing(
    api_on_sandbox: Sandbox,
) -> None:
    team = make_team("ops")
    user = make_user("bulk", team=team)
    good = api_on_sandbox.presign(expires=6 * 3600)
    preview = preview_manifest(
        manifest(
            {"name": "a", "url": good, "tags": "env=prod"},
            {"name": "b", "url": good, "size": str(12 * GIB)},
            {"name": "bad", "url": good, "size": "lots"},
        )
    )
    key = uuid.uuid4()
    batch, created = services.batch_create(
        team=team, user=user, preview=preview, key=key, source_name="estate.csv"
    )
    assert created and batch.pk == key
    jobs = {job.name: job for job in batch.jobs.all()}
    assert set(jobs) == {"a", "b"} and ImportJob.objects.count() == 2
    assert jobs["a"].tags == {"env": "prod"} and jobs["a"].snapshot_size == DEMO_VIRTUAL_SIZE
    assert jobs["b"].snapshot_size == 12 * GIB and jobs["b"].url_redacted
    again, created_again = services.batch_create(
        team=team, user=user, preview=preview, key=key, source_name="estate.csv"
    )
    assert (again.pk, created_again) == (batch.pk, False)
    assert ImportJob.objects.count() == 2 and ImportBatch.objects.count() == 1
    entry = AuditEvent.objects.get(action=AuditAction.BATCH_SUBMITTED)
    assert entry.details["imports"] == 2 and entry.details["refused"] == 1
    assert AuditEvent.objects.filter(action=AuditAction.IMPORT_SUBMITTED).count() == 2


def test_a_manifest_with_no_ready_row_makes_no_batch(api_on_sandbox: Sandbox) -> None:
    team = make_team("ops")
    user = make_user("bulk", team=team)
    preview = preview_manifest(manifest({"name": "x", "url": "not a url"}))
    with pytest.raises(services.NothingToImport):
        services.batch_create(team=team, user=user, preview=preview, key=uuid.uuid4())
    assert not ImportBatch.objects.exists() and not ImportJob.objects.exists()
