"""PORTAL_LOG_FORMAT=json: one JSON object a line, with the job, team and request id, redacted."""

from __future__ import annotations

import io
import json
import logging
import runpy
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from importer.core.logs import JsonFormatter, bind, log_context
from importer.core.redaction import SignatureRedactingFilter
from importer.jobs.runners import row_task

SIGNATURE = "0f3c9e1d2b4a69788d1c2e3f4a5b6c7d8e9f00112233445566778899aabbccdd"
URL = (
    "https://oos.eu-west-2.outscale.com/bucket/disk.qcow2?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20261204%2Feu-west-2%2Fs3%2Faws4_request&X-Amz-Date=20261204T000000Z"
    f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}"
)


@pytest.fixture
def lines() -> tuple[logging.Logger, io.StringIO]:
    """A logger wired as the settings wire the console: redaction filter, then the formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SignatureRedactingFilter())
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def records(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_line_is_one_json_object_with_the_context(lines) -> None:
    logger, stream = lines
    with log_context(job_id="job-1"):
        bind(team="ops")
        logger.warning("sent %s", "CreateSnapshot", extra={"request_id": "req-9"})
    logger.info("outside any job")
    bind(team="leaks?")  # outside any context: ignored, never stuck on later lines
    logger.info("still outside")

    inside, outside, later = records(stream)
    assert inside["level"] == "WARNING" and inside["message"] == "sent CreateSnapshot"
    assert (inside["job_id"], inside["team"], inside["request_id"]) == ("job-1", "ops", "req-9")
    assert inside["time"].endswith("+00:00") and inside["logger"] == logger.name
    assert "job_id" not in outside and "team" not in outside and "team" not in later


def test_a_pre_signed_urls_signature_never_reaches_a_json_line(lines) -> None:
    logger, stream = lines
    logger.error("could not read %s", URL)
    try:
        raise ValueError(f"bad object at {URL}")
    except ValueError:
        logger.exception("inspection failed")

    text = stream.getvalue()
    assert SIGNATURE not in text
    message, failure = records(stream)
    assert "bucket/disk.qcow2" in message["message"]  # the object is still named, redacted
    assert "ValueError" in failure["exception"]


def test_a_row_task_names_its_job_in_every_line(lines) -> None:
    logger, stream = lines
    task = row_task(
        f"tests.logs.{uuid.uuid4().hex}", lambda row_id: logger.info("working"), KeyError
    )

    task.run("3f1e2d4c-0000-4000-8000-000000000001")

    assert records(stream)[0]["job_id"] == "3f1e2d4c-0000-4000-8000-000000000001"


SETTINGS = Path(__file__).resolve().parents[2] / "snapshots_portal" / "settings.py"


def test_the_setting_picks_the_format_and_refuses_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEBUG", "1")
    monkeypatch.setenv("PORTAL_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("PORTAL_LOG_FORMAT", "json")
    loaded = runpy.run_path(str(SETTINGS))
    assert loaded["LOGGING"]["handlers"]["console"]["formatter"] == "json"
    assert loaded["LOGGING"]["handlers"]["console"]["filters"] == ["redact"]

    monkeypatch.setenv("PORTAL_LOG_FORMAT", "yaml")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_LOG_FORMAT"):
        runpy.run_path(str(SETTINGS))
