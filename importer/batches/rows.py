"""What a manifest's preview says of each row: plain values, shared by the preview (forms) and
the batch's creation (services)."""

from __future__ import annotations

from dataclasses import dataclass, field

from importer.batches.manifest import ManifestRow
from importer.presigned.urls import PresignedUrl

READY, WARNING, REFUSED = "ready", "warning", "refused"


@dataclass(frozen=True)
class RowVerdict:
    """What the preview says of one manifest row, and what its import would send."""

    row: ManifestRow
    verdict: str
    messages: tuple[str, ...] = ()
    url: PresignedUrl | None = field(default=None, repr=False)
    snapshot_size: int | None = None
    # How the size was found when the manifest left it empty (the image's header).
    size_found: str = ""

    @property
    def importable(self) -> bool:
        return self.verdict in (READY, WARNING)


@dataclass(frozen=True)
class Preview:
    rows: tuple[RowVerdict, ...]
    problem: str = ""

    @property
    def importable(self) -> tuple[RowVerdict, ...]:
        return tuple(row for row in self.rows if row.importable)

    def count(self, verdict: str) -> int:
        return sum(1 for row in self.rows if row.verdict == verdict)
