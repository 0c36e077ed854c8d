"""Change versions kept in the shared cache: "has anything of this owner changed since?" in one
cache read, without a query.

A version is a random token per owner (a team, say), replaced by a new random token after every
commit that changes one of the owner's rows. A page reads the tokens *before* it reads the rows
it shows and keeps them; a poll whose tokens all still match knows that nothing it was shown has
changed since. Why this is safe:

- A change commits, then its token is replaced. A page that read its rows before the commit
  read the token before that too, so the token it holds is gone by the time the change is
  visible: its next poll sees the difference. (Between the commit and the replacement, a poll
  may still answer "unchanged": the next one sees it. Late by one poll, never wrong for good.)
- Tokens are random, never counted up: a token lost (evicted, the cache restarted) and made
  again cannot come back equal to one a page still holds, and two writers replacing the same
  token at once cannot undo each other.
- A missing token is never a match: the caller reads the database, as it would without a cache.
- A replacement that fails (the cache unreachable at that moment) is bounded by TOKEN_SECONDS:
  every token expires, so a stale one lives at most that long.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

# How long a token lives without a change: the bound on a missed replacement (see above). When
# it expires, each page's next poll reads the database once and carries the new token.
TOKEN_SECONDS = 300


def _new_token() -> str:
    return secrets.token_hex(8)


class ChangeVersions:
    """The tokens of one kind of owner (`name` keeps them apart in the cache)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _key(self, owner: int) -> str:
        return f"changes:{self.name}:{owner}"

    def tokens(self, owners: Iterable[int]) -> dict[int, str]:
        """The owners' current tokens, made where missing. Read them before the rows they cover.

        Empty when the cache does not answer: the page then polls the database every time.
        """
        wanted = {self._key(owner): owner for owner in set(owners)}
        if not wanted:
            return {}
        try:
            found = cache.get_many(list(wanted))
            for key in set(wanted) - set(found):
                # add, not set: when two requests make the same missing token, one wins and
                # the other reads it back, so both carry the same.
                token = _new_token()
                found[key] = token if cache.add(key, token, TOKEN_SECONDS) else cache.get(key)
        except Exception:  # the cache is down: no token, never a wrong "unchanged"
            logger.warning("Change versions: the cache did not answer", exc_info=True)
            return {}
        return {wanted[key]: token for key, token in found.items() if isinstance(token, str)}

    def unchanged(
        self, claimed: Mapping[int, str], *, along: str | None = None
    ) -> tuple[bool, Any]:
        """Whether every claimed token is still the owner's current one, in one cache read;
        `along` names one more key read in the same round trip, whose value comes back too."""
        if not claimed:
            return False, None
        keys = {self._key(owner): token for owner, token in claimed.items()}
        try:
            found = cache.get_many([*keys, *([along] if along else [])])
        except Exception:  # the cache is down: read the database instead
            logger.warning("Change versions: the cache did not answer", exc_info=True)
            return False, None
        same = all(found.get(key) == token for key, token in keys.items())
        return same, found.get(along) if along else None

    def changed_on_commit(self, owners: Iterable[int]) -> None:
        """Replaces the owners' tokens once the caller's transaction commits (at once outside
        one); a rollback changes nothing, so replaces nothing."""
        keys = sorted({self._key(owner) for owner in owners if owner is not None})
        if keys:
            transaction.on_commit(lambda: self._replace(keys), robust=True)

    def _replace(self, keys: list[str]) -> None:
        try:
            cache.set_many({key: _new_token() for key in keys}, TOKEN_SECONDS)
        except Exception:  # bounded by TOKEN_SECONDS, see the module's docstring
            logger.warning("Change versions: a token could not be replaced", exc_info=True)


# The import jobs of each team (by team id): what the dashboard's and a job page's poll show.
TEAM_JOBS = ChangeVersions("team-jobs")


def poll_value(owner: int, token: str) -> str:
    """How a page carries one token to its poll: `<owner>.<token>`."""
    return f"{owner}.{token}"


def polled_tokens(values: Iterable[str], *, limit: int = 20) -> dict[int, str]:
    """The `<owner>.<token>` values a poll sent; anything malformed is left out (no match)."""
    claimed: dict[int, str] = {}
    for raw in list(values)[:limit]:
        owner, _, token = raw.partition(".")
        if owner.isdigit() and token and len(token) <= 64:
            claimed[int(owner)] = token
    return claimed
