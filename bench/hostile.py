"""Hostile pre-signed URLs and generated form inputs, with an oracle for what may be accepted."""

from __future__ import annotations

import random
import re
import string
import unicodedata
from datetime import UTC, datetime
from urllib.parse import urlsplit

OOS = "oos.eu-west-2.outscale.com"
# Names the attacker controls, admitted by PORTAL_URL_HOSTS, resolving where the attacker likes.
EXTRA_HOSTS = ("objects.example.net", "rebind.example.org", "mixed.example.org")
FAKE_DNS = {
    "objects.example.net": ["10.20.30.40"],
    "rebind.example.org": ["169.254.169.254"],
    "mixed.example.org": ["171.33.90.10", "127.0.0.1"],
    "localhost": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["169.254.169.254"],
    "instance-data": ["169.254.169.254"],
    "v6.example.org": ["::ffff:169.254.169.254"],
}
PUBLIC_OOS_ADDRESS = "171.33.90.10"


def query(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIAEXAMPLE%2F{stamp[:8]}%2Feu-west-2%2Fs3%2Faws4_request"
        f"&X-Amz-Date={stamp}&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" + "ab" * 32
    )


def good_url() -> str:
    return f"https://{OOS}/exports-bucket/snap.qcow2.gz?{query()}"


PRIVATE_HOSTS = [
    # loopback in every IPv4 spelling
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "0x7f.0.0.1",
    "0x7f.1",
    "0177.0.0.1",
    "0177.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "127.000.000.001",
    "127.0.0.1.",
    "127.255.255.254",
    "0",
    "0.0.0.0",  # noqa: S104 - a hostile host, never bound
    "0x0",
    "00000",
    # private, CGNAT, link-local and metadata
    "10.0.0.1",
    "10.1",
    "012.0.0.1",
    "0xa.0.0.1",
    "167772161",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "192.168.1",
    "3232235777",
    "100.64.0.1",
    "100.100.100.200",
    "169.254.169.254",
    "0xa9.0xfe.0xa9.0xfe",
    "0251.0376.0251.0376",
    "2852039166",
    "0xa9fea9fe",
    "169.254.43518",
    "169.254.169.254.",
    "224.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "192.0.0.170",
    "240.0.0.1",
    # IPv6, mapped, compatible, NAT64, 6to4, Teredo, zone ids
    "[::1]",
    "[::]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[0:0:0:0:0:ffff:a9fe:a9fe]",
    "[::127.0.0.1]",
    "[::169.254.169.254]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b::10.0.0.1]",
    "[2002:a9fe:a9fe::1]",
    "[2002:7f00:1::]",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    "[fe80::1]",
    "[fe80::1%25eth0]",
    "[fc00::1]",
    "[fd00:ec2::254]",
    "[fec0::1]",
    "[ff02::1]",
    "[64:ff9b:1::1]",
    "[::ffff:0:127.0.0.1]",
    # names that resolve to private addresses (fake resolver), look-alikes, IDN
    *EXTRA_HOSTS,
    "localhost",
    "localhost.",
    "LOCALHOST",
    "metadata.google.internal",
    "instance-data",
    "v6.example.org",
    "169.254.169.254.nip.io",
    "127.0.0.1.sslip.io",
    f"{OOS}.evil.example",
    f"{OOS}.",
    f"evil-{OOS}",
    "oos-eu-west-2.outscale.com",
    "oos.eu-west-2.outscale.co",
    "oos.eu-west-2.outscale.com.127.0.0.1.nip.io",
    "\u043eos.eu-west-2.outscale.com",
    "xn--os-gdc.eu-west-2.outscale.com",
    "oos.eu-west-2.outscaIe.com",
    "oos.eu-west-2.0utscale.com",
    "OOS.EU-WEST-2.OUTSCALE.COM.",
    "oos.eu-west-2.outscale.com%2e",
    "oos%2eeu-west-2.outscale.com",
    "oos.eu\u2024west-2.outscale.com",
]


def crafted_urls() -> list[str]:
    """At least 200 hostile URLs; none of them may be accepted or dialled."""
    tail = f"/exports-bucket/snap.qcow2.gz?{query()}"
    urls: list[str] = []
    for host in PRIVATE_HOSTS:
        urls.append(f"https://{host}{tail}")
        urls.append(f"http://{host}:9000{tail}")
    for host in PRIVATE_HOSTS[:40]:
        # user-info tricks: the host a parser sees is not the one a reader sees
        urls.append(f"https://{OOS}@{host}{tail}")
        urls.append(f"https://{host}\\@{OOS}{tail}")
    urls += [
        f"https://user:pass@{OOS}{tail}",
        f"https://{OOS}:443@169.254.169.254{tail}",
        f"https://{OOS}#@127.0.0.1{tail}",
        f"https://{OOS}?@127.0.0.1{tail}",
        f"https://127.0.0.1#{OOS}{tail}",
        f"https://{OOS}:22{tail}",
        f"https://{OOS}:0{tail}",
        f"https://{OOS}:65536{tail}",
        f"https://{OOS}:99999999{tail}",
        f"https://{OOS}:-1{tail}",
        f"http://{OOS}{tail}",
        f"file:///etc/passwd?{query()}",
        f"gopher://127.0.0.1:6379/_INFO?{query()}",
        f"ftp://{OOS}{tail}",
        f"dict://127.0.0.1:11211/{tail}",
        f"ldap://127.0.0.1{tail}",
        f"javascript:alert(1)//{OOS}{tail}",
        f"data:text/plain,{OOS}{tail}",
        f"//{OOS}{tail}",
        f"https:/{OOS}{tail}",
        f"https:\\\\{OOS}{tail}",
        f"https:///{OOS}{tail}",
        # CRLF, NUL, whitespace, header injection
        f"https://{OOS}/b/k%0d%0aHost:%20169.254.169.254?{query()}",
        f"https://{OOS}/b/k\r\nHost: 127.0.0.1?{query()}",
        f"https://{OOS}\r\n.evil.example{tail}",
        f"https://{OOS}/b/k\x00?{query()}",
        f"https://{OOS}\x00.evil.example{tail}",
        f"https://{OOS}/b/k\t?{query()}",
        f"https://{OOS} /b/k?{query()}",
        f"https://{OOS}/b/k?{query()}\r\nX-Injected: 1",
        f"https://{OOS}/b/k%00?{query()}",
        f"https://{OOS}/b/k?{query()}%0d%0aSet-Cookie:x=1",
        f"https://{OOS}\u200b{tail}",
        f"https://{OOS}{tail}\u202e",
        # huge
        f"https://{OOS}/b/{'k' * 5000}?{query()}",
        f"https://{OOS}/b/k?{query()}&x={'a' * 100000}",
        f"https://{'a' * 70}.{OOS}{tail}",
        f"https://{OOS}/{'../' * 1500}etc/passwd?{query()}",
        # missing or broken signature
        f"https://{OOS}/exports-bucket/snap.qcow2.gz",
        f"https://{OOS}/exports-bucket/snap.qcow2.gz?X-Amz-Signature=zz",
        f"https://{OOS}/exports-bucket/snap.qcow2.gz?{query().replace('20', '19', 1)}"
        f"&X-Amz-Expires=1",
    ]
    return urls


# --- Generated inputs and the oracle --------------------------------------------------------

MAX_SNAPSHOT_SIZE = 14901 * 1024**3
FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
NASTY = [
    "\x00",
    "\r",
    "\n",
    "\t",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\u2028",
    "%00",
    "%0d%0a",
    "@",
    "\\",
    "#",
    "?",
    "..",
    "/",
    ":",
    "[",
    "]",
    "%",
    " ",
    "\U0010ffff",
    "\u0660",
    "<script>",
    "'",
    '"',
    "{{",
    "}}",
    "${",
    "127.0.0.1",
    "169.254.169.254",
    "X-Amz-Signature=",
]


def _random_text(rng: random.Random, longest: int) -> str:
    pieces = []
    for _ in range(rng.randint(0, 6)):
        choice = rng.random()
        if choice < 0.4:
            pieces.append("".join(rng.choices(string.ascii_letters + "-_. ", k=rng.randint(1, 12))))
        elif choice < 0.7:
            pieces.append(rng.choice(NASTY))
        elif choice < 0.9:
            pieces.append(chr(rng.randint(0, 0x2FFF)))
        else:
            pieces.append("x" * rng.randint(longest - 5, longest + 5))
    return "".join(pieces)


def _mutated_url(rng: random.Random) -> str:
    url = good_url()
    roll = rng.random()
    if roll < 0.15:
        return url
    if roll < 0.35:
        host = rng.choice([*PRIVATE_HOSTS, OOS, OOS, "oos.eu-west-2.outscale.com"])
        return url.replace(OOS, host, 1)
    if roll < 0.5:
        return _random_text(rng, 4096)
    chars = list(url)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(chars) + 1)
        action = rng.random()
        if action < 0.4:
            chars.insert(position, rng.choice(NASTY))
        elif action < 0.7 and chars:
            del chars[min(position, len(chars) - 1)]
        elif chars:
            chars[min(position, len(chars) - 1)] = chr(rng.randint(0, 0x17F))
    return "".join(chars)


def _random_size(rng: random.Random) -> str:
    return rng.choice(
        [
            str(rng.randint(1, MAX_SNAPSHOT_SIZE)),
            str(rng.randint(-(10**6), 0)),
            str(MAX_SNAPSHOT_SIZE + rng.randint(1, 10**9)),
            str(MAX_SNAPSHOT_SIZE),
            "1",
            "10_737_418_240",
            "10 737 418 240",
            "1e10",
            "0x10",
            "\u0661\u0662\u0663",
            "１２３",
            "12.5",
            "",
            " 42 ",
            "9" * 41,
            _random_text(rng, 40),
        ]
    )


def generated_inputs(count: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    inputs = []
    for _ in range(count):
        name = rng.choice(["backup", "nightly-volume", _random_text(rng, 255), ""])
        inputs.append(
            {
                "name": name,
                "description": rng.choice(["", "weekly", _random_text(rng, 1000)]),
                "presigned_url": _mutated_url(rng),
                "snapshot_size": _random_size(rng),
            }
        )
    return inputs


def why_invalid(data: dict[str, str]) -> str:
    """A reason this input must be refused, or "" when the oracle cannot object (necessary
    conditions only: the portal may refuse more, never less)."""
    name = data["name"].strip()
    if not name or len(name) > 255:
        return "name empty or too long"
    if any(unicodedata.category(char) in FORBIDDEN_CATEGORIES for char in name):
        return "name with a control or invisible character"
    description = data["description"].strip()
    if len(description) > 1000:
        return "description too long"
    if any(
        unicodedata.category(char) in FORBIDDEN_CATEGORIES and char not in "\n\t"
        for char in description
    ):
        return "description with a control character"
    size = data["snapshot_size"].strip().replace(" ", "").replace("_", "")
    if not size.isascii() or not size.isdigit() or not 1 <= int(size) <= MAX_SNAPSHOT_SIZE:
        return "size not a whole number of bytes in range"
    url = data["presigned_url"].strip()
    if len(url) > 4096:
        return "URL too long"
    if any(ord(char) < 33 or ord(char) > 126 for char in url):
        return "URL with a control, space or non-ASCII character"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return "URL with an invalid port"
    if parts.scheme != "https":
        return "URL not https"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "URL with user-info"
    if (parts.hostname or "") not in {OOS, *EXTRA_HOSTS} or port not in (None, 443):
        return "URL host not an allowed object store"
    if "Signature=" not in parts.query:
        return "URL without a signature"
    return ""


# --- Person-chosen destinations: API endpoint, OOS endpoint, webhook URL, pre-signed URL ------

API = "api.eu-west-2.outscale.com"
WEBHOOK = "hooks.example.com"  # stands for any public webhook receiver
DESTINATIONS = ("api", "oos", "webhook", "presigned")
DESTINATION_TITLES = {
    "api": "API endpoint (/team/credentials/)",
    "oos": "OOS endpoint (/team/transfers/)",
    "webhook": "webhook URL (/team/transfers/)",
    "presigned": "pre-signed URL (/imports/inspect, /imports/new)",
}
# Names the attacker controls. The production pass lists some of them in PORTAL_*_HOSTS (a
# deployment that trusted a partner's name), so only the address check stands in the way.
ATTACKER_DNS: dict[str, list[str]] = {
    "loopback.attacker.example": ["127.0.0.1"],
    "loopback2.attacker.example": ["127.0.0.2"],
    "zero.attacker.example": ["0.0.0.0"],  # noqa: S104 - an answer of the fake DNS, never bound
    "v6-loopback.attacker.example": ["::1"],
    "mapped.attacker.example": ["::ffff:127.0.0.1"],
    "compatible.attacker.example": ["::127.0.0.1"],
    "nat64.attacker.example": ["64:ff9b::7f00:1"],
    "sixtofour.attacker.example": ["2002:7f00:1::1"],
    "teredo.attacker.example": ["2001:0:4136:e378:8000:63bf:80ff:fffe"],  # client 127.0.0.1
    "metadata.attacker.example": ["169.254.169.254"],
    "metadata-v6.attacker.example": ["fd00:ec2::254"],
    "mapped-metadata.attacker.example": ["::ffff:169.254.169.254"],
    "private.attacker.example": ["10.1.2.3"],
    "ula.attacker.example": ["fd00::1"],
    "link-local-v6.attacker.example": ["fe80::1"],
    "cgnat.attacker.example": ["100.100.100.200"],
    "mixed.attacker.example": [PUBLIC_OOS_ADDRESS, "127.0.0.1"],
    "mixed-v6.attacker.example": ["2a00:1450:4007:80f::200e", "::1"],
    f"{API}.attacker.example": ["127.0.0.1"],
    f"{OOS}.attacker.example": ["127.0.0.1"],
    f"{WEBHOOK}.attacker.example": ["::1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "169.254.169.254.nip.io": ["169.254.169.254"],
    "localhost.localdomain": ["127.0.0.1"],
    "ip6-localhost": ["::1"],
    # admitted by the production pass's PORTAL_API_HOSTS / PORTAL_WEBHOOK_HOSTS
    "api.partner.example": ["127.0.0.1"],
    "api-private.partner.example": ["10.0.0.7"],
    "hooks.partner.example": ["127.0.0.1", "::1"],
}
# Every other name of these is public (a fake DNS answer: nothing leaves the machine).
PUBLIC_NAMES = (API, OOS, WEBHOOK, f"exports-bucket.{OOS}")
# Rebinding: the allowed name itself answers with an internal address when the request is sent.
REBOUND_ANSWERS: list[list[str]] = [
    ["127.0.0.1"],
    ["::1"],
    ["169.254.169.254"],
    ["10.0.0.1"],
    ["::ffff:127.0.0.1"],
    ["64:ff9b::7f00:1"],
    ["0.0.0.0"],  # noqa: S104 - an answer of the fake DNS, never bound
    [PUBLIC_OOS_ADDRESS, "127.0.0.1"],
]

LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.0.0.2",
    "127.1",
    "127.0.1",
    "0.0.0.0",  # noqa: S104 - a hostile host, never bound
    "0",
    "0x7f.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "2130706433",
    "017700000001",
    "0177.0.0.1",
    "127.000.000.001",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::127.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
    "localhost",
    "LocalHost",
]
INTERNAL_FORMS = [
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "[fd00:ec2::254]",
    "[::ffff:169.254.169.254]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "100.100.100.200",
    "[fe80::1]",
    "[fc00::1]",
]
WELL_KNOWN_PORTS = (6379, 5432, 11211, 80, 8080, 22, 25, 2375)


def destination_suffix(kind: str) -> str:
    """What follows the host in a value of this destination."""
    return {
        "api": "/api/v1",
        "oos": "",
        "webhook": "/hooks/snapshots",
        "presigned": f"/exports-bucket/snap.qcow2.gz?{query()}",
    }[kind]


def official_host(kind: str) -> str:
    return {"api": API, "oos": OOS, "webhook": WEBHOOK, "presigned": OOS}[kind]


def destination_values(kind: str, ports: list[int]) -> list[str]:
    """Hundreds of values for one destination, every one of which the guard must refuse.

    ``ports`` are the loopback listeners' ports (the first is the Redis-like one). Every value
    either points at a non-public address (in any spelling, or through a name the fake DNS maps
    there), or is malformed in a way a looser parser would read as such an address.
    """
    tail = destination_suffix(kind)
    good = official_host(kind)
    redis, *others = ports
    values: list[str] = []
    for host in [*LOOPBACK_FORMS, *INTERNAL_FORMS, *ATTACKER_DNS]:
        values.append(f"https://{host}{tail}")
        for port in ports:
            values += [f"https://{host}:{port}{tail}", f"http://{host}:{port}{tail}"]
    for host in ("127.0.0.1", "[::1]", "localhost", "loopback.attacker.example"):
        for port in WELL_KNOWN_PORTS:
            values += [f"https://{host}:{port}{tail}", f"http://{host}:{port}{tail}"]
    for port in ports[:2]:
        values += _tricks(good, port, tail)
    values += _look_alikes(good, redis, tail)
    values += [
        f"https://{'a' * 64}.{good}{tail}",
        f"https://{'a.' * 130}{good}{tail}",
        f"https://127.0.0.1:{redis}/{'x' * 300}",
        f"https://localhost:{redis}/{'x' * 3000}",
        f"https://{good}/{'x' * 5000}",
        f"https://{good}{tail}{'&a=' if '?' in tail else '?a='}{'a' * 100_000}",
        f"https://127.0.0.1:{redis}{tail}{'/x' * 60_000}",
        "https://" + "1" * 300 + tail,
    ]
    if others:
        values.append(f"https://{good}:{others[0]}@127.0.0.1:{redis}{tail}")
    return list(dict.fromkeys(values))


def _tricks(good: str, port: int, tail: str) -> list[str]:
    """User-info, fragments, encodings, schemes, ports and brackets around a loopback port."""
    loop = f"127.0.0.1:{port}"
    return [
        # user-info: the host a reader sees is not the one dialled
        f"https://{good}@{loop}{tail}",
        f"https://{good}:443@{loop}{tail}",
        f"https://user:pass@{loop}{tail}",
        f"https://user:pass@{good}{tail}",
        f"https://{loop}\\@{good}{tail}",
        f"https://{loop}%40{good}{tail}",
        f"https://{good}%40{loop}{tail}",
        f"https://{good}@@{loop}{tail}",
        f"https://@{loop}{tail}",
        # fragments and queries that change the host or the path a parser sees
        f"https://{loop}#@{good}{tail}",
        f"https://{loop}/#/{good}{tail}",
        f"https://{loop}?@{good}{tail}",
        f"https://{good}#@{loop}{tail}",
        f"https://{good}{tail}#/../../{loop}",
        f"https://{good}{tail}#",
        f"https://{loop};@{good}{tail}",
        # percent-encoding, whitespace and control characters
        f"https://127%2e0%2e0%2e1:{port}{tail}",
        f"https://%31%32%37.0.0.1:{port}{tail}",
        f"https://%6c%6f%63%61%6c%68%6f%73%74:{port}{tail}",
        f" https://{loop}{tail}",
        f"https://{good}\n@{loop}{tail}",
        f"https://{good}\r\n@{loop}{tail}",
        f"https://{good}\t@{loop}{tail}",
        f"https://{good}\x00@{loop}{tail}",
        f"https://{loop}{tail}\r\nHost: {good}",
        f"https://{good} @{loop}{tail}",
        f"https://{loop}\x0b{tail}",
        # schemes (plain http to the allowed host, even on its https port)
        f"http://{good}{tail}",
        f"http://{good}:443{tail}",
        f"HTTP://{loop}{tail}",
        f"hTTps://{loop}{tail}",
        f"http:{loop}{tail}",
        f"https:/{loop}{tail}",
        f"https:///{loop}{tail}",
        f"https:\\\\{loop}{tail}",
        f"//{loop}{tail}",
        f"{loop}{tail}",
        f"localhost:{port}{tail}",
        f"gopher://{loop}/_PING%0d%0a",
        f"dict://{loop}/info",
        f"redis://{loop}/0",
        f"ftp://{loop}{tail}",
        f"ws://{loop}{tail}",
        "file:///etc/passwd",
        f"jar:https://{loop}!/",
        # ports
        f"https://127.0.0.1:0{port}{tail}",
        f"https://127.0.0.1:{port + 65536}{tail}",
        f"https://127.0.0.1:{port}:{port}{tail}",
        f"https://127.0.0.1:+{port}{tail}",
        f"https://127.0.0.1: {port}{tail}",
        f"https://127.0.0.1:-{port}{tail}",
        f"https://{good}:{port}:443{tail}",
        f"https://{loop}/:443{tail}",
        # brackets, zone ids, trailing dots
        f"https://[127.0.0.1]:{port}{tail}",
        f"https://[::1]]:{port}{tail}",
        f"https://[[::1]]:{port}{tail}",
        f"https://[::1%25lo]:{port}{tail}",
        f"https://[fe80::1%25lo]:{port}{tail}",
        f"https://[::1]:{port}]{tail}",
        f"https://localhost.:{port}{tail}",
        f"https://127.0.0.1.:{port}{tail}",
        f"https://{good}.:{port}{tail}",
        f"https://{good}..{tail}",
        f"https://.{good}{tail}",
        f"https://{good}.attacker.example:{port}{tail}",
        f"https://{good}.127.0.0.1.nip.io:{port}{tail}",
    ]


def _look_alikes(good: str, port: int, tail: str) -> list[str]:
    """Non-ASCII spellings: look-alike letters, full-width digits, dots that IDNA maps to '.'."""
    cyrillic_a = good.replace("a", "\u0430", 1)
    cyrillic_o = good.replace("o", "\u043e", 1)
    ideographic_dots = good.replace(".", "\u3002")
    full_width_dot = good.replace(".", "\uff0e", 1)
    dotted_capital_i = good.upper().replace("I", "\u0130")
    # A name without an I in it stays the good name in capitals: not hostile, and admitted.
    capital_i = [f"https://{dotted_capital_i}{tail}"] if "I" in good.upper() else []
    return [
        *capital_i,
        f"https://{cyrillic_a}{tail}",
        f"https://{cyrillic_o}{tail}",
        f"https://{ideographic_dots}{tail}",
        f"https://{full_width_dot}{tail}",
        f"https://{good}\u200b{tail}",
        f"https://\u200b{good}{tail}",
        f"https://{good}{tail}\u202e",
        f"https://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{port}{tail}",
        f"https://127\u30020\u30020\u30021:{port}{tail}",
        f"https://127\uff0e0\uff0e0\uff0e1:{port}{tail}",
        f"https://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3:{port}{tail}",
        f"https://\u217cocalhost:{port}{tail}",
        f"https://loca\u0142host:{port}{tail}",
        f"https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}{tail}",
        f"https://127.0.0.\u00b9:{port}{tail}",
        f"https://127.0.0.\u0661:{port}{tail}",
        f"https://xn--{good}{tail}",
        f"https://xn--80ak6aa92e.com:{port}{tail}",
    ]


def sandbox_variants(kind: str, port: int) -> list[str]:
    """The one listed entry ``127.0.0.1:<port>`` written any other way: each must be refused."""
    tail = destination_suffix(kind)
    hosts = [form for form in LOOPBACK_FORMS if form != "127.0.0.1"]
    hosts += ["loopback.attacker.example", "mapped.attacker.example", "127.0.0.1.nip.io"]
    values = [f"http://{host}:{port}{tail}" for host in hosts]
    values += [
        f"https://127.0.0.1{tail}",
        f"http://127.0.0.1{tail}",
        f"http://user@127.0.0.1:{port}{tail}",
        f"http://{official_host(kind)}@127.0.0.1:{port}{tail}",
        f"http://127.0.0.1:{port}#@{official_host(kind)}{tail}",
        f"http://127.0.0.1:{port}{tail}#",
        f"http://127.0.0.1:0{port}{tail}",
        f"http://127.0.0.1:{port + 65536}{tail}",
        f"http://127.0.0.1.:{port}{tail}",
        f"http://127%2e0%2e0%2e1:{port}{tail}",
        f"http://127\u30020\u30020\u30021:{port}{tail}",
        f"gopher://127.0.0.1:{port}/_GET",
    ]
    return list(dict.fromkeys(values))


# --- The snapshot actions' dialogs: field-specific hostile values and their oracles ----------
# CREATE VOLUME, CREATE OMI, COPY SNAPSHOT, UPDATE SNAPSHOT PERMISSIONS and EDIT TAGS
# (importer/lifecycle/forms.py). Each oracle states necessary conditions only, as why_invalid
# does: the portal may refuse more (a key signed for someone else, nothing to change), never less.

MAX_VOLUME_GIB = 14901
MIN_IOPS, MAX_IOPS, MAX_IOPS_PER_GIB = 100, 13000, 300
VOLUME_TYPES = ("standard", "gp2", "io1")
ARCHITECTURES = ("x86_64", "i386")
BOOT_MODES = ("legacy", "uefi")
ROOT_DEVICE = "/dev/sda1"
MAX_TAGS = 50
# Unicode controls, bidi overrides and isolates, zero-width characters, NUL, separators.
FIELD_CONTROLS = [
    "\x00",
    "\x01",
    "\x07",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\u200b",
    "\u200d",
    "\u200e",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufff9",
    "\U000e0041",
    "\ue000",
    "\U0010ffff",
]
TEN_THOUSAND = "x" * 10_000


def hostile_text(rng: random.Random, longest: int) -> str:
    """A text field's value: plain, random, with a control or bidi character, or far too long."""
    roll = rng.random()
    if roll < 0.3:
        return _random_text(rng, longest)
    if roll < 0.55:
        plain = "".join(rng.choices(string.ascii_letters + string.digits + " -_.", k=12))
        at = rng.randrange(len(plain) + 1)
        return plain[:at] + rng.choice(FIELD_CONTROLS) + plain[at:]
    if roll < 0.65:
        return rng.choice([TEN_THOUSAND, "x" * (longest + 1), "é" * (longest + 1), "x" * longest])
    return rng.choice(
        [
            "",
            " ",
            "backup copy",
            "<script>alert(1)</script>",
            "{{ request }}",
            "' OR 1=1 --",
            "\U0001f642" * 40,
            "Ŝnåpshøt ünïcødé",
            "a" * rng.randint(1, longest),
        ]
    )


def hostile_number(rng: random.Random, low: int, high: int) -> str:
    """A whole-number field's value: in range, at and past its bounds, negative, huge, or no
    whole number at all (decimals, exponents, hex, other scripts' digits, units, controls)."""
    return rng.choice(
        [
            str(rng.randint(low, high)),
            str(rng.randint(low, high)),
            str(low),
            str(high),
            str(low - 1),
            str(high + 1),
            str(-rng.randint(1, 10**9)),
            "0",
            "-0",
            "9" * 20,
            "9" * 400,
            "1" * 10_000,
            "1e3",
            "0x10",
            "12.5",
            f"{low}.0",
            f"+{low}",
            f" {low} ",
            f"{low}_0",
            "\u0661\u0662\u0663",  # Arabic-Indic digits
            "\uff11\uff12\uff13",  # full-width digits
            "NaN",
            "inf",
            "",
            " ",
            "ten",
            f"{low}\x00",
            f"{low} GiB",
            f"\u202e{low}",
            f"{low},{low}",
            _random_text(rng, 40),
        ]
    )


def _account_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.digits, k=12))


def hostile_account_ids(rng: random.Random) -> str:
    """The permissions dialog's free-text list: good IDs among bad ones and odd separators."""
    if rng.random() < 0.05:
        return rng.choice([TEN_THOUSAND, ",".join(_account_id(rng) for _ in range(400))])
    bad = [
        "12345678901",
        "1234567890123",
        "12345678901a",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662",
        "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10\uff11\uff12",
        "123456789012\x00",
        "-12345678901",
        "+12345678901",
        "0x1234567890",
        "1e11",
        "\u200b123456789012",
        "123456789012\u202e",
        "123-456-789-012",
        "amazon",
        "*",
        "all",
    ]
    parts = [_account_id(rng) if rng.random() < 0.6 else rng.choice(bad) for _ in range(5)]
    parts = parts[: rng.randint(0, 5)]
    text = ""
    for part in parts:
        text += part + rng.choice([",", ", ", " ", "\n", "\r\n", "\t", ",,", ";", "\u3001"])
    return text


def _last(value: object) -> str:
    """What Django reads of a posted field: the last of several values."""
    if isinstance(value, list):
        return str(value[-1]) if value else ""
    return "" if value is None else str(value)


def _number(text: str) -> int | None:
    """A whole number as a lenient reader takes it (spaces around, a sign, a trailing .0, digits
    of any script); None when it is not one."""
    try:
        return int(re.sub(r"\.0*$", "", text.strip()))
    except ValueError:
        return None


def plain_digits(text: str) -> bool:
    """The import dialog's rule for a number: ASCII digits only (spaces and _ aside)."""
    raw = text.replace(" ", "").replace("_", "")
    return raw.isascii() and raw.isdigit()


def checked(value: object) -> bool:
    """A posted checkbox as Django's BooleanField reads it."""
    text = _last(value)
    return text.lower() not in ("", "false", "0")


def _forbidden_character(text: str, *, allow: str = "") -> bool:
    return any(
        unicodedata.category(char) in FORBIDDEN_CATEGORIES and char not in allow for char in text
    )


def _why_invalid_volume_fields(data: dict[str, object], size_field: str, min_gib: int) -> str:
    volume_type = _last(data.get("volume_type"))
    if volume_type not in VOLUME_TYPES:
        return "volume type not one of standard, gp2, io1"
    size = _number(_last(data.get(size_field)))
    if size is None or not min_gib <= size <= MAX_VOLUME_GIB:
        return f"size not a whole number of GiB from {min_gib} to {MAX_VOLUME_GIB}"
    iops_text = _last(data.get("iops"))
    if volume_type != "io1":
        return "IOPS given for a volume that is not io1" if iops_text else ""
    iops = _number(iops_text)
    if iops is None or not MIN_IOPS <= iops <= MAX_IOPS:
        return f"io1 without a whole number of IOPS from {MIN_IOPS} to {MAX_IOPS}"
    if iops > size * MAX_IOPS_PER_GIB:
        return f"more than {MAX_IOPS_PER_GIB} IOPS per GiB"
    return ""


def why_invalid_volume(data: dict[str, object], subregions: list[str], min_gib: int) -> str:
    """A reason CREATE VOLUME must refuse `data`, or "" (necessary conditions only)."""
    if _last(data.get("subregion_name")) not in subregions:
        return "Subregion not one of the Region's"
    return _why_invalid_volume_fields(data, "size_gib", min_gib)


def why_invalid_image(data: dict[str, object], min_gib: int) -> str:
    """A reason CREATE OMI must refuse `data`, or "" (necessary conditions only)."""
    name = _last(data.get("image_name")).strip()
    if not 3 <= len(name) <= 128 or not all(
        char.isascii() and (char.isalnum() or char in " _()/.-") for char in name
    ):
        return "OMI name not 3 to 128 letters, digits, spaces and _ ( ) / . -"
    description = _last(data.get("description")).strip()
    if len(description) > 255 or _forbidden_character(description, allow="\n\t"):
        return "description too long or with a control character"
    if _last(data.get("architecture")) not in ARCHITECTURES:
        return "architecture not x86_64 or i386"
    if _last(data.get("boot_mode")) not in BOOT_MODES:
        return "boot mode not legacy or uefi"
    if _last(data.get("root_device_name")).strip() != ROOT_DEVICE:
        return f"root device not {ROOT_DEVICE}"
    return _why_invalid_volume_fields(data, "volume_size_gib", min_gib)


def why_invalid_copy(data: dict[str, object]) -> str:
    """COPY SNAPSHOT takes the import dialog's Name and Description: its oracle, as is."""
    return why_invalid(
        {
            "name": _last(data.get("name")),
            "description": _last(data.get("description")),
            "presigned_url": good_url(),
            "snapshot_size": "1",
        }
    )


def why_invalid_permissions(
    data: dict[str, object], current_ids: list[str], current_public: bool
) -> str:
    """A reason UPDATE SNAPSHOT PERMISSIONS must refuse `data`, or ""."""
    text = _last(data.get("add_account_ids")).strip()
    if len(text) > 4000:
        return "account list longer than 4000 characters"
    for part in text.replace(",", " ").split():
        if not (len(part) == 12 and part.isascii() and part.isdigit()):
            return f"{part[:20]!r} is not 12 ASCII digits"
    removed = data.get("remove_account_ids") or []
    for account_id in removed if isinstance(removed, list) else [removed]:
        if str(account_id) not in current_ids:
            return "removes an account that has no permission"
    if (
        checked(data.get("public"))
        and not current_public
        and not checked(data.get("confirm_public"))
    ):
        return "made public without the confirmation"
    return ""


def why_invalid_tags(data: dict[str, object], prefix: str = "tags") -> str:
    """A reason EDIT TAGS must refuse `data`, or "": management data, each row, duplicates."""
    total_text = _last(data.get(f"{prefix}-TOTAL_FORMS")).strip()
    initial_text = _last(data.get(f"{prefix}-INITIAL_FORMS")).strip()
    total, initial = _number(total_text), _number(initial_text)
    if total is None or initial is None:
        return "management form data missing or not whole numbers"
    if total > MAX_TAGS:
        return f"more than {MAX_TAGS} rows"
    keys: set[str] = set()
    for index in range(total):
        key = _last(data.get(f"{prefix}-{index}-key")).strip()
        value = _last(data.get(f"{prefix}-{index}-value"))
        if len(key) > 255 or len(value) > 255:
            return "a key or value longer than 255 characters"
        if _forbidden_character(key) or _forbidden_character(value):
            return "a key or value with a control or invisible character"
        if value and not key:
            return "a value without a key"
        if key and key in keys:
            return "the same key twice"
        if key:
            keys.add(key)
    return ""
