"""The OUTSCALE API emulator over real HTTP, plus its `/_sandbox/` admin endpoints."""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandbox import actions, errors
from sandbox.exports import Exporter
from sandbox.faults import FaultInjector, faults_from_json
from sandbox.images import ImageStore
from sandbox.imports import Importer, ImportSpeed
from sandbox.signing import Account, SignedRequest, verify_request
from sandbox.state import CloudState
from sandbox.volumes import VolumeStore

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
ADMIN_PREFIX = "/_sandbox/"
MAX_BODY = 1024 * 1024


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | list[Any]
    drop: bool = False  # close the connection without answering


class Emulator:
    """Everything the API serves, independent of the HTTP plumbing."""

    def __init__(
        self,
        accounts: list[Account],
        region: str,
        importer: Importer,
        state: CloudState,
        faults: FaultInjector,
        exporter: Exporter | None = None,
    ) -> None:
        self.exporter = exporter
        # Volumes and OMIs share the state's lock and lifecycle timer.
        self.volumes = VolumeStore(state)
        self.images = ImageStore(state)
        self.accounts = {account.access_key: account for account in accounts}
        self.region = region
        self.importer = importer
        self.state = state
        self.faults = faults
        self.stopping = threading.Event()
        # Bumped by reset(): a delayed request from before a reset must not act on the new world.
        self.generation = 0

    def handle_api(self, action: str, request: SignedRequest) -> Reply:
        request_id = errors.new_request_id()
        try:
            return self._act(action, request, request_id)
        except errors.OscError as error:
            return Reply(error.status, error.body(request_id))
        except Exception as exc:
            logger.error("action %s crashed: %s", action, type(exc).__name__)
            return Reply(500, errors.internal_error().body(request_id))

    def _act(self, action: str, request: SignedRequest, request_id: str) -> Reply:
        if request.method != "POST":
            raise errors.method_not_allowed()
        account = verify_request(request, self.accounts, self.region)
        if not actions.is_known(action):
            raise errors.unknown_action(action)
        body = _json_object(request.body)
        self.state.count_call(action, body)
        fault = self.faults.take(action)
        if fault is not None and fault.kind == "error":
            raise errors.throttled(fault.status) if fault.status != 500 else errors.internal_error()
        if fault is not None and fault.kind in ("timeout", "slow"):
            generation = self.generation
            self.stopping.wait(fault.delay)
            if generation != self.generation:
                raise errors.internal_error()  # reset meanwhile: act on nothing
        context = actions.Context(
            account,
            self.state,
            self.importer,
            self.region,
            exporter=self.exporter,
            volumes=self.volumes,
            images=self.images,
        )
        result = actions.run(action, context, body)
        result["ResponseContext"] = {"RequestId": request_id}
        return Reply(200, result, drop=fault is not None and fault.kind == "drop")

    def handle_admin(self, method: str, name: str, body: bytes) -> Reply:
        try:
            return self._admin(method, name, body)
        except (ValueError, TypeError) as exc:
            return Reply(400, {"error": str(exc)})

    def _admin(self, method: str, name: str, raw: bytes) -> Reply:
        if (method, name) == ("GET", "state"):
            return Reply(200, self.dump())
        if (method, name) == ("GET", "health"):
            return Reply(200, {"ok": True})
        if (method, name) == ("POST", "reset"):
            self.reset()
            return Reply(200, self.dump())
        if name == "faults" and method == "GET":
            return Reply(200, self.faults.dump())
        if name == "faults" and method == "DELETE":
            self.faults.clear()
            return Reply(200, [])
        if name == "faults" and method == "POST":
            for fault in faults_from_json(raw.decode() or "[]"):
                self.faults.add(fault)
            return Reply(200, self.faults.dump())
        if name == "speed" and method == "POST":
            data = json.loads(raw or b"{}")
            self.importer.set_speed(ImportSpeed(**data) if data else None)
            return Reply(200, self.importer.speed.to_dict())
        if name == "speed" and method == "GET":
            return Reply(200, self.importer.speed.to_dict())
        if name == "lifecycle" and method == "POST":
            self.set_lifecycle(json.loads(raw or b"{}"))
            return Reply(200, self.lifecycle())
        if name == "lifecycle" and method == "GET":
            return Reply(200, self.lifecycle())
        if name == "limits" and method == "POST":
            self.set_limits(json.loads(raw or b"{}"))
            return Reply(200, self.limits())
        if name == "limits" and method == "GET":
            return Reply(200, self.limits())
        return Reply(404, {"error": f"no admin endpoint {method} {ADMIN_PREFIX}{name}"})

    def set_lifecycle(self, data: dict[str, Any]) -> None:
        """`{"seconds": 0.5 | null, "fail_next_images": 2}`: either or both."""
        unknown = set(data) - {"seconds", "fail_next_images"}
        if unknown:
            raise ValueError(f"unknown lifecycle fields: {sorted(unknown)}")
        if "seconds" in data:
            seconds = data["seconds"]
            self.state.lifecycle.set_seconds(None if seconds is None else float(seconds))
        if "fail_next_images" in data:
            self.images.fail_next(int(data["fail_next_images"]))

    def set_limits(self, data: dict[str, Any]) -> None:
        """`{"concurrent_imports": 5 | null}`: how many imports an account may run at once."""
        unknown = set(data) - {"concurrent_imports"}
        if unknown:
            raise ValueError(f"unknown limits: {sorted(unknown)}")
        limit = data.get("concurrent_imports")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError("concurrent_imports must be a positive integer or null")
        self.state.concurrent_imports_limit = limit

    def limits(self) -> dict[str, Any]:
        return {"concurrent_imports": self.state.concurrent_imports_limit}

    def lifecycle(self) -> dict[str, Any]:
        return {
            "seconds": self.state.lifecycle.seconds,
            "fail_next_images": self.images.pending_failures(),
        }

    def reset(self) -> None:
        self.generation += 1
        self.faults.clear()
        self.state.reset()
        self.volumes.reset()
        self.images.reset()
        self.importer.set_speed(None)
        if self.exporter is not None:
            self.exporter.reset()

    def dump(self) -> dict[str, Any]:
        account_ids = [account.account_id for account in self.accounts.values()]
        return {
            **self.state.dump(account_ids),
            "volumes": self.volumes.dump(account_ids),
            "images": self.images.dump(account_ids),
            "lifecycle": self.lifecycle(),
            "faults": self.faults.dump(),
            "speed": self.importer.speed.to_dict(),
            "exports": self.exporter.dump() if self.exporter is not None else [],
        }


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise errors.invalid_value("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.invalid_value("body", "must be a JSON object")
    return body


class _Handler(BaseHTTPRequestHandler):
    server: ApiHttpServer
    protocol_version = "HTTP/1.1"  # keep-alive, as API clients with sessions expect

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        emulator = self.server.emulator
        if url.path.startswith(ADMIN_PREFIX):
            reply = self._admin(emulator, url.path[len(ADMIN_PREFIX) :], body)
        elif url.path.startswith(API_PREFIX):
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = SignedRequest(self.command, url.path, url.query, headers, body)
            reply = emulator.handle_api(url.path[len(API_PREFIX) :], request)
        else:
            reply = Reply(404, errors.unknown_action(url.path).body())
        self._send(reply)

    def _admin(self, emulator: Emulator, name: str, body: bytes) -> Reply:
        # Admin endpoints are unauthenticated, so they only answer the local machine.
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            return Reply(403, {"error": "admin endpoints answer loopback clients only"})
        return emulator.handle_admin(self.command, name.strip("/"), body)

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(Reply(413, errors.invalid_value("body", "is too large").body()))
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        logger.debug("%s - %s", self.address_string(), format % args)


class ApiHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a timeout test, a dropped answer) is not a server error.
        logger.debug("connection from %s ended abruptly", client_address)
