from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from importer.audit.addresses import normalised_ip
from importer.audit.hashing import GENESIS_HASH, audit_keys
from importer.audit.models import (
    ACTOR_NAME_LENGTH,
    TARGET_LENGTH,
    TEAM_NAME_LENGTH,
    AuditAction,
    AuditEvent,
    HashAlgorithm,
    UnverifiableEntry,
)
from importer.core.redaction import REDACTED, redact_text

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    from importer.teams.models import Team


# Any key containing one of these (lower case, "-" read as "_") has its value replaced whole.
SECRET_KEY_PARTS = (
    "secret",
    "password",
    "passwd",
    "signature",
    "token",
    "authorization",
    "cookie",
    "private_key",
    "api_key",
)


# pg_advisory_xact_lock key held while appending: one writer at a time reads the chain's tail.
# The value is arbitrary; it only has to be the same everywhere ("AUDIT" in ASCII).
CHAIN_LOCK_KEY = 0x4155444954


# A nesting bound for details: deeper structures are summarised, not walked.
MAX_DETAILS_DEPTH = 20


def _clean_text(text: str, limit: int | None = None) -> str:
    # NUL and lone surrogates are refused by PostgreSQL; replace them so the stored value is
    # exactly the value that was hashed.
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    text = redact_text(text)
    return text[:limit] if limit is not None else text


def _is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact_details(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-ready copy of `value` with secrets removed.

    Strings go through `redact_text` (pre-signed URLs, signature parameters); the values of keys
    that name a secret become "[redacted]". Numbers come out in the form a PostgreSQL `jsonb`
    column gives back (integral floats as integers), so the hash of a stored entry can be
    recomputed from what the database returns.
    """
    if _depth > MAX_DETAILS_DEPTH:
        return "[too deeply nested]"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, Mapping):
        cleaned: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = _clean_text(str(raw_key))
            secret = _is_secret_key(key)
            cleaned[key] = REDACTED if secret else redact_details(item, _depth=_depth + 1)
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_details(item, _depth=_depth + 1) for item in value]
    try:
        # Dates, times, decimals, UUIDs, lazy strings: the same text Django's JSON uses.
        return _clean_text(str(DjangoJSONEncoder().default(value)))
    except TypeError:
        return _clean_text(str(value))


@dataclass(frozen=True)
class Entry:
    """One audit entry to append, as `record` takes it (for `record_many`)."""

    action: AuditAction | str
    actor: AbstractBaseUser | AnonymousUser | None = None
    actor_name: str | None = None
    team: Team | None = None
    target: str = ""
    ip: str | None = None
    details: Mapping[str, Any] | None = None


def record(
    *,
    action: AuditAction | str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_name: str | None = None,
    team: Team | None = None,
    target: str = "",
    ip: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Appends one entry to the audit chain and returns it.

    `actor_name` defaults to the actor's user name (give it for a failed sign-in, where there is
    no actor). Runs in its own transaction, or a savepoint of the caller's: the entry is part of
    the caller's work and disappears with it on rollback. Writers are serialised until commit,
    so keep the surrounding transaction short.
    """
    entry = Entry(action, actor, actor_name, team, target, ip, details)
    return record_many([entry])[0]


def record_many(entries: Sequence[Entry]) -> list[AuditEvent]:
    """Appends the entries to the chain in their order, under one lock, in one INSERT: what a
    bulk import writes (one entry per job) costs one round trip instead of five per entry."""
    events = [_new_event(entry) for entry in entries]
    keys = audit_keys()
    with transaction.atomic():
        lock_chain()
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        # Stamped under the lock, so entries are in time order as well as in chain order.
        at = timezone.now()
        previous = last or GENESIS_HASH
        for event in events:
            event.algorithm = HashAlgorithm.HMAC_SHA256
            event.key_id = keys.signing_id
            event.at = at
            event.prev_hash = previous
            event.hash = previous = event.computed_hash(keys)
        if len(events) == 1:
            events[0].save()
        else:
            # The chain's writer itself: AuditEvent's own queryset refuses bulk writes to
            # everyone else. Ids follow the list's order (one INSERT under the chain's lock).
            AuditEvent._base_manager.bulk_create(events)
    return events


def _new_event(entry: Entry) -> AuditEvent:
    if entry.action not in AuditAction.values:
        raise ValueError(f"Unknown audit action {entry.action!r}; add it to AuditAction first.")
    actor, team = entry.actor, entry.team
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    actor_name = entry.actor_name
    if actor_name is None:
        actor_name = actor.get_username() if actor is not None and actor_id is not None else ""
    return AuditEvent(
        actor_id=actor_id,
        actor_name=_clean_text(actor_name, ACTOR_NAME_LENGTH),
        team_id=team.pk if team is not None else None,
        team_name=_clean_text(team.name, TEAM_NAME_LENGTH) if team is not None else "",
        action=str(entry.action),
        target=_clean_text(str(entry.target), TARGET_LENGTH),
        ip=normalised_ip(entry.ip),
        details=redact_details(dict(entry.details or {})),
    )


def lock_chain() -> None:
    """Makes this transaction the only writer of the chain until it ends (re-entrant)."""
    # SQLite needs nothing here: its transactions are IMMEDIATE (see settings), so the writer
    # holding the database lock is the only one reading the tail.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])


@dataclass(frozen=True)
class ChainHead:
    """Where the chain ended when it was checked: record it elsewhere, check against it later.

    The chain binds every entry to all before it, so if the log still holds `count` entries and
    the last of those has `last_hash`, none of them was dropped or changed since.
    """

    count: int
    last_hash: str
    last_id: int | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"a head's entry count cannot be negative, not {self.count}")
        if len(self.last_hash) != 64 or any(c not in "0123456789abcdef" for c in self.last_hash):
            raise ValueError(f"a head's hash is 64 lower-case hex digits, not {self.last_hash!r}")
        if self.count == 0 and self.last_hash != GENESIS_HASH:
            raise ValueError("a head of 0 entries has the hash of 64 zeros")

    def to_json(self) -> str:
        return json.dumps(
            {"count": self.count, "last_id": self.last_id, "last_hash": self.last_hash}
        )

    @classmethod
    def from_json(cls, text: str) -> ChainHead:
        """Reads what `to_json` wrote; raises ValueError saying what is wrong."""
        try:
            data = json.loads(text)
            count, last_hash = data["count"], data["last_hash"]
        except (ValueError, TypeError, KeyError):
            raise ValueError(
                'not a head: expected {"count": N, "last_hash": "..."} as printed by '
                "audit_verify --head"
            ) from None
        last_id = data.get("last_id")
        if not isinstance(count, int) or not isinstance(last_hash, str):
            raise ValueError("not a head: count must be a number and last_hash a string")
        return cls(
            count=count, last_hash=last_hash, last_id=last_id if isinstance(last_id, int) else None
        )


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at_id: int | None = None
    reason: str = ""
    # The head the check ended on (meaningful when ok), and how many entries predate the key.
    last_hash: str = GENESIS_HASH
    last_id: int | None = None
    unsigned: int = 0

    @property
    def head(self) -> ChainHead:
        return ChainHead(count=self.checked, last_hash=self.last_hash, last_id=self.last_id)


def verify_chain(*, batch_size: int = 2000, expected_head: ChainHead | None = None) -> ChainReport:
    """Walks the chain in id order and reports the first entry that breaks it.

    An edited entry no longer matches its own hash; a deleted, reordered or inserted entry
    leaves the next one pointing at a hash that is not its predecessor's. Plain SHA-256 entries
    are accepted only before the first signed one: after it, one is a forgery. With
    `expected_head`, the log must still hold that head: fewer entries means the newest were
    dropped, another hash at its position means the entries up to it were replaced.
    """
    keys = audit_keys()
    checked = unsigned = 0
    previous_hash, previous_id = GENESIS_HASH, None
    signed_seen = False

    def broken(entry_id: int | None, reason: str) -> ChainReport:
        return ChainReport(
            ok=False, checked=checked, broken_at_id=entry_id, reason=reason, unsigned=unsigned
        )

    for entry in _entries_in_chain_order(batch_size):
        checked += 1
        if entry.prev_hash != previous_hash:
            before = f"entry #{previous_id}" if previous_id is not None else "the start of the log"
            return broken(
                entry.id,
                f"it does not follow {before} (an entry between them was deleted, "
                "or entries were inserted or reordered)",
            )
        is_unsigned = entry.algorithm == HashAlgorithm.SHA256
        if is_unsigned and signed_seen:
            return broken(
                entry.id,
                "it has a plain SHA-256 hash after entries signed with the audit key "
                "(only entries from before the key may: this one was forged or downgraded)",
            )
        try:
            expected = entry.computed_hash(keys)
        except UnverifiableEntry as error:
            return broken(entry.id, str(error))
        if expected != entry.hash:
            return broken(entry.id, "its contents do not match its hash (the entry was edited)")
        if is_unsigned:
            unsigned += 1
        else:
            signed_seen = True
        if (
            expected_head is not None
            and checked == expected_head.count
            and entry.hash != expected_head.last_hash
        ):
            return broken(
                entry.id,
                f"it is entry {checked} of the log, where the recorded head is, but its hash "
                "is not the recorded one (entries up to the head were replaced)",
            )
        previous_hash, previous_id = entry.hash, entry.id
    if expected_head is not None and checked < expected_head.count:
        return broken(
            None,
            f"the log holds {checked} entries but the head recorded earlier had "
            f"{expected_head.count}: the newest {expected_head.count - checked} were dropped",
        )
    return ChainReport(
        ok=True, checked=checked, last_hash=previous_hash, last_id=previous_id, unsigned=unsigned
    )


def _entries_in_chain_order(batch_size: int) -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size)
