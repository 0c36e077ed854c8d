"""A POST over Django's limits on what it reads answered with a page that says which limit it
passed and what to do, instead of the bare 400 Django gives when CsrfViewMiddleware first
reads the body and trips on it.

The body is read here, just before the CSRF check would read it: a POST it cannot read gets
this page and never reaches the CSRF check or the view, so it can never act.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.utils.html import format_html

logger = logging.getLogger(__name__)

# What the portal's forms hold at most, said on the page so the person knows how to cut a bulk
# import up. The bulk import's own limits (importer.batches.manifest: MAX_BYTES, MAX_ROWS);
# tests/core/test_oversize_posts.py holds the two equal, as core may not import batches.
MANIFEST_ADVICE = (
    "To import many snapshots, split the manifest into files of at most 2 MiB and 500 rows "
    "each and import them one after the other, uploading each file rather than pasting it."
)
NOTHING_DONE = "Nothing was saved or started."
# What htmx swaps into a dialog (templates/base.html's responseHandling): 2xx, 3xx and 422.
# A refusal sent over htmx takes 422 so that it appears in the dialog that sent the form; the
# refusal's own status is in the X-Portal-Refused-Status header.
HTMX_SWAPPED_STATUS = 422


@dataclass(frozen=True)
class Refusal:
    status: int
    title: str
    what: str
    advice: str


def _megabytes(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB ({size:,} bytes)"


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def refusal_for(request: HttpRequest, error: Exception) -> Refusal:
    """What to tell the person whose POST raised `error` while it was read."""
    if isinstance(error, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
        sent = _content_length(request)
        was = f"; this one sent {_megabytes(sent)}" if sent else ""
        return Refusal(
            413,
            "Too much to send in one form",
            f"A form of the portal takes at most {_megabytes(limit)} of text{was}. {NOTHING_DONE}",
            f"Shorten what you entered, or upload it as a file where the form takes one. "
            f"{MANIFEST_ADVICE}",
        )
    if isinstance(error, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS or 0
        return Refusal(
            400,
            "Too many fields in one form",
            f"A form of the portal takes at most {limit:,} fields. {NOTHING_DONE}",
            f"Reload the page and send the form from it: no form of the portal has that many "
            f"fields. {MANIFEST_ADVICE}",
        )
    if isinstance(error, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES or 0
        return Refusal(
            400,
            "Too many files in one form",
            f"A form of the portal takes at most {limit:,} files. {NOTHING_DONE}",
            f"Send one file at a time. {MANIFEST_ADVICE}",
        )
    return Refusal(
        400,
        "The form could not be read",
        f"What the browser sent arrived malformed or cut short. {NOTHING_DONE}",
        "Reload the page and send the form again.",
    )


def refused_response(request: HttpRequest, refusal: Refusal) -> HttpResponse:
    """The refusal as a page in the portal's layout, or, over htmx, as a message at the top of
    what the form targets (the dialog keeps the form, so the person can shorten it)."""
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(
            format_html(
                '<div class="form-error post-refused" role="alert"><p><strong>{}</strong>: '
                "{}</p><p>{}</p></div>",
                refusal.title,
                refusal.what,
                refusal.advice,
            ),
            status=HTMX_SWAPPED_STATUS,
        )
        response["HX-Reswap"] = "afterbegin"
    else:
        context = {"refusal": refusal}
        response = render(request, "413.html", context, status=refusal.status)
    response["X-Portal-Refused-Status"] = str(refusal.status)
    return response


# What reading a POST raises when the body passes a limit or cannot be parsed.
UNREADABLE_POST = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent, MultiPartParserError)


class UnreadablePostMiddleware:
    """Goes before CsrfViewMiddleware: reads a POST's fields and files first, and answers a
    POST over the limits with `refused_response` instead of letting the view run."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if request.method != "POST":
            return None
        try:
            # Parsed once and kept on the request: the CSRF check and the view read these.
            request.POST  # noqa: B018
            request.FILES  # noqa: B018
        except UNREADABLE_POST as error:
            refusal = refusal_for(request, error)
            # The path only: a query string could hold what a person pasted.
            logger.warning(
                "POST to %s refused before its view (%s): %s",
                request.path,
                type(error).__name__,
                refusal.title,
            )
            return refused_response(request, refusal)
        return None
