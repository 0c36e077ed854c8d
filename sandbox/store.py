"""The S3-compatible object store: moto's server behind the pre-signed URL guard."""

from __future__ import annotations

import logging
from typing import Any, Literal

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from sandbox import qcow2
from sandbox.presign_guard import PresignGuard

logger = logging.getLogger(__name__)

DEMO_BUCKET = "snapshot-exports"
DEMO_KEY = "exports/demo-snapshot.qcow2.gz"
DEMO_VIRTUAL_SIZE = 10 * qcow2.GIB
Style = Literal["v4", "v2"]


class _QuietHandler(MotoRequestHandler):
    """Logs request lines without their query: a pre-signed URL's signature is a secret."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        path = self.path.split("?", 1)[0]
        logger.debug('"%s %s" %s %s', self.command, path, code, size)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        logger.debug("object store: %s", type(self).__name__)


class GuardedMotoServer(ThreadedMotoServer):
    """moto's threaded server, serving only S3 and only through `PresignGuard`."""

    def __init__(self, host: str, port: int, keys: dict[str, str]) -> None:
        super().__init__(ip_address=host, port=port, verbose=False)
        self._keys = keys

    def _server_entry(self) -> None:
        app = PresignGuard(create_backend_app("s3"), self._keys)
        self._server = make_server(
            self._ip_address, self._port, app, threaded=True, request_handler=_QuietHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class ObjectStore:
    def __init__(self, host: str, port: int, access_key: str, secret_key: str, region: str):
        self.access_key = access_key
        self._secret_key = secret_key
        self.region = region
        # Pre-signed URLs made with any of these keys are accepted (add_key: account keys).
        self._keys = {access_key: secret_key}
        self._server = GuardedMotoServer(host, port, self._keys)
        self._public_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = ""

    def start(self) -> None:
        self._server.start()
        _, port = self._server.get_host_and_port()
        self.url = f"http://{self._public_host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def client(self, style: Style = "v4") -> Any:
        """A boto3 S3 client for this store, path-style, signing with `style`."""
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self._secret_key,
            config=Config(
                signature_version="s3v4" if style == "v4" else "s3",
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2},
            ),
        )

    def seed(self) -> None:
        """Create the demo bucket and its gzipped qcow2 image (idempotent)."""
        self.ensure_bucket(DEMO_BUCKET)
        image = qcow2.build_gzipped_image(DEMO_VIRTUAL_SIZE)
        self.put_object(DEMO_KEY, image, content_type="application/gzip")

    def add_key(self, access_key: str, secret_key: str) -> None:
        """Accept URLs pre-signed with this key too (OOS takes an account's API keys)."""
        self._keys[access_key] = secret_key

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.client().head_bucket(Bucket=bucket)
        except ClientError:
            return False
        return True

    def ensure_bucket(self, bucket: str) -> None:
        client = self.client()
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket, **self._location())

    def put_object(
        self,
        key: str,
        data: bytes,
        bucket: str = DEMO_BUCKET,
        content_type: str = "application/octet-stream",
    ) -> None:
        self.ensure_bucket(bucket)
        self.client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def presign(
        self,
        *,
        style: Style = "v4",
        expires: int = 3600,
        key: str = DEMO_KEY,
        bucket: str = DEMO_BUCKET,
    ) -> str:
        url: str = self.client(style).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
        )
        return url

    def _location(self) -> dict[str, Any]:
        if self.region == "us-east-1":
            return {}
        return {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
