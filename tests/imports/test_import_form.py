from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.imports.forms import MAX_SNAPSHOT_SIZE, ImportSnapshotForm
from importer.presigned import fetch, sniff, urls
from tests.support.factories import oos_presigned_url

GIB = 1024**3


@pytest.fixture(autouse=True)
def no_network_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OOS hosts are out of reach here; inspection has its own tests over real HTTP."""

    def not_inspected(url: urls.PresignedUrl, **_: object) -> fetch.Inspection:
        return fetch.Inspection(info=None, warning="not inspected in this test")

    monkeypatch.setattr(fetch, "inspect_presigned_url", not_inspected)


def form_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "backup-volume",
        "description": "Nightly backup",
        "presigned_url": oos_presigned_url(),
        "snapshot_size": str(10 * GIB),
    }
    data.update(overrides)
    return data


def errors_of(**overrides: str) -> dict[str, list[str]]:
    form = ImportSnapshotForm(form_data(**overrides))
    assert not form.is_valid()
    return {field: list(messages) for field, messages in form.errors.items()}


def test_it_accepts_cockpits_four_fields() -> None:
    form = ImportSnapshotForm(form_data(name="  Sauvegarde été  ", description=""))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == "Sauvegarde été"
    assert form.cleaned_data["snapshot_size"] == 10 * GIB
    assert form.parsed_url is not None
    assert form.parsed_url.bucket == "exports-bucket"


def test_it_accepts_both_signature_styles() -> None:
    for style in ("v4", "v2"):
        form = ImportSnapshotForm(form_data(presigned_url=oos_presigned_url(style=style)))
        assert form.is_valid(), form.errors


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", "", "Enter a name"),
        ("name", "   ", "Enter a name"),
        ("name", "x" * 256, "at most 255"),
        ("name", "bad\x00name", "control character"),
        ("name", "bad\r\nname", "control character"),
        ("name", "spoof\u202eevil", "invisible"),
        ("description", "d" * 1001, "at most 1000"),
        ("description", "ring\x07bell", "control character"),
        ("snapshot_size", "", "Enter the snapshot size"),
        ("snapshot_size", "ten gigs", "whole number of bytes"),
        ("snapshot_size", "1.5", "whole number of bytes"),
        ("snapshot_size", "-5", "whole number of bytes"),
        ("snapshot_size", "0", "at least 1 byte"),
        ("snapshot_size", str(MAX_SNAPSHOT_SIZE + 1), "14901 GiB"),
        ("snapshot_size", "٣٣", "whole number of bytes"),
        ("presigned_url", "", "Paste the pre-signed URL"),
        ("presigned_url", "x" * 5000, "4096"),
    ],
)
def test_it_says_what_is_wrong_in_the_field(field: str, value: str, expected: str) -> None:
    errors = errors_of(**{field: value})
    assert list(errors) == [field]
    assert expected in " ".join(errors[field])


@pytest.mark.parametrize(
    "url",
    [
        "http://oos.eu-west-2.outscale.com/bucket/key?X-Amz-Signature=abc",
        "https://evil.example.com/bucket/key?AWSAccessKeyId=a&Expires=9999999999&Signature=s",
        "https://oos.eu-west-2.outscale.com/bucket/key",
        "https://user:pass@oos.eu-west-2.outscale.com/bucket/key?AWSAccessKeyId=a&Expires=9999999999&Signature=s",
        "https://127.0.0.1/bucket/key?AWSAccessKeyId=a&Expires=9999999999&Signature=s",
        "javascript:alert(1)",
    ],
)
def test_it_refuses_urls_that_are_not_allow_listed_pre_signed_https(url: str) -> None:
    errors = errors_of(presigned_url=url)
    assert list(errors) == ["presigned_url"]


def test_it_refuses_an_expired_url() -> None:
    url = oos_presigned_url(style="v2", expires=-60)
    assert "expired" in " ".join(errors_of(presigned_url=url)["presigned_url"]).lower()


def test_it_admits_loopback_http_urls_only_when_told_to_and_listed_exactly(settings) -> None:
    local = "http://127.0.0.1:8788/bucket/key?AWSAccessKeyId=a&Expires=9999999999&Signature=s"
    assert "presigned_url" in errors_of(presigned_url=local)
    settings.PORTAL_ALLOW_HTTP_URLS = True
    # The flag alone admits nothing: the host and port must be listed too.
    assert "presigned_url" in errors_of(presigned_url=local)
    settings.PORTAL_URL_HOSTS = ["127.0.0.1:8788"]
    assert ImportSnapshotForm(form_data(presigned_url=local)).is_valid()
    for other in (
        "127.0.0.1:6379",
        "127.0.0.1:22",
        "127.0.0.2:8788",
        "[::1]:8788",
        "localhost:8788",
    ):
        assert "presigned_url" in errors_of(presigned_url=local.replace("127.0.0.1:8788", other))


def test_it_requires_at_least_the_detected_uncompressed_size(monkeypatch) -> None:
    info = sniff.ImageInfo("gzip", "qcow2", 10 * GIB, 300_000, 10 * GIB, "qcow2 inside gzip")

    def inspected(url: urls.PresignedUrl, **_: object) -> fetch.Inspection:
        return fetch.Inspection(info=info, warning=None)

    monkeypatch.setattr(fetch, "inspect_presigned_url", inspected)
    errors = errors_of(snapshot_size=str(5 * GIB))
    assert str(10 * GIB) in errors["snapshot_size"][0]
    assert ImportSnapshotForm(form_data(snapshot_size=str(10 * GIB))).is_valid()


def test_it_never_puts_the_signature_in_an_error_message() -> None:
    url = oos_presigned_url(expires=-60)
    signature = url.split("X-Amz-Signature=")[1]
    form = ImportSnapshotForm(form_data(presigned_url=url))
    assert not form.is_valid()
    assert signature not in str(form.errors)


hostile_pieces = st.sampled_from(["\x00", "\r\n", "<script>", "%00", "\u202e", "é", " "])
hostile_text = st.lists(st.text(max_size=20) | hostile_pieces, max_size=15).map("".join)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=hostile_text,
    description=hostile_text,
    url=hostile_text | st.just(oos_presigned_url()),
    size=st.text(alphabet=string.digits + " -.e_x", max_size=30) | st.integers().map(str),
)
def test_it_never_crashes_nor_accepts_an_invalid_value(name, description, url, size) -> None:
    form = ImportSnapshotForm(
        {"name": name, "description": description, "presigned_url": url, "snapshot_size": size}
    )
    if not form.is_valid():
        return
    cleaned = form.cleaned_data
    assert 1 <= len(cleaned["name"]) <= 255 and cleaned["name"] == cleaned["name"].strip()
    assert not any(ch in cleaned["name"] for ch in "\x00\r\n\t\u202e")
    assert len(cleaned["description"]) <= 1000 and "\x00" not in cleaned["description"]
    assert 1 <= cleaned["snapshot_size"] <= MAX_SNAPSHOT_SIZE
    assert form.parsed_url is not None and form.parsed_url.scheme == "https"
    assert form.parsed_url.host.endswith(".outscale.com")
