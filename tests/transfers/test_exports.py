"""Export, share and copy over the sandbox (API and object store over real HTTP), in-process.

The services are called step by step here, as the worker would call them; test_exports_worker.py
runs the same journey on real Celery workers.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from html import escape
from typing import Any

import pytest
import responses
from django.db import connection
from django.test import Client
from django.utils import timezone

from importer.core.crypto import encrypt_text
from importer.imports import polling
from importer.imports import services as imports_services
from importer.imports.models import ImportJob, JobState
from importer.jobs.polling import POLL_FAILED_UNEXPECTEDLY, VANISHED_GRACE
from importer.outscale import accounts
from importer.outscale.accounts import presign_object
from importer.outscale.paginator import pages_for
from importer.presigned.policy import url_policy
from importer.presigned.urls import parse_presigned_url
from importer.teams.models import Role, Team
from importer.transfers.copies import copies_advance, copy_create
from importer.transfers.models import (
    CopyChain,
    CopyState,
    ExportDestination,
    ExportState,
    ExportTask,
    SharedUrl,
)
from importer.transfers.polling import exports_poll
from importer.transfers.services import (
    ExportNotShareable,
    export_create,
    export_submit,
    share_create,
)
from sandbox.run import Sandbox
from sandbox.signing import Account
from tests.support.factories import make_team, make_user
from tests.support.openapi_spec import validate_request, validate_response
from tests.support.workers import wait_until

GIB = 1024**3
BUCKET = "team-exports"
OTHER = Account(
    access_key="OTHERTEAMACCESSKEY01",
    secret_key="other-team-secret-key-000000000000000000",  # noqa: S106 - a sandbox test key
    account_id="210987654321",
)
pytestmark = pytest.mark.django_db


# --- Helpers shared with the other export tests ---------------------------------------------


def source_team(sandbox: Sandbox, name: str = "source") -> Team:
    """A team on the sandbox's default account, its OOS endpoint the sandbox's store."""
    team = make_team(name)
    Team.objects.filter(pk=team.pk).update(oos_endpoint=sandbox.s3_url)
    team.refresh_from_db()
    return team


def other_team(sandbox: Sandbox, name: str = "receiver") -> Team:
    """A team with its own sandbox account and encrypted credentials."""
    if OTHER.access_key not in {account.access_key for account in sandbox.accounts}:
        sandbox.add_account(OTHER)
    return Team.objects.create(
        name=name,
        region=sandbox.region,
        endpoint=sandbox.api_url,
        oos_endpoint=sandbox.s3_url,
        access_key_encrypted=encrypt_text(OTHER.access_key),
        secret_key_encrypted=encrypt_text(OTHER.secret_key),
        access_key_hint=OTHER.access_key[-4:],
    )


def completed_snapshot(sandbox: Sandbox) -> str:
    """A completed snapshot in the default account, imported from the demo image."""
    answer = sandbox.call(
        "CreateSnapshot", {"FileLocation": sandbox.presign(), "SnapshotSize": 10 * GIB}
    ).json()
    snapshot_id: str = answer["Snapshot"]["SnapshotId"]

    def done() -> bool:
        found = sandbox.call("ReadSnapshots", {"Filters": {"SnapshotIds": [snapshot_id]}}).json()
        return found["Snapshots"][0]["State"] == "completed"

    wait_until(done, seconds=20)
    return snapshot_id


def account_snapshots(sandbox: Sandbox, account_id: str) -> list[dict[str, Any]]:
    snapshots: list[dict[str, Any]] = sandbox.state()["snapshots"].get(account_id, [])
    return snapshots


def run_export(export: ExportTask, *, seconds: float = 20) -> ExportTask:
    """Submits the export and polls until it ends, as the worker and beat would."""
    export_submit(export_id=str(export.pk))

    def ended() -> bool:
        exports_poll()
        export.refresh_from_db()
        return export.is_terminal

    wait_until(ended, seconds=seconds, interval=0.2)
    return export


def run_import(job: ImportJob, *, seconds: float = 30) -> ImportJob:
    imports_services.import_submit(job_id=str(job.pk))

    def ended() -> bool:
        polling.imports_poll()
        job.refresh_from_db()
        return job.is_terminal

    wait_until(ended, seconds=seconds, interval=0.2)
    return job


def new_export(team: Team, user: Any, snapshot_id: str, **fields: Any) -> ExportTask:
    values = {"bucket": BUCKET, "prefix": "backups/", "disk_image_format": "qcow2"}
    destination = ExportDestination(**{**values, **fields})
    return export_create(team=team, user=user, snapshot_id=snapshot_id, destination=destination)


def everything_in_the_database() -> str:
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


# --- The journey ----------------------------------------------------------------------------


def test_it_exports_then_imports_the_shared_url_in_another_team_to_one_completed_snapshot(
    api_on_sandbox: Sandbox,
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    source, receiver = source_team(sandbox), other_team(sandbox)
    user = make_user("exporter", team=source)
    snapshot_id = completed_snapshot(sandbox)

    export = run_export(new_export(source, user, snapshot_id))
    assert export.state == ExportState.COMPLETED, export.error_details
    assert export.object_key.startswith(f"backups/{snapshot_id}")
    assert export.object_key.endswith(".qcow2.gz")
    assert export.snapshot_size == 10 * GIB
    assert export.object_size and export.object_size > 0

    share, url = share_create(export=export, user=user, seconds=3600)
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    assert "X-Amz-Signature" not in share.url_redacted and signature not in share.url_redacted
    assert signature not in everything_in_the_database()

    parsed = parse_presigned_url(url, policy=url_policy(), now=share.created_at)
    job = imports_services.import_create(
        team=receiver,
        user=make_user("receiver-op", team=receiver),
        name="copied",
        description="",
        url=parsed,
        snapshot_size=export.snapshot_size,
    )
    job = run_import(job)
    assert job.state == JobState.COMPLETED, job.error_details
    received = account_snapshots(sandbox, OTHER.account_id)
    assert len(received) == 1
    assert received[0]["State"] == "completed" and received[0]["SnapshotId"] == job.snapshot_id


def test_it_shows_the_comment_of_a_failed_export(api_on_sandbox: Sandbox, client: Client) -> None:
    sandbox = api_on_sandbox
    source = source_team(sandbox)
    user = make_user("exporter", team=source)
    export = run_export(new_export(source, user, completed_snapshot(sandbox), bucket="no-such"))
    assert export.state == ExportState.ERROR
    assert "no-such" in export.comment and "does not exist" in export.comment
    client.force_login(user)
    page = client.get(f"/exports/{export.pk}").content.decode()
    assert "The export failed." in page and escape(export.comment) in page


def test_it_cancels_a_running_export_and_nothing_reaches_the_bucket(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    sandbox.set_export_seconds(3)
    source = source_team(sandbox)
    user = make_user("exporter", team=source)
    export = new_export(source, user, completed_snapshot(sandbox), prefix="cancelled/")
    export_submit(export_id=str(export.pk))
    export.refresh_from_db()
    assert export.state == ExportState.IN_PROGRESS and export.task_id

    client.force_login(user)
    response = client.post(f"/exports/{export.pk}/cancel")
    assert response.status_code == 302
    export.refresh_from_db()
    assert export.state == ExportState.CANCELLED
    (task,) = [t for t in sandbox.state()["exports"] if t["TaskId"] == export.task_id]
    assert task["State"] == "cancelled"
    time.sleep(3.5)  # past the export's whole duration: it must have stopped, not finished
    (task,) = [t for t in sandbox.state()["exports"] if t["TaskId"] == export.task_id]
    assert task["State"] == "cancelled" and task["ObjectKey"] == ""
    listed = sandbox.store.client().list_objects_v2(Bucket=BUCKET, Prefix="cancelled/")
    assert listed.get("KeyCount", 0) == 0
    exports_poll()
    export.refresh_from_db()
    assert export.state == ExportState.CANCELLED


def test_it_adopts_the_task_an_earlier_attempt_created_instead_of_exporting_twice(
    api_on_sandbox: Sandbox,
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    source = source_team(sandbox)
    user = make_user("exporter", team=source)
    snapshot_id = completed_snapshot(sandbox)
    export = new_export(source, user, snapshot_id)
    # An earlier attempt reached the API, then its worker died before saving the answer.
    created = accounts.api_client(source).create_snapshot_export_task(
        snapshot_id=snapshot_id, bucket=BUCKET, disk_image_format="qcow2", prefix="backups/"
    )
    ExportTask.objects.filter(pk=export.pk).update(attempts=1)
    export = run_export(export)
    assert export.task_id == created.task.task_id
    assert export.state == ExportState.COMPLETED
    assert sandbox.state()["calls"]["CreateSnapshotExportTask"] == 1


def test_it_sends_and_gets_export_bodies_the_spec_allows(api_on_sandbox: Sandbox) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    sandbox.set_export_seconds(2)
    snapshot_id = completed_snapshot(sandbox)
    body = {
        "SnapshotId": snapshot_id,
        "OsuExport": {"DiskImageFormat": "raw", "OsuBucket": BUCKET, "OsuPrefix": "spec/"},
    }
    validate_request("CreateSnapshotExportTask", body)
    created = sandbox.call("CreateSnapshotExportTask", body)
    validate_response("CreateSnapshotExportTask", created.json(), created.status_code)
    task_id = created.json()["SnapshotExportTask"]["TaskId"]
    read_body = {"Filters": {"TaskIds": [task_id]}}
    validate_request("ReadSnapshotExportTasks", read_body)
    read = sandbox.call("ReadSnapshotExportTasks", read_body)
    validate_response("ReadSnapshotExportTasks", read.json(), read.status_code)
    assert read.json()["SnapshotExportTasks"][0]["State"] in ("pending", "active")
    deleted = sandbox.call("DeleteExportTask", {"ExportTaskId": task_id})
    validate_response("DeleteExportTask", deleted.json(), deleted.status_code)
    again = sandbox.call("DeleteExportTask", {"ExportTaskId": task_id})
    assert again.status_code == 409
    validate_response("DeleteExportTask", again.json(), again.status_code)
    missing = sandbox.call("CreateSnapshotExportTask", {**body, "SnapshotId": "snap-00000000"})
    assert missing.status_code == 400
    assert missing.json()["Errors"][0]["Type"] == "InvalidResource"


# --- Share ----------------------------------------------------------------------------------


def test_it_shows_the_url_once_and_keeps_only_its_redacted_form(
    api_on_sandbox: Sandbox, client: Client
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    source = source_team(sandbox)
    user = make_user("sharer", team=source)
    export = run_export(new_export(source, user, completed_snapshot(sandbox)))
    client.force_login(user)
    response = client.post(f"/exports/{export.pk}/share", {"lifetime": str(6 * 3600)})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "X-Amz-Signature=" in page and "shown only once" in page
    share = SharedUrl.objects.get(export=export)
    assert share.created_by == user and share.lifetime_seconds == 6 * 3600
    signature = page.split("X-Amz-Signature=")[1].split("&")[0].split("<")[0]
    assert len(signature) == 64
    assert signature not in everything_in_the_database()
    later = client.get(f"/exports/{export.pk}").content.decode()
    assert share.url_redacted in later and signature not in later
    # More than 7 days is refused, and nothing is made.
    refused = client.post(f"/exports/{export.pk}/share", {"lifetime": str(8 * 24 * 3600)})
    assert refused.status_code == 302
    assert SharedUrl.objects.count() == 1


def test_it_shares_only_completed_exports(api_on_sandbox: Sandbox) -> None:
    source = source_team(api_on_sandbox)
    user = make_user("sharer", team=source)
    export = new_export(source, user, "snap-12345678")
    with pytest.raises(ExportNotShareable):
        share_create(export=export, user=user, seconds=60)
    with pytest.raises(ValueError, match="7 days"):
        presign_object(source, bucket=BUCKET, key="k", seconds=8 * 24 * 3600)


# --- Copy -----------------------------------------------------------------------------------


def test_it_copies_to_another_team_in_one_chain_even_when_a_step_dies_midway(
    api_on_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    source, receiver = source_team(sandbox), other_team(sandbox)
    user = make_user("copier", team=source)
    snapshot_id = completed_snapshot(sandbox)
    chain = copy_create(
        source_team=source,
        target_team=receiver,
        user=user,
        snapshot_id=snapshot_id,
        name="copied",
        description="from source",
        destination=ExportDestination(BUCKET, "copies/", "qcow2"),
    )
    run_export(chain.export)

    # The worker dies in the middle of the share-and-import step: nothing of it remains.
    def die(*args: Any, **kwargs: Any) -> bool:
        raise SystemExit("worker killed")

    monkeypatch.setattr(CopyChain, "mark_importing", die)
    with pytest.raises(SystemExit):
        copies_advance()
    assert not ImportJob.objects.exists() and not SharedUrl.objects.exists()
    monkeypatch.undo()

    assert copies_advance() == 1
    assert copies_advance() == 0  # the step is not taken twice
    chain.refresh_from_db()
    assert chain.state == CopyState.IMPORTING and chain.share is not None
    job = chain.import_job
    assert job is not None and job.team == receiver
    assert job.snapshot_size == chain.export.snapshot_size == 10 * GIB
    run_import(job)
    copies_advance()
    chain.refresh_from_db()
    assert chain.state == CopyState.COMPLETED
    assert [s["State"] for s in account_snapshots(sandbox, OTHER.account_id)] == ["completed"]
    calls = sandbox.state()
    assert calls["calls"]["CreateSnapshotExportTask"] == 1
    assert calls["create_snapshot_calls_by_client_token"] == {str(job.pk): 1}
    steps = [event.state for event in chain.events.all()]
    assert steps == [CopyState.EXPORTING, CopyState.IMPORTING, CopyState.COMPLETED]


def test_it_gives_each_copy_a_random_import_id_fixed_when_the_chain_is_made(
    api_on_sandbox: Sandbox,
) -> None:
    sandbox = api_on_sandbox
    sandbox.store.ensure_bucket(BUCKET)
    source, receiver = source_team(sandbox), other_team(sandbox)
    user = make_user("copier", team=source)
    snapshot_id = completed_snapshot(sandbox)
    chains = [
        copy_create(
            source_team=source,
            target_team=receiver,
            user=user,
            snapshot_id=snapshot_id,
            name=f"copied-{n}",
            description="",
            destination=ExportDestination(BUCKET, f"copies-{n}/", "qcow2"),
        )
        for n in range(2)
    ]
    planned = [chain.import_id for chain in chains]
    # Nothing about the import's id (its ClientToken) follows from the chain's id in the links.
    assert all(
        import_id.version == 4 and import_id != uuid.uuid5(chain.pk, "import")
        for chain, import_id in zip(chains, planned, strict=True)
    )
    assert planned[0] != planned[1]
    for chain in chains:
        run_export(chain.export)

    assert copies_advance() == 2

    for chain, import_id in zip(chains, planned, strict=True):
        chain.refresh_from_db()
        assert chain.import_id == import_id and chain.import_job_id == import_id


def test_it_fails_the_chain_when_its_export_fails(api_on_sandbox: Sandbox) -> None:
    sandbox = api_on_sandbox
    source, receiver = source_team(sandbox), other_team(sandbox)
    user = make_user("copier", team=source)
    chain = copy_create(
        source_team=source,
        target_team=receiver,
        user=user,
        snapshot_id=completed_snapshot(sandbox),
        name="copied",
        description="",
        destination=ExportDestination("missing-bucket", "", "qcow2"),
    )
    run_export(chain.export)
    copies_advance()
    chain.refresh_from_db()
    assert chain.state == CopyState.ERROR and "missing-bucket" in chain.error_details
    assert not ImportJob.objects.exists()


def test_it_offers_only_teams_where_the_user_may_import(client: Client) -> None:
    source, target, read_only = make_team("a-src"), make_team("b-dst"), make_team("c-ro")
    user = make_user("both", team=source)
    user.memberships.create(team=target, role=Role.OPERATOR)
    user.memberships.create(team=read_only, role=Role.AUDITOR)
    client.force_login(user)
    client.post("/team/switch", {"team": str(source.pk)})  # in several teams: the user chooses
    page = client.get("/snapshots/snap-0000abcd/copy").content.decode()
    assert f">b-dst ({target.region})" in page and f">c-ro ({read_only.region})" not in page
    refused = client.post(
        "/snapshots/snap-0000abcd/copy",
        {
            "target_team": str(read_only.pk),
            "name": "x",
            "bucket": BUCKET,
            "disk_image_format": "qcow2",
        },
    )
    assert refused.status_code == 422
    assert not CopyChain.objects.exists()
    made = client.post(
        "/snapshots/snap-0000abcd/copy",
        {"target_team": str(target.pk), "name": "x", "bucket": BUCKET, "disk_image_format": "raw"},
    )
    chain = CopyChain.objects.get()
    assert made["Location"] == f"/copies/{chain.pk}"
    assert chain.export.disk_image_format == "raw" and chain.target_team == target


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "   ", "Enter a name for the snapshot."),
        ("name", "x" * 256, "Use at most 255 characters for the name (it has 256)."),
        ("name", "bad\r\nname", "invisible or control character (U+000D)"),
        ("name", "spoof\u202eevil", "invisible or control character (U+202E)"),
        ("name", "bad\x00name", "NUL control character"),
        ("description", "ring\x07bell", "invisible or control character (U+0007)"),
        ("description", "d" * 1001, "Use at most 1000 characters for the description"),
    ],
)
def test_it_checks_the_copy_name_and_description_as_the_import_dialog_does(
    client: Client, field: str, value: str, expected: str
) -> None:
    source, target = make_team("a-src"), make_team("b-dst")
    user = make_user("both", team=source)
    user.memberships.create(team=target, role=Role.OPERATOR)
    client.force_login(user)
    client.post("/team/switch", {"team": str(source.pk)})
    data = {"target_team": str(target.pk), "name": "copy", "bucket": BUCKET}
    data["disk_image_format"] = "qcow2"

    refused = client.post("/snapshots/snap-0000abcd/copy", {**data, field: value})

    assert refused.status_code == 422
    assert escape(expected) in refused.content.decode()
    assert not CopyChain.objects.exists()
    kept = client.post(
        "/snapshots/snap-0000abcd/copy", {**data, "description": "two lines\nof notes"}
    )
    assert kept.status_code == 302
    assert CopyChain.objects.get().description == "two lines\nof notes"


# --- Views and polling ----------------------------------------------------------------------


def test_it_validates_the_export_form_and_creates_the_export(client: Client) -> None:
    user = make_user("op")
    client.force_login(user)
    bad = client.post("/snapshots/snap-0000abcd/export", {"bucket": "Bad_Bucket!"})
    assert bad.status_code == 422 and "lower-case" in bad.content.decode()
    assert client.get("/snapshots/not-a-snapshot/export").status_code == 404
    good = client.post(
        "/snapshots/snap-0000abcd/export",
        {"bucket": BUCKET, "osu_prefix": "nightly/", "disk_image_format": "qcow2"},
    )
    export = ExportTask.objects.get()
    assert good["Location"] == f"/exports/{export.pk}"
    assert (export.bucket, export.prefix, export.state) == (BUCKET, "nightly/", ExportState.QUEUED)


def test_it_polls_exports_with_204_then_the_changed_summary_then_286(client: Client) -> None:
    user = make_user("op")
    client.force_login(user)
    export = new_export(user.memberships.first().team, user, "snap-0000abcd")
    from importer.core.pages import version

    query = f"/exports/poll?e={export.pk}.{version(export)}"
    assert client.get(query).status_code == 204
    export.claim_for_submission()
    export.mark_accepted(
        task_id="snap-export-1", api_state="pending", progress=0, comment="", request_id="r"
    )
    changed = client.get(query)
    assert changed.status_code == 200 and "snap-export-1" in changed.content.decode()
    export.mark_failed(code="X", type="ExportFailed", details="disk gone", comment="disk gone")
    export.refresh_from_db()
    ended = client.get(f"/exports/poll?e={export.pk}.0")
    assert ended.status_code == 286 and "disk gone" in ended.content.decode()


def test_it_hides_another_teams_exports(client: Client) -> None:
    red, blue = make_team("red"), make_team("blue")
    red_user, blue_user = make_user("red-op", team=red), make_user("blue-op", team=blue)
    export = new_export(red, red_user, "snap-0000abcd")
    client.force_login(blue_user)
    assert client.get(f"/exports/{export.pk}").status_code == 404
    assert client.post(f"/exports/{export.pk}/cancel").status_code == 404
    assert client.post(f"/exports/{export.pk}/share", {"lifetime": "3600"}).status_code == 404
    assert client.get(f"/exports/poll?e={export.pk}.0").status_code == 286
    assert "snap-0000abcd" not in client.get(f"/exports/poll?e={export.pk}.0").content.decode()


# --- One team cannot stall the others (fake API answers) ---------------------------------

FAKE_API = "https://api.exports-test.example/api/v1"


@pytest.fixture
def fake_api(settings: Any) -> Iterator[responses.RequestsMock]:
    settings.OSC_ENDPOINT_API = FAKE_API
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def exporting(team_name: str, task_id: str) -> ExportTask:
    team = make_team(team_name)
    user = make_user(f"user-of-{team_name}", team=team)
    long_ago = timezone.now() - VANISHED_GRACE - timedelta(minutes=1)
    return ExportTask.objects.create(
        team=team,
        requested_by=user,
        snapshot_id="snap-00000001",
        bucket=BUCKET,
        state=ExportState.IN_PROGRESS,
        api_state="pending",
        task_id=task_id,
        submitted_at=long_ago,
    )


def tasks_answer(tasks: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "SnapshotExportTasks": tasks,
        "ResponseContext": {"RequestId": "req-exports"},
    }
    if token:
        answer["NextPageToken"] = token
    return answer


def test_it_polls_the_other_teams_exports_when_one_teams_poll_fails(
    fake_api: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = exporting("broken", "snap-export-0000000b")
    fine = exporting("fine", "snap-export-0000000f")
    real_client = accounts.api_client

    def client_of(team: Team) -> Any:
        if team.name == "broken":
            raise RuntimeError("an unexpected fault in this team's poll")
        return real_client(team)

    monkeypatch.setattr(accounts, "api_client", client_of)
    fake_api.post(
        f"{FAKE_API}/ReadSnapshotExportTasks",
        json=tasks_answer([{"TaskId": "snap-export-0000000f", "State": "active", "Progress": 40}]),
    )
    summary = exports_poll()
    assert summary.failed_teams == 1 and summary.changed == 1
    fine.refresh_from_db()
    broken.refresh_from_db()
    assert fine.progress == 40 and fine.api_state == "active"
    assert broken.state == ExportState.IN_PROGRESS
    assert broken.events.last().message == POLL_FAILED_UNEXPECTEDLY


def test_it_cuts_an_exports_api_strings_to_their_fields(fake_api: responses.RequestsMock) -> None:
    export = exporting("long", "snap-export-0000000a")
    state, comment = "active-" + "x" * 5000, "c" * 5000
    fake_api.post(
        f"{FAKE_API}/ReadSnapshotExportTasks",
        json=tasks_answer(
            [
                {
                    "TaskId": "snap-export-0000000a",
                    "State": state,
                    "Progress": 70,
                    "Comment": comment,
                }
            ]
        ),
    )
    assert exports_poll().changed == 1
    export.refresh_from_db()
    assert export.api_state == state[:40] and export.comment == comment[:2000]
    assert export.progress == 70 and len(export.events.last().message) == 2500


def test_it_reads_a_bounded_number_of_export_pages(fake_api: responses.RequestsMock) -> None:
    export = exporting("looping", "snap-export-0000000d")
    calls: list[int] = []

    def endless(request: Any) -> tuple[int, dict[str, str], str]:
        calls.append(1)
        token = f"token-{len(calls)}" if len(calls) < 1000 else None
        return 200, {}, json.dumps(tasks_answer([], token))

    fake_api.add_callback(responses.POST, f"{FAKE_API}/ReadSnapshotExportTasks", callback=endless)
    exports_poll()
    assert len(calls) == pages_for([export.task_id])
    export.refresh_from_db()
    assert export.state == ExportState.IN_PROGRESS  # not taken for vanished


def test_it_moves_the_other_copies_on_when_one_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = make_team("source"), make_team("target")
    user = make_user("copier", team=source)
    chains = []
    for name in ("broken", "fine"):
        export = ExportTask.objects.create(
            team=source,
            requested_by=user,
            snapshot_id="snap-00000001",
            bucket=BUCKET,
            state=ExportState.ERROR,
            error_details="the bucket refused it",
        )
        chains.append(
            CopyChain.objects.create(
                source_team=source,
                target_team=target,
                snapshot_id="snap-00000001",
                name=name,
                requested_by=user,
                export=export,
            )
        )
    real_mark_failed = CopyChain.mark_failed

    def mark_failed(chain: CopyChain, **fields: Any) -> bool:
        if chain.name == "broken":
            raise RuntimeError("an unexpected fault with this copy")
        return real_mark_failed(chain, **fields)

    monkeypatch.setattr(CopyChain, "mark_failed", mark_failed)
    assert copies_advance() == 1
    broken, fine = (CopyChain.objects.get(pk=chain.pk) for chain in chains)
    assert fine.state == CopyState.ERROR and "the bucket refused it" in fine.error_details
    assert broken.state == CopyState.EXPORTING  # tried again on the next poll
