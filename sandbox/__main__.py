"""`python -m sandbox` runs the emulator and the object store; `... presign` prints a URL."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from typing import Any

from sandbox.config import SandboxConfig
from sandbox.imports import ImportSpeed
from sandbox.run import Sandbox
from sandbox.store import DEMO_BUCKET, DEMO_KEY, DEMO_VIRTUAL_SIZE, ObjectStore

# Run by hand, the demo image would import in a blink; a few seconds show progress rising.
CLI_IMPORT_SECONDS = 10.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = SandboxConfig.from_env()
    if args.command == "presign":
        return _presign(config, args)
    return _serve(config, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--api-port", type=int, default=None, help="API port (default 8787)")
    parser.add_argument("--s3-port", type=int, default=None, help="object store port (8788)")
    parser.add_argument(
        "--import-seconds",
        type=float,
        default=None,
        help="stretch each import to at least this long so progress can be watched "
        f"(default: SANDBOX_IMPORT_MIN_SECONDS, else {CLI_IMPORT_SECONDS:g}; 0 = full speed)",
    )
    commands = parser.add_subparsers(dest="command")
    presign = commands.add_parser("presign", help="print a fresh pre-signed URL")
    presign.add_argument("--style", choices=("v4", "v2"), default="v4")
    presign.add_argument("--expires", type=int, default=3600, help="seconds (default 3600)")
    presign.add_argument("--bucket", default=DEMO_BUCKET)
    presign.add_argument("--key", default=DEMO_KEY)
    presign.add_argument("--s3-url", default=None, help="the running store's URL")
    return parser


def _presign(config: SandboxConfig, args: argparse.Namespace) -> int:
    port = args.s3_port or config.s3_port
    store = ObjectStore(
        config.host, port, config.s3_access_key, config.s3_secret_key, config.region
    )
    store.url = args.s3_url or f"http://127.0.0.1:{port}"
    print(store.presign(style=args.style, expires=args.expires, key=args.key, bucket=args.bucket))
    return 0


def _serve(config: SandboxConfig, args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("host", args.host),
            ("api_port", args.api_port),
            ("s3_port", args.s3_port),
        )
        if value is not None
    }
    if args.import_seconds is not None:
        overrides["speed"] = ImportSpeed(config.speed.bytes_per_second, args.import_seconds)
    elif "SANDBOX_IMPORT_MIN_SECONDS" not in os.environ:
        overrides["speed"] = ImportSpeed(config.speed.bytes_per_second, CLI_IMPORT_SECONDS)
    sandbox = Sandbox(dataclasses.replace(config, **overrides))
    sandbox.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _print_banner(sandbox)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    print("sandbox stopped", file=sys.stderr)
    return 0


def _print_banner(sandbox: Sandbox) -> None:
    account = sandbox.account
    lines = [
        "OUTSCALE sandbox running",
        f"  API endpoint      {sandbox.api_url}    (OSC_ENDPOINT_API)",
        f"  Region            {sandbox.region}",
        f"  Access key        {account.access_key}",
        f"  Secret key        {account.secret_key}",
        f"  Account ID        {account.account_id}",
        *(
            f"  Extra account     {extra.access_key} ({extra.account_id})"
            for extra in sandbox.accounts[1:]
        ),
        f"  Object store      {sandbox.s3_url}  bucket {DEMO_BUCKET}, key {DEMO_KEY}",
        f"  Admin             {sandbox.endpoint}/_sandbox/state",
        f"  Import            SnapshotSize >= {DEMO_VIRTUAL_SIZE} bytes (the image's virtual size)",
        f"  Import pace       {sandbox.config.speed}",
        "",
        "Pre-signed URL (SigV4, 1 hour):",
        sandbox.presign(style="v4"),
        "",
        "Pre-signed URL (SigV2, 1 hour):",
        sandbox.presign(style="v2"),
        "",
        "New URL: python -m sandbox presign [--style v4|v2] [--expires SECONDS]. Ctrl-C stops.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
