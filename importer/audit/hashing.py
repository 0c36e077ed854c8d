"""The audit chain's hashes: what an entry's hash covers, and the HMAC keys that sign it."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from importer.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditKeys:
    """The keys of PORTAL_AUDIT_KEY by fingerprint: the first one signs, every one verifies."""

    signing_id: str
    by_id: Mapping[str, bytes]


def audit_key_id(key: str) -> str:
    """A key's fingerprint: names the key in an entry and cannot be turned back into it."""
    return hashlib.sha256(b"portal-audit-key-id:" + key.encode()).hexdigest()[:KEY_ID_LENGTH]


def audit_keys() -> AuditKeys:
    keys = [key for key in getattr(settings, "PORTAL_AUDIT_KEYS", []) if key]
    if not keys:
        raise ImproperlyConfigured("PORTAL_AUDIT_KEY must be set: the audit log is signed with it")
    by_id: dict[str, bytes] = {}
    for key in keys:
        by_id.setdefault(audit_key_id(key), key.encode())
    return AuditKeys(signing_id=audit_key_id(keys[0]), by_id=by_id)


def hashed_fields(entry: AuditEvent) -> dict[str, Any]:
    return {
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "team_id": entry.team_id,
        "team_name": entry.team_name,
        "action": str(entry.action),
        "target": entry.target,
        "ip": entry.ip,
        "details": entry.details,
    }


def entry_hash(prev_hash: str, fields: Mapping[str, Any], *, key: bytes | None = None) -> str:
    """HMAC-SHA256 hex under `key` (plain SHA-256 without one) of `prev_hash` and `fields`."""
    canonical = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    message = (prev_hash + canonical).encode("ascii")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


GENESIS_HASH = "0" * 64


# Hex digits of a key's fingerprint kept in `key_id`: enough to tell a handful of keys apart.
KEY_ID_LENGTH = 12
