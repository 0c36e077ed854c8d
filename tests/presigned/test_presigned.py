from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import logging
import socket
import ssl
import struct
import threading
import time
import tracemalloc
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from importer.core.redaction import SignatureRedactingFilter, redact_text, redact_url
from importer.core.units import GIB
from importer.outscale.regions import OOS_HOSTS, OUTSCALE_REGIONS
from importer.presigned.fetch import InspectionError, inspect_presigned_url, read_object_head
from importer.presigned.sniff import format_gib, sniff_image
from importer.presigned.urls import PresignedUrlError, UrlPolicy, parse_presigned_url

UTC = dt.UTC
NOW = dt.datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
NOW_NAIVE = NOW.replace(tzinfo=None)
SIGNED_AT = "20261128T080000Z"  # one hour before NOW
SIG4 = "d3adb33f" * 8
SIG2 = "c2VjcmV0U2lnbmF0dXJlVmFsdWU="
ACCESS_KEY = "ABCDEFGHIJ0123456789"
OOS = "oos.eu-west-2.outscale.com"
STRICT = UrlPolicy()


def v4_query(
    *, date: str = SIGNED_AT, expires: int | str = 7200, signature: str = SIG4, drop: str = ""
) -> str:
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{ACCESS_KEY}/{date[:8]}/eu-west-2/s3/aws4_request",
        "X-Amz-Date": date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": signature,
    }
    params.pop(drop, None)
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())


def v4_url(base: str = f"https://{OOS}/bucket/images/disk.qcow2.gz", **kwargs) -> str:
    return f"{base}?{v4_query(**kwargs)}"


def v2_url(base: str = f"https://{OOS}/bucket/disk.raw", *, expires: int | None = None) -> str:
    epoch = expires if expires is not None else int((NOW + dt.timedelta(hours=3)).timestamp())
    return f"{base}?AWSAccessKeyId={ACCESS_KEY}&Expires={epoch}&Signature={quote(SIG2, safe='')}"


def refusal(raw: str, policy: UrlPolicy = STRICT, now: dt.datetime = NOW) -> str:
    with pytest.raises(PresignedUrlError) as caught:
        parse_presigned_url(raw, policy=policy, now=now)
    message = str(caught.value)
    assert SIG4 not in message
    assert SIG2 not in message
    assert ACCESS_KEY not in message
    return message


# --------------------------------------------------------------------------------------------
# Parsing


def test_it_accepts_a_sigv4_path_style_url():
    url = parse_presigned_url(v4_url(), policy=STRICT, now=NOW)

    assert (url.scheme, url.host, url.port) == ("https", OOS, 443)
    assert (url.bucket, url.key, url.style) == ("bucket", "images/disk.qcow2.gz", "sigv4")
    assert url.expires_at == dt.datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert url.warnings == ()
    assert url.secret_url == v4_url()


def test_it_accepts_a_sigv2_url_with_epoch_expiry():
    url = parse_presigned_url(v2_url(), policy=STRICT, now=NOW)

    assert url.style == "sigv2"
    assert (url.bucket, url.key) == ("bucket", "disk.raw")
    assert url.expires_at == NOW + dt.timedelta(hours=3)


def test_it_accepts_a_virtual_hosted_oos_url():
    url = parse_presigned_url(
        v4_url(f"https://my-bucket.{OOS}/dir/disk.raw"), policy=STRICT, now=NOW
    )

    assert (url.host, url.bucket, url.key) == (f"my-bucket.{OOS}", "my-bucket", "dir/disk.raw")


@pytest.mark.parametrize("region", OUTSCALE_REGIONS)
def test_it_accepts_every_outscale_region(region):
    url = parse_presigned_url(
        v4_url(f"https://oos.{region}.outscale.com/b/k"), policy=STRICT, now=NOW
    )

    assert url.host == f"oos.{region}.outscale.com"


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_it_accepts_urls_generated_by_boto3(signature_version):
    client = boto3.client(
        "s3",
        endpoint_url=f"https://{OOS}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="s" * 40,
        region_name="eu-west-2",
        config=Config(signature_version=signature_version, s3={"addressing_style": "path"}),
    )
    raw = client.generate_presigned_url(
        "get_object", Params={"Bucket": "backups", "Key": "vm 1/disk.qcow2"}, ExpiresIn=86400
    )

    url = parse_presigned_url(raw, policy=STRICT, now=dt.datetime.now(UTC))

    assert (url.bucket, url.key) == ("backups", "vm 1/disk.qcow2")
    assert url.style == ("sigv4" if signature_version == "s3v4" else "sigv2")


def test_it_normalises_the_case_of_the_host_and_strips_surrounding_whitespace():
    raw = v4_url("HTTPS://OOS.EU-WEST-2.OUTSCALE.COM/bucket/Key.raw")

    url = parse_presigned_url(f"  {raw}\n", policy=STRICT, now=NOW)

    assert (url.scheme, url.host, url.key) == ("https", OOS, "Key.raw")
    assert url.secret_url == raw


def test_it_never_shows_the_signature_in_the_repr():
    url = parse_presigned_url(v4_url(), policy=STRICT, now=NOW)

    assert SIG4 not in repr(url)
    assert ACCESS_KEY not in repr(url)
    assert url.redacted == f"https://{OOS}/bucket/images/disk.qcow2.gz?expires=2026-11-28T10:00:00Z"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "Paste the pre-signed URL"),
        (v4_url(f"http://{OOS}/b/k"), "Plain http:// is not accepted"),
        (v4_url(f"ftp://{OOS}/b/k"), "must start with https://"),
        (v4_url(f"{OOS}/b/k"), "must start with https://"),
        (v4_url("https://evil.example.com/b/k"), "evil.example.com is not an accepted object"),
        (v4_url(f"https://{OOS}.evil.com/b/k"), "only looks like an OUTSCALE one"),
        (v4_url("https://oos-eu-west-2.outscale.com/b/k"), "only looks like an OUTSCALE one"),
        (v4_url("https://oos.eu-west-9.outscale.com/b/k"), "is not an accepted object store"),
        (v4_url(f"https://a.b.{OOS}/k"), "is not an accepted object store"),
        (v4_url(f"https://Bad_Bucket.{OOS}/k"), "is not an accepted object store"),
        (v4_url(f"https://{OOS}:8443/b/k"), f"{OOS}:8443 is not an accepted"),
        (v4_url(f"https://{OOS}@evil.com/b/k"), "user name or password"),
        (v4_url(f"https://user:pw@{OOS}/b/k"), "user name or password"),
        (v4_url(f"https://{OOS}\\@evil.com/b/k"), "backslash"),
        (v4_url("https://oos%2eeu-west-2.outscale.com/b/k"), "percent-encoded"),
        (v4_url(f"https://{OOS}./b/k"), "ends with a dot"),
        (v4_url("https://\u043eos.eu-west-2.outscale.com/b/k"), "non-ASCII"),
        (v4_url("https://oos\u3002eu-west-2.outscale.com/b/k"), "non-ASCII"),
        (v4_url(f"https://{OOS}/b/k") + "\r\nHost: evil", "line breaks or control"),
        (v4_url(f"https://{OOS}/b/k\x00.raw"), "line breaks or control"),
        (v4_url(f"https://{OOS}/b/my disk.raw"), "spaces"),
        (v4_url(f"https://{OOS}/b/k") + "#frag", "'#' fragment"),
        (v4_url(f"https://{OOS}:99999/b/k"), "not a valid port"),
        (v4_url(f"https://{OOS}/bucket"), "not at an object"),
        (v4_url(f"https://{OOS}/bucket/"), "not at an object"),
        (v4_url(f"https://{OOS}/"), "does not name a bucket"),
        (v4_query(), "must start with https://"),
        (v4_url(f"https://{OOS}/b/../other/k"), "'.' or '..'"),
        (v4_url(f"https://{OOS}/b/%2e%2e/other/k"), "'.' or '..'"),
        (v4_url(f"https://{OOS}/b/k%0Aevil"), "control characters"),
        (f"https://{OOS}/b/k", "not pre-signed"),
        (f"https://{OOS}/b/k?versionId=3", "not pre-signed"),
        (v4_url(drop="X-Amz-Signature"), "X-Amz-Signature is missing"),
        (v4_url(drop="X-Amz-Credential"), "X-Amz-Credential is missing"),
        (v4_url(drop="X-Amz-Date"), "X-Amz-Date is missing"),
        (v4_url(drop="X-Amz-Expires"), "X-Amz-Expires is missing"),
        (v4_url(drop="X-Amz-SignedHeaders"), "X-Amz-SignedHeaders is missing"),
        (v4_url(drop="X-Amz-Algorithm"), "X-Amz-Algorithm is missing"),
        (v4_url(signature=""), "X-Amz-Signature is missing or empty"),
        (v4_url(signature=SIG4[:40]), "X-Amz-Signature is malformed"),
        (v4_url(expires=0), "between 1 and 604800"),
        (v4_url(expires=604801), "between 1 and 604800"),
        (v4_url(expires="12h"), "between 1 and 604800"),
        (v4_url(date="2026-11-28T08:00:00Z"), "X-Amz-Date is malformed"),
        (v4_url().replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), "AWS4-HMAC-SHA256"),
        (v4_url().replace("%2Fs3%2F", "%2Fec2%2F"), "X-Amz-Credential is malformed"),
        (v4_url().replace("20261128%2F", "20261127%2F"), "X-Amz-Credential is malformed"),
        (v4_url().replace("SignedHeaders=host", "SignedHeaders=range"), "must include host"),
        (v4_url() + f"&X-Amz-Signature={SIG4}", "appears more than once"),
        (v4_url() + f"&x-amz-signature={SIG4}", "appears more than once"),
        (v4_url() + f"&Signature={SIG2}", "mixes two signature versions"),
        (v4_url() + "&flag", "malformed or truncated"),
        (v2_url().replace(f"&Signature={quote(SIG2, safe='')}", ""), "Signature is missing"),
        (v2_url().replace(f"AWSAccessKeyId={ACCESS_KEY}&", ""), "AWSAccessKeyId is missing"),
        (f"https://{OOS}/b/k?Expires=tomorrow&AWSAccessKeyId=A&Signature=S", "Unix timestamp"),
        (v4_url(date="20261128T060000Z"), "expired at 2026-11-28T08:00:00Z"),
        (v2_url(expires=int(NOW.timestamp())), "expired at 2026-11-28T09:00:00Z"),
    ],
)
def test_it_refuses_bad_urls_saying_how_to_fix_them(raw, expected):
    assert expected in refusal(raw)


def test_it_refuses_urls_longer_than_the_policy_allows():
    message = refusal(v4_url(), UrlPolicy(max_length=100))

    assert "at most 100 are accepted" in message


def test_it_refuses_a_naive_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_presigned_url(v4_url(), policy=STRICT, now=NOW.replace(tzinfo=None))


def test_it_warns_when_the_url_expires_within_the_warning_window():
    soon = parse_presigned_url(v4_url(expires=3600 + 20 * 60), policy=STRICT, now=NOW)
    later = parse_presigned_url(v4_url(expires=3600 * 3), policy=STRICT, now=NOW)
    custom = parse_presigned_url(
        v4_url(expires=3600 * 3), policy=UrlPolicy(expiry_warning=dt.timedelta(hours=6)), now=NOW
    )

    assert len(soon.warnings) == 1
    assert "expires in 20 minutes (at 2026-11-28T09:20:00Z)" in soon.warnings[0]
    assert "--expires-in" in soon.warnings[0]
    assert later.warnings == ()
    assert "expires in 120 minutes" in custom.warnings[0]


def test_it_admits_plain_http_only_for_a_host_listed_with_its_port():
    listed = UrlPolicy(extra_hosts=("127.0.0.1:9000",), allow_http=True)

    url = parse_presigned_url(v4_url("http://127.0.0.1:9000/b/k"), policy=listed, now=NOW)

    assert (url.host, url.port) == ("127.0.0.1", 9000)
    assert "plain http://" in url.warnings[0]
    # The same entry without the relaxation: https only.
    strict = UrlPolicy(extra_hosts=("127.0.0.1:9000",))
    assert "Plain http:// is not accepted" in refusal(v4_url("http://127.0.0.1:9000/b/k"), strict)


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:6379/b/k",
        "http://127.0.0.1:22/b/k",
        "http://127.0.0.2:9000/b/k",
        "http://[::1]:9000/b/k",
        "http://localhost:9000/b/k",
        "http://127.0.0.1/b/k",
        "http://10.0.0.1:9000/b/k",
        "http://127.1:9000/b/k",
        "http://2130706433/b/k",
    ],
)
def test_it_admits_no_other_loopback_address_or_port_with_allow_http(base):
    listed = UrlPolicy(extra_hosts=("127.0.0.1:9000",), allow_http=True)

    message = refusal(v4_url(base), listed)

    assert "is not accepted" in message or "is not an accepted" in message


def test_it_refuses_plain_http_to_a_host_listed_without_its_port():
    listed = UrlPolicy(extra_hosts=("objects.example.test",), allow_http=True)

    message = refusal(v4_url("http://objects.example.test/b/k"), listed)

    assert "http:// is admitted only for a host listed with its port in PORTAL_URL_HOSTS" in message


def test_it_admits_extra_hosts_on_their_port_only():
    plain = UrlPolicy(extra_hosts=("Objects.Example.Test",))
    with_port = UrlPolicy(extra_hosts=("objects.example.test:9000",))

    assert parse_presigned_url(
        v4_url("https://objects.example.test/b/k"), policy=plain, now=NOW
    ).host == ("objects.example.test")
    assert "objects.example.test:9000 is not" in refusal(
        v4_url("https://objects.example.test:9000/b/k"), plain
    )
    assert parse_presigned_url(
        v4_url("https://objects.example.test:9000/b/k"), policy=with_port, now=NOW
    ).port == (9000)
    assert "is not an accepted" in refusal(v4_url("https://objects.example.test/b/k"), with_port)


@pytest.mark.parametrize("entry", ["", "host/path", "a@b", "host:port", "-bad-.example"])
def test_it_rejects_a_malformed_extra_host_in_the_policy(entry):
    with pytest.raises(ValueError, match="invalid extra host"):
        UrlPolicy(extra_hosts=(entry,))


_PARAM_NAMES = st.sampled_from(
    [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "AWSAccessKeyId",
        "Expires",
        "Signature",
        "versionId",
    ]
)
_PARAM_VALUES = st.one_of(
    st.sampled_from(
        ["AWS4-HMAC-SHA256", SIGNED_AT, "7200", "host", SIG4, "9999999999", "0", ACCESS_KEY]
    ),
    st.sampled_from([f"{ACCESS_KEY}/20261128/eu-west-2/s3/aws4_request"]),
    st.text(max_size=20),
)
_HOSTS = st.one_of(
    st.sampled_from(sorted(OOS_HOSTS)),
    st.sampled_from(sorted(OOS_HOSTS)),
    st.sampled_from(sorted(OOS_HOSTS)),
    st.sampled_from(sorted(OOS_HOSTS)),
    st.sampled_from([f"bkt.{OOS}", f"{OOS}.evil.com", "127.0.0.1", "localhost", f"{OOS}."]),
    st.text(max_size=30),
)


@st.composite
def signature_params(draw):
    """A complete v4 or v2 parameter set with a random expiry, then randomly damaged."""
    signed_at = draw(st.datetimes(min_value=dt.datetime(2026, 11, 26), max_value=NOW_NAIVE))
    if draw(st.booleans()):
        date = signed_at.strftime("%Y%m%dT%H%M%SZ")
        valid = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{ACCESS_KEY}/{date[:8]}/eu-west-2/s3/aws4_request",
            "X-Amz-Date": date,
            "X-Amz-Expires": str(draw(st.integers(1, 604800))),
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": SIG4,
        }
    else:
        expires = signed_at.replace(tzinfo=UTC) + dt.timedelta(seconds=draw(st.integers(0, 10**6)))
        valid = {
            "AWSAccessKeyId": ACCESS_KEY,
            "Expires": str(int(expires.timestamp())),
            "Signature": SIG2,
        }
    pairs = []
    for name, value in valid.items():
        action = draw(st.sampled_from(["keep"] * 30 + ["drop", "change", "rename"]))
        if action == "change":
            value = draw(_PARAM_VALUES)
        elif action == "rename":
            name = draw(_PARAM_NAMES)
        if action != "drop":
            pairs.append((name, value))
    pairs += draw(st.lists(st.tuples(_PARAM_NAMES, _PARAM_VALUES), max_size=1))
    return draw(st.permutations(pairs))


@st.composite
def url_like(draw):
    scheme = draw(st.sampled_from(["https"] * 12 + ["http", "HTTPS", "ftp", "", "javascript"]))
    host = draw(_HOSTS)
    port = draw(st.sampled_from([""] * 12 + [":443", ":9000", ":0", ":"]))
    path = draw(
        st.sampled_from(["/b/k", "/b/k.qcow2", "/bkt/d/disk.raw", "/b/", "", "/b/../k"])
        | st.sampled_from(["/b/k", "/b/k.qcow2"])
        | st.text()
    )
    pairs = draw(signature_params())
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in pairs)
    return f"{scheme}://{host}{port}{path}?{query}"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(st.text(max_size=300), url_like(), url_like(), url_like()))
def test_it_only_raises_presigned_url_error_and_accepts_only_safe_urls(raw):
    try:
        url = parse_presigned_url(raw, policy=STRICT, now=NOW)
    except PresignedUrlError:
        return
    assert url.scheme == "https"
    assert url.secret_url.lower().startswith("https://")
    assert url.host in OOS_HOSTS or url.host.partition(".")[2] in OOS_HOSTS
    assert url.port == 443
    assert url.expires_at > NOW
    lowered = url.secret_url.lower()
    required = (
        ["x-amz-algorithm=", "x-amz-credential=", "x-amz-date=", "x-amz-expires="]
        + ["x-amz-signedheaders=", "x-amz-signature="]
        if url.style == "sigv4"
        else ["awsaccesskeyid=", "expires=", "signature="]
    )
    assert all(name in lowered for name in required)


# --------------------------------------------------------------------------------------------
# Redaction


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (v4_url(), f"https://{OOS}/bucket/images/disk.qcow2.gz?expires=2026-11-28T10:00:00Z"),
        (v2_url(), f"https://{OOS}/bucket/disk.raw?expires=2026-11-28T12:00:00Z"),
        (v4_url("http://localhost:9000/b/k"), "http://localhost:9000/b/k?expires="),
        (f"https://{OOS}/b/k?Signature={SIG2}", f"https://{OOS}/b/k?[redacted]"),
        (f"https://{ACCESS_KEY}:{SIG2}@{OOS}/b/k", f"https://{OOS}/b/k"),
        (f"https://{OOS}/b/k&X-Amz-Signature={SIG4}", f"https://{OOS}/[redacted]"),
        (f"https://{OOS}/b/k%3FX-Amz-Signature%3D{SIG4}", f"https://{OOS}/[redacted]"),
        (f"https://{OOS}/b/k%253FSignature%253D{SIG2}", f"https://{OOS}/[redacted]"),
        (f"https://{OOS}/b/k#X-Amz-Signature={SIG4}", f"https://{OOS}/b/k"),
        (f"https://{OOS}/b/k X-Amz-Signature={SIG4}", f"https://{OOS}/[redacted]"),
        (f"{OOS}/b/k?AWSAccessKeyId={ACCESS_KEY}&Signature={SIG2}", f"{OOS}/b/k?[redacted]"),
        (f"\x00garbage?Signature={SIG2}", "?[redacted]"),
        (f"https://{OOS}/b/k\r\nInjected: yes", "https://oos.eu-west-2.outscale.com/b/k%0D%0A"),
    ],
)
def test_it_redacts_urls_including_malformed_ones(raw, expected):
    redacted = redact_url(raw)

    assert expected in redacted
    for secret in (SIG4, SIG2, quote(SIG2, safe=""), ACCESS_KEY):
        assert secret not in redacted
    assert "\n" not in redacted
    assert "\r" not in redacted


def test_it_redacts_a_non_string_without_raising():
    assert redact_url(12345) == "12345"  # type: ignore[arg-type]


def test_it_redacts_urls_inside_free_text():
    text = (
        f"CreateSnapshot failed for {v4_url()}: InvalidParameterValue.\n"
        f'{{"Details": "FileLocation {v2_url()} is not reachable"}}\n'
        f"next=https%3A%2F%2F{OOS}%2Fb%2Fk%3FX-Amz-Signature%3D{SIG4}%26X-Amz-Date%3D1\n"
        f"query fragment: X-Amz-Credential={ACCESS_KEY}%2F20261128&X-Amz-Signature={SIG4}\n"
        f"params={{'X-Amz-Signature': ['{SIG4}'], 'AWSAccessKeyId': ['{ACCESS_KEY}']}}\n"
        f'json="X-Amz-Algorithm=x\\u0026Signature={SIG2}\\u0026Expires=1"'
    )

    redacted = redact_text(text)

    for secret in (SIG4, SIG2, quote(SIG2, safe=""), ACCESS_KEY):
        assert secret not in redacted
    assert f"https://{OOS}/bucket/images/disk.qcow2.gz?expires=2026-11-28T10:00:00Z:" in redacted
    assert "InvalidParameterValue." in redacted


def test_it_leaves_text_without_signatures_alone():
    text = "Snapshot snap-1234 is completed; see https://cockpit.example.com/snapshots?page=2."

    assert redact_text(text) == text


# Each input starts with what made the old pattern backtrack (a separator it tried every way to
# split before failing), then holds a real secret that must still go. The timeout is the guard:
# the old pattern needed minutes for 100 kB; the figure itself is in `make bench` (Redaction).
_ADVERSARIAL_PREFIXES = {
    "colon-then-spaces": lambda n: "signature:" + " " * n + "&",
    "quoted-colon-bracket": lambda n: "X-Amz-Signature'" + " " * (n // 2) + ":[" + " " * (n // 2),
    "repeated-param": lambda n: "signature=" * (n // 10) + "\n",
    "repeated-encoded-equals": lambda n: "%3d" * (n // 3) + "\n",
    "endless-url": lambda n: "https://" + "a" * n + " ",
    "many-plain-urls": lambda n: "https://example.com/a " * (n // 22),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [100_000, 200_000])
@pytest.mark.parametrize("prefix", _ADVERSARIAL_PREFIXES.values(), ids=_ADVERSARIAL_PREFIXES.keys())
def test_it_redacts_long_adversarial_text_without_stalling(prefix, size):
    text = prefix(size) + f" X-Amz-Signature={SIG4} and {v4_url()} end"

    redacted = redact_text(text)

    assert SIG4 not in redacted
    assert ACCESS_KEY not in redacted
    assert redacted.endswith(
        f" and https://{OOS}/bucket/images/disk.qcow2.gz?expires=2026-11-28T10:00:00Z end"
    )


def test_it_redacts_log_records_message_args_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SignatureRedactingFilter())
    logger = logging.getLogger("tests.presigned.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetching %s failed (%d)", v4_url(), 403)
        logger.warning({"FileLocation": v2_url()})
        try:
            raise RuntimeError(f"could not read {v4_url()}")
        except RuntimeError:
            logger.exception("import of %s crashed", "snap-1")
    finally:
        logger.removeHandler(handler)

    output = stream.getvalue()
    for secret in (SIG4, quote(SIG2, safe=""), ACCESS_KEY):
        assert secret not in output
    assert f"fetching https://{OOS}/bucket/images/disk.qcow2.gz?expires=" in output
    assert "failed (403)" in output
    assert "RuntimeError: could not read https://" in output
    assert "import of snap-1 crashed" in output


_SIGNED_URLS = st.builds(
    lambda scheme, host, key, sig, akid, v2: (
        (
            f"{scheme}://{host}/{quote(key)}?AWSAccessKeyId={akid}&Expires=1795800754"
            f"&Signature={quote(sig, safe='')}"
        )
        if v2
        else (
            f"{scheme}://{host}/{quote(key)}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={akid}%2F20261128%2Feu-west-2%2Fs3%2Faws4_request"
            f"&X-Amz-Date={SIGNED_AT}&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={sig}"
        ),
        sig,
        akid,
    ),
    scheme=st.sampled_from(["https", "http", "HTTPS"]),
    host=st.sampled_from([OOS, f"bkt.{OOS}", "localhost:9000", "[::1]:9000"]),
    key=st.text(min_size=1, max_size=40),
    sig=st.text("0123456789abcdefABCDEF+/=", min_size=24, max_size=64),
    akid=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=20),
    v2=st.booleans(),
)


@settings(max_examples=300)
@given(signed=_SIGNED_URLS, before=st.text(max_size=20), after=st.text(max_size=20))
def test_it_never_outputs_the_signature_or_access_key(signed, before, after):
    url, sig, akid = signed
    encoded_sig = quote(sig, safe="")
    # Only the query may hold the secrets; anywhere else they would be the user's own text.
    for secret in (sig, encoded_sig, akid):
        assume(secret not in url.partition("?")[0] and secret not in before + after)

    for redacted in (redact_url(url), redact_text(f"{before} {url} {after}")):
        assert sig not in redacted
        assert encoded_sig not in redacted
        assert akid not in redacted


# --------------------------------------------------------------------------------------------
# Header sniffing


def qcow2_header(virtual_size: int, version: int = 3) -> bytes:
    # magic, version, backing file offset, backing file size, cluster bits, virtual size
    return struct.pack(">4sIQIIQ", b"QFI\xfb", version, 0, 0, 16, virtual_size) + b"\0" * 480


def test_it_reads_the_virtual_size_of_a_qcow2_inside_gzip():
    image = gzip.compress(qcow2_header(10 * GIB) + b"\0" * 200_000)

    info = sniff_image(image[:65536], object_size=len(image))

    assert (info.container, info.format) == ("gzip", "qcow2")
    assert info.virtual_size == info.suggested_size == 10737418240
    assert info.object_size == len(image)
    assert info.explanation == "qcow2 inside gzip, virtual size 10 GiB = 10737418240 bytes"


def test_it_reads_a_plain_qcow2_and_reports_absurd_sizes_as_they_are():
    info = sniff_image(qcow2_header(2**63 + 5), object_size=1_000)

    assert (info.container, info.format) == (None, "qcow2")
    assert info.suggested_size == 2**63 + 5


def test_it_suggests_the_object_size_for_a_raw_image():
    boot_sector = b"\xeb\x63\x90" + b"\0" * 507 + b"\x55\xaa"

    info = sniff_image(boot_sector + b"\0" * 1000, object_size=4 * GIB)

    assert (info.container, info.format) == (None, "raw")
    assert info.suggested_size == info.virtual_size == 4 * GIB
    assert "MBR partition table" in info.explanation
    assert "4 GiB = 4294967296 bytes" in info.explanation


def test_it_cannot_suggest_a_size_for_raw_without_an_object_size():
    info = sniff_image(b"\x01" * 600, object_size=None)

    assert (info.format, info.suggested_size) == ("raw", None)
    assert "object size is unknown" in info.explanation


def test_it_explains_why_gzip_raw_has_no_suggestion():
    info = sniff_image(gzip.compress(b"\x01\x02" * 5000), object_size=123)

    assert (info.container, info.format, info.suggested_size) == ("gzip", "raw", None)
    assert "uncompressed size cannot be known" in info.explanation


@pytest.mark.parametrize(
    ("data", "container", "fmt", "phrase"),
    [
        (b"", None, "unknown", "empty"),
        (qcow2_header(GIB)[:20], None, "qcow2", "header is truncated"),
        (gzip.compress(qcow2_header(GIB))[:10], "gzip", "unknown", "too little data"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff\xff", "gzip", "unknown", "damaged"),
        (b"KDMV" + b"\0" * 100, None, "unknown", "VMDK image"),
        (gzip.compress(b"conectix" + b"\0" * 100), "gzip", "unknown", "VHD image inside gzip"),
        (qcow2_header(0), None, "qcow2", "header looks damaged"),
    ],
)
def test_it_handles_truncated_damaged_and_other_images(data, container, fmt, phrase):
    info = sniff_image(data, object_size=None)

    assert (info.container, info.format, info.suggested_size) == (container, fmt, None)
    assert phrase in info.explanation


def test_it_bounds_the_output_of_a_gzip_bomb():
    bomb = gzip.compress(b"\0" * (256 * 2**20), compresslevel=9)
    assert len(bomb) < 2**20  # ~256 MiB of zeros once inflated

    tracemalloc.start()
    try:
        info = sniff_image(bomb, object_size=len(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (info.container, info.format) == ("gzip", "raw")
    assert peak < 8 * 2**20


@pytest.mark.parametrize(
    ("size", "text"),
    [(10 * GIB, "10 GiB"), (0, "0 GiB"), (3 * GIB // 2, "1.5 GiB"), (512, "less than 0.01 GiB")],
)
def test_it_formats_sizes_in_gib(size, text):
    assert format_gib(size) == text


def test_it_refuses_to_format_a_negative_size():
    with pytest.raises(ValueError):
        format_gib(-1)


# --------------------------------------------------------------------------------------------
# The guarded fetch, against a real HTTP server in a thread

IMAGE = gzip.compress(qcow2_header(20 * GIB) + bytes(range(256)) * 2000)


class _ObjectStore(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, ssl_context=None):
        super().__init__(("127.0.0.1", 0), _ObjectStoreHandler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        pass  # clients hang up on purpose in several tests


class _ObjectStoreHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ObjectStore

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        route = self.path.partition("?")[0].rpartition("/")[2]
        getattr(self, f"_{route}")()

    def _send(self, status, headers, body=b""):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _ranged(self):
        last = int(self.headers["Range"].removeprefix("bytes=0-"))
        body = IMAGE[: last + 1]
        self._send(
            206,
            {"Content-Range": f"bytes 0-{len(body) - 1}/{len(IMAGE)}", "Content-Length": len(body)},
            body,
        )

    def _whole(self):
        self._send(200, {"Content-Length": len(IMAGE)}, IMAGE)

    def _redirect(self):
        self._send(302, {"Location": "/bucket/ranged", "Content-Length": 0})

    def _forbidden(self):
        self._send(403, {"Content-Length": 9}, b"<Error/>\n")

    def _missing(self):
        self._send(404, {"Content-Length": 0})

    def _slow(self):
        time.sleep(1.5)
        self._send(206, {"Content-Length": 1}, b"x")

    def _huge(self):
        # Claims a terabyte and keeps sending: the client must stop at max_bytes.
        self._send(200, {"Content-Length": 10**12})
        try:
            for _ in range(64):
                self.wfile.write(b"\x07" * 65536)
        except OSError:
            pass

    def _short(self):
        # Claims more than it sends, then closes.
        self._send(200, {"Content-Length": 10**6, "Connection": "close"}, b"\x07" * 100)
        self.close_connection = True

    def _drip(self):
        self._send(200, {"Content-Length": 1000})
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


@contextmanager
def object_store(ssl_context=None):
    server = _ObjectStore(ssl_context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store():
    with object_store() as server:
        yield server


def local(store):
    """The policy of a local run: http admitted for this store's exact address and port only."""
    return UrlPolicy(extra_hosts=(f"127.0.0.1:{store.server_port}",), allow_http=True)


def sandbox_url(store, route, host="127.0.0.1", policy=None):
    raw = v4_url(f"http://{host}:{store.server_port}/bucket/{route}")
    return parse_presigned_url(raw, policy=policy or local(store), now=NOW)


@pytest.fixture
def connect_calls(monkeypatch):
    calls = []
    original = socket.socket.connect

    def counting_connect(self, address):
        calls.append(address)
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    return calls


def test_it_reads_the_first_bytes_with_a_ranged_get(store):
    head = read_object_head(sandbox_url(store, "ranged"), policy=local(store), max_bytes=4096)

    assert head.status == 206
    assert head.first_bytes == IMAGE[:4096]
    assert head.total_size == len(IMAGE)
    path, headers = store.requests[0]
    assert headers["Range"] == "bytes=0-4095"
    assert headers["Host"] == f"127.0.0.1:{store.server_port}"
    assert path.endswith(f"X-Amz-Signature={SIG4}")
    assert "first_bytes" not in repr(head)


def test_it_takes_the_total_size_from_content_length_on_a_200(store):
    head = read_object_head(sandbox_url(store, "whole"), policy=local(store), max_bytes=1000)

    assert (head.status, head.total_size, len(head.first_bytes)) == (200, len(IMAGE), 1000)


def test_it_refuses_redirects_without_following_them(store):
    with pytest.raises(InspectionError, match="redirect .HTTP 302.; redirects are not followed"):
        read_object_head(sandbox_url(store, "redirect"), policy=local(store))

    assert len(store.requests) == 1


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("forbidden", "the object store refused the URL: expired or not signed for GET"),
        ("missing", "no such bucket or object .HTTP 404."),
    ],
)
def test_it_explains_http_errors(store, route, message):
    with pytest.raises(InspectionError, match=f"(?i){message}") as caught:
        read_object_head(sandbox_url(store, route), policy=local(store))

    assert SIG4 not in str(caught.value)


def test_it_times_out_on_a_slow_server(store):
    started = time.monotonic()
    with pytest.raises(InspectionError, match="did not answer within 0.3 s"):
        read_object_head(sandbox_url(store, "slow"), policy=local(store), timeout=0.3)

    assert time.monotonic() - started < 1.2


def test_it_gives_up_on_a_server_dripping_bytes(store):
    started = time.monotonic()
    with pytest.raises(InspectionError, match="too slowly"):
        read_object_head(sandbox_url(store, "drip"), policy=local(store), timeout=0.3)

    assert time.monotonic() - started < 1.5


def test_it_caps_the_bytes_read_whatever_content_length_says(store):
    head = read_object_head(sandbox_url(store, "huge"), policy=local(store), max_bytes=65536)
    short = read_object_head(sandbox_url(store, "short"), policy=local(store), max_bytes=65536)

    assert head.first_bytes == b"\x07" * 65536
    assert short.first_bytes == b"\x07" * 100


def test_it_refuses_loopback_addresses_unless_allow_http(store, connect_calls):
    policy = UrlPolicy(extra_hosts=(f"localhost:{store.server_port}",))
    url = parse_presigned_url(
        v4_url(f"https://localhost:{store.server_port}/bucket/ranged"), policy=policy, now=NOW
    )

    with pytest.raises(InspectionError, match="loopback address"):
        read_object_head(url, policy=policy)

    assert connect_calls == []
    assert store.connections == 0


@pytest.mark.parametrize(
    "answers",
    [
        [(socket.AF_INET, "10.0.0.1")],
        [(socket.AF_INET, "169.254.169.254")],
        [(socket.AF_INET, "100.64.0.7")],
        [(socket.AF_INET6, "::ffff:127.0.0.1")],
        [(socket.AF_INET6, "64:ff9b::a9fe:a9fe")],
        [(socket.AF_INET6, "2002:a00:1::1")],
        [(socket.AF_INET6, "fd00::1")],
        [(socket.AF_INET, "93.184.215.14"), (socket.AF_INET, "192.168.1.10")],
    ],
)
def test_it_refuses_non_public_addresses_before_any_connection(answers, connect_calls):
    policy = UrlPolicy(extra_hosts=("objects.example.test",))
    url = parse_presigned_url(v4_url("https://objects.example.test/b/k"), policy=policy, now=NOW)
    lookups = []

    def resolver(host, port, *args):
        lookups.append((host, port))
        return [(family, socket.SOCK_STREAM, 6, "", (ip, port)) for family, ip in answers]

    with pytest.raises(InspectionError, match="Refused to contact objects.example.test") as caught:
        read_object_head(url, policy=policy, resolver=resolver)

    assert lookups == [("objects.example.test", 443)]
    assert connect_calls == []
    assert answers[-1][1] in str(caught.value) or answers[0][1] in str(caught.value)


def test_it_reports_a_dns_failure(connect_calls):
    def resolver(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    url = parse_presigned_url(v4_url(), policy=STRICT, now=NOW)
    with pytest.raises(InspectionError, match=f"Could not resolve {OOS}"):
        read_object_head(url, policy=STRICT, resolver=resolver)

    assert connect_calls == []


def test_it_rechecks_the_host_from_the_secret_url(connect_calls):
    url = parse_presigned_url(v4_url(), policy=STRICT, now=NOW)
    tampered = dataclasses.replace(url, secret_url=v4_url("https://evil.example.com/b/k"))

    with pytest.raises(InspectionError, match="evil.example.com is not an accepted"):
        read_object_head(tampered, policy=STRICT)

    assert connect_calls == []


def test_it_connects_to_the_address_it_checked(store, connect_calls):
    # The name does not exist in DNS: success proves urllib3 dialled the address we resolved.
    policy = UrlPolicy(extra_hosts=(f"objects.example.test:{store.server_port}",), allow_http=True)
    url = sandbox_url(store, "ranged", host="objects.example.test", policy=policy)
    lookups = []

    def resolver(host, port, *args):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    head = read_object_head(url, policy=policy, resolver=resolver, max_bytes=64)

    assert head.first_bytes == IMAGE[:64]
    assert lookups == ["objects.example.test"]
    assert connect_calls == [("127.0.0.1", store.server_port)]
    assert store.requests[0][1]["Host"] == f"objects.example.test:{store.server_port}"


def _tls_contexts(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


@pytest.mark.parametrize(
    ("url_host", "ok"), [("objects.example.test", True), ("other.test", False)]
)
def test_it_verifies_tls_against_the_name_while_dialling_the_ip(tmp_path, url_host, ok):
    cert_pem, key_pem = _tls_contexts("objects.example.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

    with object_store(server_context) as server:
        policy = UrlPolicy(extra_hosts=(f"{url_host}:{server.server_port}",), allow_http=True)
        raw = v4_url(f"https://{url_host}:{server.server_port}/bucket/ranged")
        url = parse_presigned_url(raw, policy=policy, now=NOW)

        def resolver(host, port, *args):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        if ok:
            head = read_object_head(
                url, policy=policy, resolver=resolver, ssl_context=client_context, max_bytes=32
            )
            assert head.first_bytes == IMAGE[:32]
        else:
            with pytest.raises(InspectionError, match="TLS certificate of other.test"):
                read_object_head(url, policy=policy, resolver=resolver, ssl_context=client_context)
            assert server.requests == []


def test_it_inspects_a_url_end_to_end(store):
    inspection = inspect_presigned_url(sandbox_url(store, "ranged"), policy=local(store))

    assert inspection.warning is None
    assert inspection.info is not None
    assert (inspection.info.container, inspection.info.format) == ("gzip", "qcow2")
    assert inspection.info.suggested_size == 20 * GIB
    assert inspection.info.object_size == len(IMAGE)


def test_it_turns_a_failed_inspection_into_a_warning(store):
    inspection = inspect_presigned_url(sandbox_url(store, "forbidden"), policy=local(store))

    assert inspection.info is None
    assert inspection.warning is not None
    assert "expired or not signed for GET" in inspection.warning
    assert "enter the snapshot size yourself" in inspection.warning
    assert SIG4 not in inspection.warning


def test_it_lets_a_public_address_through_to_the_connection(monkeypatch):
    # Guards the guard: a public address reaches connect(), which we refuse locally (no network).
    attempts = []

    def refusing_connect(self, address):
        attempts.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(socket.socket, "connect", refusing_connect)
    policy = UrlPolicy(extra_hosts=("objects.example.test",))
    url = parse_presigned_url(v4_url("https://objects.example.test/b/k"), policy=policy, now=NOW)

    def resolver(host, port, *args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port))]

    with pytest.raises(InspectionError, match="Could not connect to objects.example.test"):
        read_object_head(url, policy=policy, resolver=resolver, timeout=0.2)

    assert attempts == [("93.184.215.14", 443)]
