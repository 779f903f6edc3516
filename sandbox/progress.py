"""How the core reports progress: one line at a time to whoever asked (the CLI prints it, a task logs it)."""

from __future__ import annotations

from collections.abc import Callable

#: Receives one-line progress messages.
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A :data:`Progress` that says nothing (the default where nobody listens)."""
    return None
