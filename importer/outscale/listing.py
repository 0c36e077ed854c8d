"""What every Read* call shares: one description of each action, its pages and their following.

Shared by `client.OscClient` and its `lifecycle.LifecycleCalls` mixin (no import of either).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from importer.outscale.errors import OscApiError
from importer.outscale.resources import Page
from importer.outscale.transport import Transport, invalid_response, request_id_of

# The client's call log: deployments filter on this name, kept from before the split.
logger = logging.getLogger("importer.outscale.client")


MAX_RESULTS_PER_PAGE = 1000


# 100 pages of 1000 is far beyond any account's snapshot count; more means the API is looping.
DEFAULT_MAX_PAGES = 100


Item = TypeVar("Item")
PageOf = TypeVar("PageOf", bound=Page[Any])
Query = ParamSpec("Query")


@dataclass(frozen=True)
class ListingAction(Generic[Item, PageOf]):
    """A Read* action: what it is called, where its answer holds the items, how they are read,
    and which keyword arguments of its page method fill which of its filters.

    The client's page method hands its filter arguments to `read_page`, its iterating method to
    `iterate`; the typed signatures stay the client's (a TypedDict per action).
    """

    action: str
    # The answer's list of items.
    key: str
    parse: Callable[[Mapping[str, Any]], Item]
    # Makes the page from its items, next page token and request id.
    page: Callable[[list[Item], str | None, str], PageOf]
    # (API filter name, argument name): each argument a list of strings, None for no filter.
    filters: tuple[tuple[str, str], ...] = ()
    # Takes `tags`, a {key: value} mapping sent as the Tags filter ("key=value").
    tagged: bool = False

    @property
    def arguments(self) -> frozenset[str]:
        """The keyword arguments that filter the listing."""
        return frozenset(name for _, name in self.filters) | ({"tags"} if self.tagged else set())

    def read_page(
        self,
        transport: Transport,
        arguments: Mapping[str, Any],
        /,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
        next_page_token: str | None = None,
    ) -> PageOf:
        """The page that `arguments`, the page method's filters, select; an empty list in a
        filter matches nothing and sends no request."""
        check_page_size(results_per_page)
        filters = self.filters_of(arguments)
        if filters is None:
            return self.page([], None, "")
        items, token, request_id = read_page(
            transport, self.action, self.key, filters, results_per_page, next_page_token
        )
        return self.page([self.parse(item) for item in items], token, request_id)

    def iterate(
        self,
        read_page: Callable[..., Page[Item]],
        arguments: Mapping[str, Any],
        *,
        max_pages: int,
        results_per_page: int = MAX_RESULTS_PER_PAGE,
    ) -> Iterator[Item]:
        """Every item the page method `read_page` lists with `arguments`, page by page as the
        iteration goes (see _follow_pages)."""
        self._check_names(arguments)

        def read(token: str | None) -> Page[Item]:
            return read_page(**arguments, results_per_page=results_per_page, next_page_token=token)

        return _follow_pages(read, action=self.action, max_pages=max_pages)

    def filters_of(self, arguments: Mapping[str, Any]) -> dict[str, list[str]] | None:
        """The Filters object, or None when an empty list means nothing can match.

        An empty list matches nothing, but the API would ignore the empty filter and list
        everything.
        """
        self._check_names(arguments)
        filters: dict[str, list[str]] = {}
        for key, name in self.filters:
            values = arguments.get(name)
            if values is not None:
                items = _strings(name, values)
                if not items:
                    return None
                filters[key] = items
        tags = arguments.get("tags")
        if tags:
            filters["Tags"] = [f"{key}={value}" for key, value in tags.items()]
        return filters

    def _check_names(self, arguments: Mapping[str, Any]) -> None:
        # What a signature would refuse: the page methods take their filters as **filters.
        unknown = sorted(set(arguments) - self.arguments)
        if unknown:
            raise TypeError(f"{self.action} takes no filter {unknown[0]!r}")


def _every_item_of(iterate: Callable[Query, Iterator[Item]]) -> Callable[Query, list[Item]]:
    """The listing method that returns at once every item `iterate` yields, with its parameters."""

    def read_all(*args: Query.args, **kwargs: Query.kwargs) -> list[Item]:
        return list(iterate(*args, **kwargs))

    return read_all


def check_page_size(results_per_page: int) -> None:
    if not 1 <= results_per_page <= MAX_RESULTS_PER_PAGE:
        raise ValueError(f"results_per_page must be between 1 and {MAX_RESULTS_PER_PAGE}")


def read_page(
    transport: Transport,
    action: str,
    key: str,
    filters: Mapping[str, Any],
    results_per_page: int,
    next_page_token: str | None,
) -> tuple[list[dict[str, Any]], str | None, str]:
    """One page of a Read* call: its items under `key`, the next token, the request id."""
    body: dict[str, Any] = {"ResultsPerPage": results_per_page}
    if filters:
        body["Filters"] = dict(filters)
    if next_page_token:
        body["NextPageToken"] = next_page_token
    data = transport.call(action, body)
    raw = data.get(key)
    if raw is not None and not isinstance(raw, list):
        raise invalid_response(action, f"{key} is not a list", data)
    token = data.get("NextPageToken")
    items = [item for item in raw or [] if isinstance(item, dict)]
    return items, token if isinstance(token, str) and token else None, request_id_of(data)


def _strings(name: str, values: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too, and would be sent one character per item.
    if isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of strings, not a string")
    return list(values)


def _follow_pages(
    read_page: Callable[[str | None], Page[Item]], *, action: str, max_pages: int
) -> Iterator[Item]:
    """Every item of a listing, page by page as the iteration goes.

    Stops when the API hands back a token it already gave (the rest would be repeats);
    raises `OscApiError` rather than silently truncating after `max_pages` pages.
    """
    seen_tokens: set[str] = set()
    token: str | None = None
    for _ in range(max_pages):
        page = read_page(token)
        yield from page.items
        token = page.next_page_token
        if token is None:
            return
        if token in seen_tokens:
            logger.warning(
                "OUTSCALE %s repeated a page token; stopping (request id %s)",
                action,
                page.request_id,
            )
            return
        seen_tokens.add(token)
    raise OscApiError(
        action=action, type="TooManyPages", details=f"more than {max_pages} pages of results"
    )
