"""Checks the audit trail's hash chain; exits 1 and names the first broken entry if it is not."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from importer.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and say where it breaks (exit status 1 if it does)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=2000, help="Entries read per database round trip."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = verify_chain(batch_size=max(1, options["batch_size"]))
        if report.ok:
            self.stdout.write(
                self.style.SUCCESS(f"Audit chain intact: {report.checked} entries checked.")
            )
            return
        self.stderr.write(f"Audit chain BROKEN at entry #{report.broken_at_id}: {report.reason}")
        # A monitoring job needs the status, not a traceback: SystemExit, not CommandError.
        raise SystemExit(1)
