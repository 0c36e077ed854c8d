"""Sandbox settings from the environment, with defaults that serve a local run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from sandbox.faults import Fault, faults_from_json
from sandbox.imports import ImportSpeed
from sandbox.signing import Account

DEFAULT_ACCESS_KEY = "SANDBOXACCESSKEY0000"
DEFAULT_SECRET_KEY = "sandbox-secret-key-0000000000000000000000"  # noqa: S105 - a public test key
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_S3_ACCESS_KEY = "SANDBOXS3ACCESSKEY00"
DEFAULT_S3_SECRET_KEY = "sandbox-s3-secret-key-000000000000000000"  # noqa: S105


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    api_port: int = 8787
    s3_port: int = 8788
    region: str = "eu-west-2"
    accounts: list[Account] = field(default_factory=list)
    s3_access_key: str = DEFAULT_S3_ACCESS_KEY
    s3_secret_key: str = field(default=DEFAULT_S3_SECRET_KEY, repr=False)
    speed: ImportSpeed = field(default_factory=ImportSpeed)
    faults: list[Fault] = field(default_factory=list)
    import_workers: int = 32

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> SandboxConfig:
        env = dict(os.environ if env is None else env)
        return cls(
            host=env.get("SANDBOX_HOST", "127.0.0.1"),
            api_port=_int(env, "SANDBOX_API_PORT", 8787),
            s3_port=_int(env, "SANDBOX_S3_PORT", 8788),
            region=env.get("OSC_REGION", "eu-west-2"),
            accounts=accounts_from_env(env),
            s3_access_key=env.get("SANDBOX_S3_ACCESS_KEY", DEFAULT_S3_ACCESS_KEY),
            s3_secret_key=env.get("SANDBOX_S3_SECRET_KEY", DEFAULT_S3_SECRET_KEY),
            speed=ImportSpeed(
                bytes_per_second=_int(env, "SANDBOX_IMPORT_BYTES_PER_SECOND", 0) or None,
                min_seconds=float(env.get("SANDBOX_IMPORT_MIN_SECONDS", "0")),
            ),
            faults=faults_from_json(env.get("SANDBOX_FAULTS", "")),
            import_workers=_int(env, "SANDBOX_IMPORT_WORKERS", 32),
        )


def default_account(env: dict[str, str] | None = None) -> Account:
    env = dict(os.environ if env is None else env)
    return Account(
        access_key=env.get("OSC_ACCESS_KEY", DEFAULT_ACCESS_KEY),
        secret_key=env.get("OSC_SECRET_KEY", DEFAULT_SECRET_KEY),
        account_id=env.get("OSC_ACCOUNT_ID", DEFAULT_ACCOUNT_ID),
    )


def accounts_from_env(env: dict[str, str]) -> list[Account]:
    """The default account, plus `SANDBOX_ACCOUNTS`: a JSON list of
    {"access_key", "secret_key", "account_id", "alias"?} objects, one per team."""
    extra = json.loads(env.get("SANDBOX_ACCOUNTS", "") or "[]")
    if not isinstance(extra, list):
        raise ValueError("SANDBOX_ACCOUNTS must be a JSON list")
    return [default_account(env), *(Account(**item) for item in extra)]


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
