"""The audit trail: append-only guards, the hash chain and its check, redaction, the command."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test import RequestFactory

from importer.audit import (
    GENESIS_HASH,
    AuditAction,
    AuditEvent,
    AuditLogIsAppendOnly,
    ChainReport,
    client_ip,
    record,
    verify_chain,
)
from importer.models import Team
from tests.conftest import ROOT, process_env

TABLE = "importer_auditevent"
CANARY_URL = (
    "https://oos.eu-west-2.outscale.com/exports-bucket/snap.qcow2.gz"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Feu-west-2%2Fs3"
    "%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=CANARY"
)


@contextmanager
def writable_table() -> Iterator[None]:
    """Lets raw SQL change the table, as someone with direct database access could."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")


def raw(sql: str, params: list[Any] | None = None) -> None:
    with writable_table(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def record_some(count: int, **fields: Any) -> list[AuditEvent]:
    return [
        record(action=AuditAction.JOB_STATE, target=f"job-{number}", **fields)
        for number in range(count)
    ]


@pytest.fixture
def team(db: None) -> Team:
    return Team.objects.create(name="blue")


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user(username="alice", password="a-long-test-password")


def test_it_verifies_a_chain_of_hundreds_of_varied_entries(alice: User, team: Team) -> None:
    actions = list(AuditAction)
    ips = [None, "192.0.2.7", "2001:DB8::1", "::ffff:198.51.100.9", "not an address"]
    for number in range(300):
        record(
            action=actions[number % len(actions)],
            actor=alice if number % 3 else None,
            actor_name=None if number % 3 else "mallory",
            team=team if number % 2 else None,
            target=f"snap-{number:08x}",
            ip=ips[number % len(ips)],
            details={
                "n": number,
                "ratio": number / 7,
                "whole": 2.0,
                "huge": 1e20,
                "nested": {"list": [1, "two", None, True], "ünïcode": "café"},
            },
        )

    report = verify_chain(batch_size=64)

    assert report.ok
    assert report.checked == 300
    assert report.broken_at_id is None
    entries = list(AuditEvent.objects.order_by("id"))
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(e.prev_hash == before.hash for before, e in zip(entries, entries[1:], strict=False))
    assert {e.ip for e in entries} == {None, "192.0.2.7", "2001:db8::1", "198.51.100.9"}


def test_it_fills_names_from_the_actor_and_team(alice: User, team: Team) -> None:
    entry = record(action=AuditAction.LOGIN, actor=alice, team=team, ip="192.0.2.1")

    entry.refresh_from_db()
    assert (entry.actor_id, entry.actor_name) == (alice.pk, "alice")
    assert (entry.team_id, entry.team_name) == (team.pk, "blue")
    assert entry.action == "login"


def test_it_verifies_an_empty_log(db: None) -> None:
    assert verify_chain() == ChainReport(ok=True, checked=0)


def test_it_detects_an_entry_edited_in_the_database(db: None) -> None:
    entries = record_some(10)
    edited = entries[4]

    raw(f"UPDATE {TABLE} SET target = %s WHERE id = %s", ["job-forged", edited.id])
    report = verify_chain()

    assert not report.ok
    assert report.broken_at_id == edited.id
    assert report.checked == 5
    assert "edited" in report.reason


def test_it_detects_an_edit_that_also_rewrote_the_hash_at_the_next_entry(db: None) -> None:
    entries = record_some(10)
    edited = entries[4]
    forged = AuditEvent.objects.get(pk=edited.pk)
    forged.target = "job-forged"
    new_hash = forged.computed_hash()

    raw(
        f"UPDATE {TABLE} SET target = %s, hash = %s WHERE id = %s",
        ["job-forged", new_hash, edited.id],
    )
    report = verify_chain()

    assert not report.ok
    assert report.broken_at_id == entries[5].id
    assert f"entry #{edited.id}" in report.reason


def test_it_detects_a_deleted_entry_at_the_next_one(db: None) -> None:
    entries = record_some(10)

    raw(f"DELETE FROM {TABLE} WHERE id = %s", [entries[6].id])
    report = verify_chain()

    assert not report.ok
    assert report.broken_at_id == entries[7].id
    assert "deleted" in report.reason


def test_it_detects_a_deleted_first_entry(db: None) -> None:
    entries = record_some(3)

    raw(f"DELETE FROM {TABLE} WHERE id = %s", [entries[0].id])
    report = verify_chain()

    assert report.broken_at_id == entries[1].id
    assert "start of the log" in report.reason


def test_it_detects_a_moved_entry(db: None) -> None:
    entries = record_some(5)

    # The entry keeps its contents and hash but now sits at the end of the chain.
    raw(f"UPDATE {TABLE} SET id = %s WHERE id = %s", [entries[-1].id + 100, entries[1].id])
    report = verify_chain()

    assert report.broken_at_id == entries[2].id


def test_it_refuses_to_change_or_delete_entries_through_the_application(db: None) -> None:
    entry = record_some(1)[0]
    entry.target = "changed"

    with pytest.raises(AuditLogIsAppendOnly):
        entry.save()
    with pytest.raises(AuditLogIsAppendOnly):
        entry.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=entry.pk).update(target="changed")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.bulk_update([entry], ["target"])
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.update_or_create(pk=entry.pk, defaults={"target": "changed"})
    assert AuditEvent.objects.get().target == "job-0"
    assert verify_chain().ok


def test_it_refuses_entries_that_bypass_record(db: None) -> None:
    stray = AuditEvent(action=AuditAction.LOGIN, prev_hash=GENESIS_HASH, hash=GENESIS_HASH)

    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.bulk_create([stray])
    with pytest.raises(ValueError, match="record"):
        AuditEvent(action=AuditAction.LOGIN).save()
    # A new object reusing an existing id must not overwrite that row.
    entry = record_some(1)[0]
    clash = AuditEvent(
        id=entry.id, action=AuditAction.LOGIN, prev_hash=GENESIS_HASH, hash=GENESIS_HASH
    )
    with pytest.raises(DatabaseError), transaction.atomic():
        clash.save()
    assert AuditEvent.objects.get().action == AuditAction.JOB_STATE
    assert AuditEvent.objects.count() == 1


def test_it_refuses_an_unknown_action(db: None) -> None:
    with pytest.raises(ValueError, match="Unknown audit action"):
        record(action="made_up")
    assert not AuditEvent.objects.exists()


def test_it_keeps_entries_when_their_user_and_team_are_deleted(alice: User, team: Team) -> None:
    entry = record(action=AuditAction.LOGIN, actor=alice, team=team)
    alice_id = alice.pk

    alice.delete()
    team.delete()

    kept = AuditEvent.objects.get(pk=entry.pk)
    assert (kept.actor_id, kept.actor_name) == (alice_id, "alice")
    assert kept.team_name == "blue"
    assert verify_chain().ok


def test_it_blocks_raw_updates_and_deletes_with_a_trigger_on_postgresql(db: None) -> None:
    entry = record_some(1)[0]

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [TABLE],
            )
            assert cursor.fetchone() == (1,)
            for sql in (f"UPDATE {TABLE} SET target = 'x'", f"DELETE FROM {TABLE}"):
                with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                    cursor.execute(sql)
            # The test database flush empties tables with TRUNCATE: that must keep working.
            with transaction.atomic():
                cursor.execute(f"TRUNCATE {TABLE}")
                assert not AuditEvent.objects.exists()
                transaction.set_rollback(True)
        else:
            assert connection.vendor == "sqlite"
            cursor.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [TABLE],
            )
            assert cursor.fetchone() == (0,)
    assert AuditEvent.objects.get().pk == entry.pk


def test_it_redacts_secrets_before_hashing_and_storing(alice: User) -> None:
    entry = record(
        action=AuditAction.CREDENTIALS_CHANGED,
        actor=alice,
        target=f"fetch {CANARY_URL}",
        details={
            "url": CANARY_URL,
            "secret_key": "CANARY-SECRET",
            "headers": [{"Authorization": "AWS4-HMAC-SHA256 CANARY-AUTH"}],
            "note": "X-Amz-Signature=CANARY&other=1",
            "nested": {"Password": "CANARY-PW", "api-token": "CANARY-TOKEN"},
            "access_key_hint": "WXYZ",
        },
    )

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT target, details, actor_name FROM {TABLE} WHERE id = %s", [entry.pk])
        stored = " ".join(str(column) for column in cursor.fetchone())
    assert "CANARY" not in stored
    details = AuditEvent.objects.get().details
    assert details["secret_key"] == "[redacted]"
    assert details["headers"] == [{"Authorization": "[redacted]"}]
    assert details["nested"] == {"Password": "[redacted]", "api-token": "[redacted]"}
    assert details["url"].startswith("https://oos.eu-west-2.outscale.com/exports-bucket/")
    assert details["access_key_hint"] == "WXYZ"
    assert verify_chain().ok


def test_it_discards_entries_with_the_callers_rolled_back_work(db: None) -> None:
    record_some(2)

    with transaction.atomic():
        record_some(3)
        transaction.set_rollback(True)
    record_some(1)

    assert AuditEvent.objects.count() == 3
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_chain_with_concurrent_writers() -> None:
    threads_count, per_thread = 6, 25
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for number in range(per_thread):
                record(action=AuditAction.JOB_STATE, target=f"w{worker}-{number}")
        except BaseException as error:  # reported to the main thread below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    report = verify_chain()
    assert report.ok
    assert report.checked == threads_count * per_thread
    prev_hashes = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(set(prev_hashes)) == len(prev_hashes)  # no two entries follow the same one


def test_it_reads_the_client_address(settings: Any) -> None:
    factory = RequestFactory()
    request = factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.9.9.9")

    settings.PORTAL_BEHIND_TLS_PROXY = False
    assert client_ip(request) == "10.0.0.5"
    settings.PORTAL_BEHIND_TLS_PROXY = True
    assert client_ip(request) == "10.9.9.9"
    assert client_ip(factory.get("/", REMOTE_ADDR="10.0.0.5")) == "10.0.0.5"
    garbage = factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, junk")
    assert client_ip(garbage) == "10.0.0.5"
    assert client_ip(factory.get("/", REMOTE_ADDR="::ffff:192.0.2.4")) == "192.0.2.4"


def test_the_command_says_the_chain_is_intact(db: None) -> None:
    record_some(4)
    out = StringIO()

    call_command("audit_verify", stdout=out)

    assert out.getvalue().strip() == "Audit chain intact: 4 entries checked."


def test_the_command_names_the_broken_entry_and_exits_1(db: None) -> None:
    entries = record_some(4)
    raw(f"DELETE FROM {TABLE} WHERE id = %s", [entries[1].id])
    out, err = StringIO(), StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("audit_verify", stdout=out, stderr=err)

    assert exit_info.value.code == 1
    assert err.getvalue().startswith(f"Audit chain BROKEN at entry #{entries[2].id}: ")
    assert out.getvalue() == ""


@pytest.mark.django_db(transaction=True)
def test_the_command_exit_status_from_a_real_process() -> None:
    entries = record_some(3)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "audit_verify"],
            cwd=ROOT,
            env=process_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    intact = run()
    assert (intact.returncode, intact.stdout.strip()) == (
        0,
        "Audit chain intact: 3 entries checked.",
    )
    raw(f"UPDATE {TABLE} SET actor_name = 'mallory' WHERE id = %s", [entries[2].id])
    broken = run()
    assert broken.returncode == 1
    assert f"Audit chain BROKEN at entry #{entries[2].id}: " in broken.stderr
