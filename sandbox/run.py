"""Start the sandbox's two servers in this process: `start_sandbox(...) -> Sandbox`."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import requests

from sandbox.api import ApiHttpServer, Emulator
from sandbox.config import SandboxConfig
from sandbox.exports import Exporter
from sandbox.faults import Fault, FaultInjector
from sandbox.images import DEFAULT_FAILURE
from sandbox.imports import Importer, ImportSpeed
from sandbox.signing import Account, sign_request
from sandbox.state import CloudState
from sandbox.store import DEMO_BUCKET, DEMO_KEY, ObjectStore, Style


class Sandbox:
    """Both servers, running on real sockets, with handles for tests.

    The methods act in-process; the same operations exist over HTTP under `/_sandbox/`.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.region = config.region
        self.accounts = list(config.accounts)
        self._state = CloudState()
        self._importer = Importer(self._state, workers=config.import_workers, speed=config.speed)
        self._faults = FaultInjector()
        self.store = ObjectStore(
            config.host, config.s3_port, config.s3_access_key, config.s3_secret_key, self.region
        )
        for account in self.accounts:
            self.store.add_key(account.access_key, account.secret_key)
        self._exporter = Exporter(self._state, self.store)
        self._emulator = Emulator(
            self.accounts, self.region, self._importer, self._state, self._faults, self._exporter
        )
        for fault in config.faults:
            self._faults.add(fault)
        self._http = ApiHttpServer((config.host, config.api_port), self._emulator)
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="sandbox-api", daemon=True
        )
        public_host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        self.endpoint = f"http://{public_host}:{self._http.server_address[1]}"
        self.api_url = f"{self.endpoint}/api/v1"

    @property
    def account(self) -> Account:
        """The default account."""
        return self.accounts[0]

    @property
    def s3_url(self) -> str:
        return self.store.url

    def start(self, seed: bool = True) -> None:
        self._thread.start()
        self.store.start()
        if seed:
            self.store.seed()

    def stop(self) -> None:
        self._emulator.stopping.set()
        self._importer.stop()
        self._exporter.stop()
        self._state.lifecycle.stop()
        self._http.shutdown()
        self._http.server_close()
        self.store.stop()

    def presign(
        self,
        style: Style = "v4",
        expires: int = 3600,
        key: str = DEMO_KEY,
        bucket: str = DEMO_BUCKET,
    ) -> str:
        return self.store.presign(style=style, expires=expires, key=key, bucket=bucket)

    def put_object(self, key: str, data: bytes, bucket: str = DEMO_BUCKET) -> None:
        self.store.put_object(key, data, bucket=bucket)

    def inject_fault(
        self,
        action: str,
        kind: str,
        *,
        status: int = 503,
        count: int | None = 1,
        probability: float = 1.0,
        delay: float | None = None,
        seconds: float | None = None,
    ) -> Fault:
        fault = Fault(action, kind, status, count, probability, delay, seconds)
        self._faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_speed(self, bytes_per_second: int | None = None, min_seconds: float = 0.0) -> None:
        self._importer.set_speed(ImportSpeed(bytes_per_second, min_seconds))

    def set_export_seconds(self, seconds: float | None) -> None:
        """How long each export task lasts (None: the starting pace, instant)."""
        self._exporter.set_seconds(seconds)

    def set_lifecycle_seconds(self, seconds: float | None) -> None:
        """How long volumes stay `creating`, OMIs and snapshot copies `pending` (None: the
        starting 0.2 s; 0: they are made in their final state). Applies to those made next."""
        self._state.lifecycle.set_seconds(seconds)

    def fail_next_images(
        self,
        count: int = 1,
        *,
        state_code: str = DEFAULT_FAILURE["StateCode"],
        state_message: str = DEFAULT_FAILURE["StateMessage"],
    ) -> None:
        """The next `count` OMIs made end `failed` with this StateComment (0: none)."""
        comment = {"StateCode": state_code, "StateMessage": state_message}
        self._emulator.images.fail_next(count, comment)

    def set_concurrent_imports_limit(self, limit: int | None) -> None:
        """How many imports one account may run at once; more are refused as OUTSCALE refuses
        a quota (None: no limit). The state's `max_concurrent_imports` says the most seen."""
        self._emulator.set_limits({"concurrent_imports": limit})

    def state(self) -> dict[str, Any]:
        return self._emulator.dump()

    def reset(self) -> None:
        """Forget snapshots, volumes, OMIs, counters and faults; restore the starting import
        speed, lifecycle delay and export pace."""
        self._emulator.reset()

    def add_account(self, account: Account) -> None:
        self._emulator.accounts[account.access_key] = account
        self.accounts.append(account)
        self.store.add_key(account.access_key, account.secret_key)

    def call(
        self,
        action: str,
        body: dict[str, Any] | None = None,
        *,
        account: Account | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST a correctly signed request, as a well-behaved client would."""
        payload = json.dumps(body or {}).encode()
        host = self.endpoint.split("://", 1)[1]
        headers = sign_request(
            account or self.account,
            self.region,
            method="POST",
            host=host,
            path=f"/api/v1/{action}",
            body=payload,
        )
        return requests.post(
            f"{self.api_url}/{action}", data=payload, headers=headers, timeout=timeout
        )


def start_sandbox(
    api_port: int = 0,
    s3_port: int = 0,
    *,
    host: str = "127.0.0.1",
    accounts: list[Account] | None = None,
    speed: ImportSpeed | None = None,
    seed: bool = True,
    config: SandboxConfig | None = None,
) -> Sandbox:
    """Start both servers on threads of this process (port 0 picks a free port)."""
    base = config or SandboxConfig.from_env()
    config = dataclasses.replace(base, host=host, api_port=api_port, s3_port=s3_port)
    if accounts is not None:
        config.accounts = list(accounts)
    if speed is not None:
        config.speed = speed
    sandbox = Sandbox(config)
    sandbox.start(seed=seed)
    return sandbox
