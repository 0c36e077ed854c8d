from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from importer.outscale.client import MAX_RESULTS_PER_PAGE, OscClient
from importer.outscale.resources import Page, Snapshot, SnapshotExportTask

logger = logging.getLogger(__name__)


Item = TypeVar("Item")


# Reads the page a token names (None: the first page).
PageReader = Callable[[str | None], Page[Item]]


# A listing filtered by ids needs one page per 1000 of them. A few spare pages allow an API
# that pages shorter; more means it is looping.
SPARE_PAGES = 10


def pages_for(ids: Sequence[str]) -> int:
    """The most pages a listing filtered by `ids` may need."""
    return math.ceil(len(ids) / MAX_RESULTS_PER_PAGE) + SPARE_PAGES


@dataclass
class Listing(Generic[Item]):
    """What a listing read so far; filled page by page, so a failure midway still counts."""

    items: list[Item] = field(default_factory=list)
    pages: int = 0
    complete: bool = False
    # Why it stopped before the end, in words for a log or a banner; empty when complete.
    stopped: str = ""

    @property
    def truncated(self) -> bool:
        return bool(self.stopped)


def read_bounded(
    read_page: PageReader[Item],
    listing: Listing[Item],
    *,
    action: str,
    max_pages: int,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Listing[Item]:
    """Reads pages into `listing` until the last one, `max_pages` pages, or `budget_seconds`
    (checked before each next page; one call is bounded by the client's read timeout).

    Raises what `read_page` raises (`OscApiError`); `listing` then holds the pages read before.
    """
    started = clock()
    token: str | None = None
    seen_tokens: set[str] = set()
    while True:
        if listing.pages >= max_pages:
            listing.stopped = f"the listing has more than {max_pages} pages"
            break
        if listing.pages and clock() - started > budget_seconds:
            listing.stopped = f"the API was still paging after {budget_seconds:g} seconds"
            break
        page = read_page(token)
        token = page.next_page_token
        listing.pages += 1
        listing.items.extend(page.items)
        if token is None:
            listing.complete = True
            return listing
        if token in seen_tokens:
            # The rest would be repeats, or the API is looping: either way not the whole list.
            listing.stopped = f"the API repeated a page token (request id {page.request_id or '-'})"
            break
        seen_tokens.add(token)
    logger.warning(
        "%s listing truncated after %d pages: %s", action, listing.pages, listing.stopped
    )
    return listing


def read_snapshots_bounded(
    client: OscClient,
    listing: Listing[Snapshot],
    *,
    max_pages: int,
    budget_seconds: float,
    snapshot_ids: Sequence[str] | None = None,
) -> Listing[Snapshot]:
    return read_bounded(
        lambda token: client.read_snapshots_page(snapshot_ids=snapshot_ids, next_page_token=token),
        listing,
        action="ReadSnapshots",
        max_pages=max_pages,
        budget_seconds=budget_seconds,
    )


def read_export_tasks_bounded(
    client: OscClient,
    listing: Listing[SnapshotExportTask],
    *,
    task_ids: Sequence[str],
    budget_seconds: float,
) -> Listing[SnapshotExportTask]:
    return read_bounded(
        lambda token: client.read_snapshot_export_tasks_page(
            task_ids=task_ids, next_page_token=token
        ),
        listing,
        action="ReadSnapshotExportTasks",
        max_pages=pages_for(task_ids),
        budget_seconds=budget_seconds,
    )
