from __future__ import annotations

import random

RETRY_BASE_SECONDS = 2.0


RETRY_MAX_SECONDS = 120.0


# Publishing must not hang a web request when the broker is down: one quick retry, then the
# job stays queued in the database for the sweeper.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}


class TransientSubmitError(Exception):
    """The API had a passing problem; the job is queued again and the task should retry."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"retry in {retry_in:.1f} s")
        self.retry_in = retry_in


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
