"""Waiting in integration tests for something a server or another process does: a watch with a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def poll(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
