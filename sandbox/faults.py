"""Faults the API can be told to inject, so tests can watch a client cope with them."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = frozenset({"error", "timeout", "drop", "slow"})
ERROR_STATUSES = frozenset({429, 500, 503})
DEFAULT_DELAYS = {"timeout": 65.0, "slow": 2.0}


@dataclass
class Fault:
    """One rule. `action` "*" matches every action; `count` None means "until reset";
    `seconds` (from the rule's arrival) makes it a burst that ends by itself, as throttling does.

    - error: answer `status` (429, 503 or 500) without acting.
    - timeout: wait `delay` seconds (past a client's read timeout), then act and answer.
    - drop: act, then close the connection without answering.
    - slow: wait `delay` seconds, then act and answer.
    """

    action: str
    kind: str
    status: int = 503
    count: int | None = 1
    probability: float = 1.0
    delay: float | None = None
    seconds: float | None = None
    fired: int = 0
    # When the rule arrived (monotonic): a burst of `seconds` ends that long after.
    since: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        if self.kind == "error" and self.status not in ERROR_STATUSES:
            raise ValueError(f"status must be one of {sorted(ERROR_STATUSES)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be positive or null")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError("seconds must be positive or null")
        if self.delay is None:
            self.delay = DEFAULT_DELAYS.get(self.kind, 0.0)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        allowed = {"action", "kind", "status", "count", "probability", "delay", "seconds"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)

    @property
    def exhausted(self) -> bool:
        if self.seconds is not None and time.monotonic() - self.since > self.seconds:
            return True
        return self.count is not None and self.fired >= self.count


class FaultInjector:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = rng or random.Random()  # noqa: S311 - fault dice, not security

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, action: str) -> Fault | None:
        """The first live rule matching `action` whose dice roll fires, counted as fired."""
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or fault.action not in (action, "*"):
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                fault.fired += 1
                return fault
            return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def dump(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {name: value for name, value in asdict(fault).items() if name != "since"}
                for fault in self._faults
            ]


def faults_from_json(text: str) -> list[Fault]:
    """Faults from JSON: one object or a list (the `SANDBOX_FAULTS` environment variable)."""
    data = json.loads(text) if text.strip() else []
    items = data if isinstance(data, list) else [data]
    return [Fault.from_dict(item) for item in items]
