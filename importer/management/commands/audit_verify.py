"""Checks the audit trail's hash chain; exits 1 and names the first broken entry if it is not.

`--head` prints where the chain ends (entry count and last hash) as one JSON line, to keep
somewhere the database's users cannot write. Checked later against it (`--against FILE`, or
`--expect-count N --expect-hash H`), the log must still hold that head: dropping the newest
entries, which the chain alone cannot reveal, then fails the check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from importer.audit.chain import ChainHead, ChainReport, verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain and say where it breaks (exit status 1 if it does); "
        "--head prints the head to record, --against/--expect-* check against a recorded one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=2000, help="Entries read per database round trip."
        )
        parser.add_argument(
            "--head",
            action="store_true",
            help="Print the head of the verified chain as JSON (and nothing else) to record it.",
        )
        parser.add_argument(
            "--against", type=Path, metavar="FILE", help="A head printed earlier by --head."
        )
        parser.add_argument(
            "--expect-count", type=int, metavar="N", help="Entry count of a recorded head."
        )
        parser.add_argument(
            "--expect-hash", metavar="HASH", help="Last hash of a recorded head (with the count)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        expected = _expected_head(options)
        report = verify_chain(batch_size=max(1, options["batch_size"]), expected_head=expected)
        if not report.ok:
            where = f" at entry #{report.broken_at_id}" if report.broken_at_id is not None else ""
            self.stderr.write(f"Audit chain BROKEN{where}: {report.reason}")
            # A monitoring job needs the status, not a traceback: SystemExit, not CommandError.
            raise SystemExit(1)
        if options["head"]:
            self.stdout.write(report.head.to_json())
            return
        self.stdout.write(self.style.SUCCESS(_summary(report, expected)))
        if report.checked and report.unsigned == report.checked:
            self.stderr.write(
                "Warning: no entry is signed with the audit key yet; entries from before it "
                "are protected only by the signed ones that follow them."
            )


def _summary(report: ChainReport, expected: ChainHead | None) -> str:
    summary = f"Audit chain intact: {report.checked} entries checked."
    if report.unsigned:
        summary += f" {report.unsigned} of them predate the audit key (plain SHA-256)."
    if expected is not None:
        summary += f" The recorded head (entry {expected.count}) is still in the log."
    return summary


def _expected_head(options: dict[str, Any]) -> ChainHead | None:
    count, last_hash, path = options["expect_count"], options["expect_hash"], options["against"]
    if path is not None and (count is not None or last_hash is not None):
        raise CommandError("Give either --against FILE or --expect-count with --expect-hash.")
    if (count is None) != (last_hash is None):
        raise CommandError(
            "--expect-count and --expect-hash go together: give both, as printed by --head."
        )
    try:
        if path is not None:
            return ChainHead.from_json(_read(path))
        if count is not None:
            return ChainHead(count=count, last_hash=str(last_hash).strip().lower())
    except ValueError as error:
        raise CommandError(f"The recorded head is unusable: {error}.") from None
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"Cannot read the recorded head {path}: {error.strerror}.") from None
