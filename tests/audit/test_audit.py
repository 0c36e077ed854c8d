"""The audit trail: append-only guards, the hash chain and its check, redaction, the command."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client, RequestFactory
from django.utils import timezone

from importer.audit.addresses import client_ip
from importer.audit.chain import ChainReport, Entry, record, record_many, verify_chain
from importer.audit.hashing import GENESIS_HASH, AuditKeys, audit_key_id
from importer.audit.lockout import record_login_failure
from importer.audit.models import (
    AuditAction,
    AuditEvent,
    AuditLogIsAppendOnly,
    HashAlgorithm,
    LoginFailureTally,
)
from importer.teams.models import Team
from tests.support.factories import make_user
from tests.support.workers import ROOT, process_env

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


def test_many_entries_appended_at_once_chain_like_entries_appended_one_by_one(
    alice: User, team: Team
) -> None:
    record(action=AuditAction.LOGIN, actor=alice, team=team)
    many = record_many(
        [
            Entry(AuditAction.IMPORT_SUBMITTED, actor=alice, team=team, target=f"job-{n}")
            for n in range(5)
        ]
    )
    record(action=AuditAction.LOGOUT, actor=alice, team=team)

    report = verify_chain()
    assert (report.ok, report.checked, report.broken_at_id) == (True, 7, None)
    stored = list(AuditEvent.objects.order_by("id").values_list("target", "actor_name"))
    assert stored[1:6] == [(f"job-{n}", "alice") for n in range(5)]
    assert [entry.hash for entry in many] == list(
        AuditEvent.objects.order_by("id").values_list("hash", flat=True)[1:6]
    )
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.bulk_create([AuditEvent(action=AuditAction.LOGIN)])


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
            # One row trigger refuses UPDATE and DELETE, one statement trigger TRUNCATE.
            assert cursor.fetchone() == (2,)
            for sql in (f"UPDATE {TABLE} SET target = 'x'", f"DELETE FROM {TABLE}"):
                with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
                    cursor.execute(sql)
            # The test database flush empties tables with TRUNCATE as a superuser: that must keep
            # working (the application's role is refused, see the test below).
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


# --- The client address, shared with the login lock-out --------------------------------------

PROXY = "10.0.0.2"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(client: Client, username: str, password: str, *, address: str = "203.0.113.7") -> Any:
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def log_in_through_the_proxy(client: Client, username: str, password: str, *, address: str) -> Any:
    return client.post(
        "/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=f"192.0.2.66, {address}",  # the client's own say, then the proxy's
    )


def test_it_reads_the_client_address_past_a_configured_number_of_proxies(settings: Any) -> None:
    factory = RequestFactory()
    settings.PORTAL_BEHIND_TLS_PROXY = True
    settings.PORTAL_PROXY_COUNT = 2
    two_hops = "198.51.100.1, 203.0.113.9, 10.9.9.9"

    assert client_ip(factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=two_hops)) == (
        "203.0.113.9"
    )
    # Only the inner proxy was crossed: its entry is the only one there.
    only_inner = factory.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert client_ip(only_inner) == "10.9.9.9"


def test_it_locks_out_the_forwarded_client_address_not_the_proxy(
    db: None, client: Client, settings: Any
) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.PORTAL_BEHIND_TLS_PROXY = True
    make_user("victim", password="the-right-password-123")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in_through_the_proxy(client, "victim", "wrong", address="203.0.113.7")

    locked = log_in_through_the_proxy(
        client, "victim", "the-right-password-123", address="203.0.113.7"
    )
    elsewhere = log_in_through_the_proxy(
        Client(), "victim", "the-right-password-123", address="198.51.100.4"
    )

    assert locked.status_code == 429
    assert elsewhere.status_code == 302
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    ips = dict(AuditEvent.objects.values_list("action", "ip"))
    assert ips == {"login_failed": "203.0.113.7", "login": "198.51.100.4"}


def test_it_locks_an_address_out_after_many_failed_logins_whatever_the_names(
    db: None,
    settings: Any,
) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    settings.PORTAL_LOGIN_ADDRESS_FAILURE_LIMIT = 8
    make_user("alice", password="alice-right-password-1")
    make_user("mallory", password="mallory-right-password-1")
    for number in range(7):  # one failure per name: far below the per-name limit
        assert log_in(Client(), f"guess-{number}", "wrong").status_code == 200
    # Signing in to one's own account resets that account's failures, not the address's others.
    assert log_in(Client(), "mallory", "mallory-right-password-1").status_code == 302

    eighth = log_in(Client(), "guess-7", "wrong")
    alice_here = log_in(Client(), "alice", "alice-right-password-1")
    alice_elsewhere = log_in(Client(), "alice", "alice-right-password-1", address="198.51.100.4")

    assert eighth.status_code == 429
    assert alice_here.status_code == 429
    assert "Too many failed logins" in alice_here.content.decode()
    assert alice_elsewhere.status_code == 302


def test_it_writes_one_failed_login_entry_per_address_and_minute(
    db: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS
    minute = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: minute + timedelta(seconds=5))
    for number in range(30):
        log_in(Client(), f"name-{number % 3}", "wrong")

    first = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    tally = LoginFailureTally.objects.get()
    assert (first.ip, first.target) == ("203.0.113.7", "name-0")
    assert (tally.address, tally.minute, tally.count) == ("203.0.113.7", minute, 30)
    assert tally.usernames == ["name-0", "name-1", "name-2"]
    assert tally.entry_id == first.id

    monkeypatch.setattr(timezone, "now", lambda: minute + timedelta(seconds=65))
    log_in(Client(), "name-0", "wrong")
    log_in(Client(), "name-0", "wrong", address="198.51.100.4")

    entries = AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).order_by("id")
    assert [e.ip for e in entries] == ["203.0.113.7", "203.0.113.7", "198.51.100.4"]
    assert sorted(LoginFailureTally.objects.values_list("count", flat=True)) == [1, 1, 30]
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_it_counts_concurrent_failed_logins_from_one_address_under_one_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moment = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: moment)
    threads_count, per_thread = 6, 10
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def fail(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(per_thread):
                record_login_failure(username=f"w{worker}", ip="203.0.113.7")
        except BaseException as error:  # reported to the main thread below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fail, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).count() == 1
    assert LoginFailureTally.objects.get().count == threads_count * per_thread
    assert verify_chain().ok


# --- The audit key ---------------------------------------------------------------------------

KEY = "first-audit-key-for-the-tests-0123456789"
NEXT_KEY = "next-audit-key-for-the-tests-9876543210"


def rechain(entries: list[AuditEvent], *, algorithm: str, guessed_key: str) -> None:
    """What someone who can write the table but lacks the key can do: recompute every hash."""
    previous = AuditEvent.objects.filter(id__lt=entries[0].id).order_by("-id").first()
    prev_hash = previous.hash if previous else GENESIS_HASH
    for stored in entries:
        entry = AuditEvent.objects.get(pk=stored.pk)
        entry.prev_hash, entry.algorithm = prev_hash, algorithm
        guess = AuditKeys(signing_id=entry.key_id, by_id={entry.key_id: guessed_key.encode()})
        entry.hash = entry.computed_hash(guess)
        raw(
            f"UPDATE {TABLE} SET prev_hash = %s, hash = %s, algorithm = %s WHERE id = %s",
            [entry.prev_hash, entry.hash, algorithm, entry.id],
        )
        prev_hash = entry.hash


def write_unsigned_entries(count: int) -> list[AuditEvent]:
    """Entries as the portal wrote them before the audit key: plain SHA-256."""
    entries = []
    for number in range(count):
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        entry = AuditEvent(
            action=AuditAction.JOB_STATE,
            target=f"old-{number}",
            at=timezone.now(),
            prev_hash=last or GENESIS_HASH,
            algorithm=HashAlgorithm.SHA256,
        )
        entry.hash = entry.computed_hash()
        entry.save()
        entries.append(entry)
    return entries


def test_it_signs_entries_with_the_audit_key_and_stores_only_its_fingerprint(
    db: None,
    settings: Any,
) -> None:
    settings.PORTAL_AUDIT_KEYS = [KEY]

    entry = record(action=AuditAction.LOGIN, target="alice")

    assert (entry.algorithm, entry.key_id) == ("hmac-sha256", audit_key_id(KEY))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TABLE}")
        stored = repr(cursor.fetchall())
    assert KEY not in stored
    assert verify_chain().ok
    settings.PORTAL_AUDIT_KEYS = [NEXT_KEY]
    assert not verify_chain().ok


def test_it_detects_entries_re_chained_without_the_key(db: None, settings: Any) -> None:
    settings.PORTAL_AUDIT_KEYS = [KEY]
    entries = record_some(6)
    raw(f"UPDATE {TABLE} SET target = 'job-forged' WHERE id = %s", [entries[2].id])

    rechain(entries[2:], algorithm=HashAlgorithm.HMAC_SHA256, guessed_key="a-guess")
    guessed = verify_chain()
    rechain(entries[2:], algorithm=HashAlgorithm.SHA256, guessed_key="")
    downgraded = verify_chain()

    assert (guessed.ok, guessed.broken_at_id) == (False, entries[2].id)
    assert "edited" in guessed.reason
    assert (downgraded.ok, downgraded.broken_at_id) == (False, entries[2].id)
    assert "plain SHA-256 hash after entries signed" in downgraded.reason


def test_it_verifies_entries_signed_with_a_rotated_out_key_while_it_is_listed(
    db: None,
    settings: Any,
) -> None:
    settings.PORTAL_AUDIT_KEYS = [KEY]
    old = record_some(3)
    settings.PORTAL_AUDIT_KEYS = [NEXT_KEY, KEY]
    new = record_some(2)

    assert {e.key_id for e in old} == {audit_key_id(KEY)}
    assert {e.key_id for e in new} == {audit_key_id(NEXT_KEY)}
    assert verify_chain().ok
    settings.PORTAL_AUDIT_KEYS = [NEXT_KEY]
    dropped = verify_chain()
    assert (dropped.ok, dropped.broken_at_id) == (False, old[0].id)
    assert f"audit key {audit_key_id(KEY)!r}, which is not in PORTAL_AUDIT_KEY" in dropped.reason


def test_it_still_verifies_entries_from_before_the_audit_key(db: None) -> None:
    unsigned = write_unsigned_entries(3)
    signed = record_some(2)
    out = StringIO()

    report = verify_chain()
    call_command("audit_verify", stdout=out)

    assert (report.ok, report.checked, report.unsigned) == (True, 5, 3)
    assert signed[0].prev_hash == unsigned[-1].hash
    assert out.getvalue().strip() == (
        "Audit chain intact: 5 entries checked. 3 of them predate the audit key (plain SHA-256)."
    )
    # Re-chaining them in plain SHA-256 is easy, but the first signed entry then breaks.
    raw(f"UPDATE {TABLE} SET target = 'old-forged' WHERE id = %s", [unsigned[1].id])
    rechain(unsigned[1:], algorithm=HashAlgorithm.SHA256, guessed_key="")
    assert verify_chain().broken_at_id == signed[0].id


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("DEBUG", "SECRET_KEY", "PORTAL_ENCRYPTION_KEY", "PORTAL_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "snapshots_portal" / "settings.py"))


PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x7!kq2-production-like-secret-key-for-the-audit-key-check-0123456789",
    "PORTAL_ENCRYPTION_KEY": "kTz3n1QnV4c1l5cM3eQ0m4pJ2f9rS8uW6yA7bC5dE0g=",
    "ALLOWED_HOSTS": "portal.example.com",
    "PORTAL_CACHE_URL": "redis://127.0.0.1:6379/1",
}


def test_it_requires_the_audit_key_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match="PORTAL_AUDIT_KEY must be set .* secrets"):
        load_settings(monkeypatch, **PRODUCTION)
    with pytest.raises(ImproperlyConfigured, match="PORTAL_AUDIT_KEY must be keys of 32 or more"):
        load_settings(monkeypatch, **PRODUCTION, PORTAL_AUDIT_KEY=f"{KEY},short")

    rotating = load_settings(monkeypatch, **PRODUCTION, PORTAL_AUDIT_KEY=f"{NEXT_KEY}, {KEY}")
    local = load_settings(monkeypatch, DEBUG="1")

    assert rotating["PORTAL_AUDIT_KEYS"] == [NEXT_KEY, KEY]
    assert len(local["PORTAL_AUDIT_KEYS"]) == 1
    assert local["PORTAL_AUDIT_KEYS"][0] != local["SECRET_KEY"]


# --- PostgreSQL refuses TRUNCATE to the application --------------------------------------------


@pytest.mark.postgres
def test_it_refuses_truncate_update_and_delete_to_the_applications_role(db: None) -> None:
    assert connection.vendor == "postgresql", "this test needs DATABASE_URL=postgres://..."
    entry = record_some(1)[0]
    # A role like the portal's in production: may write the table, is no superuser. Created in
    # the test's transaction, so it disappears with it.
    role = f"portal_app_{connection.settings_dict['NAME']}"[:63]
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN NOSUPERUSER')
        cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {TABLE} TO "{role}"')
        cursor.execute(f'SET LOCAL ROLE "{role}"')
        refused = []
        for sql in (
            f"TRUNCATE {TABLE}",
            f"UPDATE {TABLE} SET target = 'x'",
            f"DELETE FROM {TABLE}",
        ):
            with pytest.raises(DatabaseError, match="append-only") as error, transaction.atomic():
                cursor.execute(sql)
            refused.append(str(error.value).split(":")[1].strip().split()[0])
        cursor.execute("RESET ROLE")

    assert refused == ["TRUNCATE", "UPDATE", "DELETE"]
    assert AuditEvent.objects.get().pk == entry.pk


# --- Checking against a recorded head ----------------------------------------------------------


def head_now() -> dict[str, Any]:
    out = StringIO()
    call_command("audit_verify", "--head", stdout=out)
    return dict(json.loads(out.getvalue()))


def verify_against(*arguments: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *arguments, stdout=out, stderr=err)
    except SystemExit as exit_info:
        return int(exit_info.code or 0), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_the_command_detects_dropped_newest_entries_against_a_recorded_head(
    db: None, tmp_path: Path
) -> None:
    entries = record_some(5)
    head = head_now()
    head_file = tmp_path / "audit-head.json"
    head_file.write_text(json.dumps(head))
    assert (head["count"], head["last_id"], head["last_hash"]) == (
        5,
        entries[-1].id,
        entries[-1].hash,
    )
    later = record_some(2)
    assert verify_against("--against", str(head_file))[:2] == (
        0,
        "Audit chain intact: 7 entries checked. The recorded head (entry 5) is still in the log.\n",
    )
    status, out, _ = verify_against("--against", str(head_file), "--head")  # check, then record
    assert (status, json.loads(out)["count"], json.loads(out)["last_hash"]) == (
        0,
        7,
        later[-1].hash,
    )

    raw(f"DELETE FROM {TABLE} WHERE id >= %s", [entries[4].id])

    assert verify_against()[0] == 0  # the chain alone cannot tell
    status, out, err = verify_against("--against", str(head_file))
    assert (status, out) == (1, "")
    assert err.strip() == (
        "Audit chain BROKEN: the log holds 4 entries but the head recorded earlier had 5: "
        "the newest 1 were dropped"
    )


def test_the_command_detects_newest_entries_replaced_after_a_recorded_head(db: None) -> None:
    entries = record_some(5)
    head = head_now()
    raw(f"DELETE FROM {TABLE} WHERE id >= %s", [entries[3].id])
    replacements = record_some(3)

    status, _, err = verify_against(
        "--expect-count", str(head["count"]), "--expect-hash", head["last_hash"]
    )

    assert status == 1
    assert err.startswith(f"Audit chain BROKEN at entry #{replacements[1].id}: it is entry 5 ")
    assert "replaced" in err


def test_the_command_explains_an_unusable_recorded_head(db: None, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("count=3")

    with pytest.raises(CommandError, match="go together"):
        call_command("audit_verify", "--expect-count", "3")
    with pytest.raises(CommandError, match="not a head"):
        call_command("audit_verify", "--against", str(tmp_path / "bad.json"))
    with pytest.raises(CommandError, match="Cannot read the recorded head"):
        call_command("audit_verify", "--against", str(tmp_path / "missing.json"))
    with pytest.raises(CommandError, match="64 lower-case hex digits"):
        call_command("audit_verify", "--expect-count", "3", "--expect-hash", "abc")
