"""pytest fixtures for the sandbox (OUTSCALE API emulator + object store over real HTTP).

Import them from tests/conftest.py:  `from tests.sandbox_fixtures import sandbox, clean_sandbox`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.run import Sandbox, start_sandbox


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the whole session: both servers on free ports of 127.0.0.1."""
    running = start_sandbox(api_port=0, s3_port=0)
    yield running
    running.stop()


@pytest.fixture
def clean_sandbox(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox with no snapshots, counters or faults, at full import speed."""
    sandbox.reset()
    yield sandbox
    sandbox.reset()
