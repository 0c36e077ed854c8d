"""Runs pytest and turns "no tests collected" (exit 5) into a failure with a clear message.

The suite runs on the local defaults (the sandbox's keys, a derived encryption key): DEBUG=1 unless
the caller says otherwise, set before pytest loads the settings so that every worker process a test
starts inherits it.
"""

from __future__ import annotations

import os
import sys

import pytest

NO_TESTS_COLLECTED = 5


def main() -> int:
    os.environ.setdefault("DEBUG", "1")
    code = int(pytest.main(sys.argv[1:]))
    if code == NO_TESTS_COLLECTED:
        print("pytest collected no tests: that is a failure here, not a pass.", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
