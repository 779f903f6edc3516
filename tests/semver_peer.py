"""A long-running ``semver-peer`` (toolchain/semver-peer): Flux's tag selection in Go, one JSON line each way.

One process answers every example of a test module: a request is one line on its stdin,
the answer one line on its stdout (the peer flushes after each), so an example costs a pipe
round trip instead of a process start. See docs/peers.md.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from typing import Any, Final

#: What :meth:`SemverPeer.pick` and :meth:`SemverPeer.check` return when the peer reports an error.
ERROR: Final = "<error>"
STOP_TIMEOUT_S: Final = 10


class PeerError(RuntimeError):
    """The peer stopped answering (it exited, or wrote something that is not an answer)."""


class SemverPeer:
    """The peer process; use as a context manager (it is stopped on exit)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._process = self._start()

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(  # noqa: S603 - a binary of our own toolchain, argv list
            [self.binary],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def __enter__(self) -> SemverPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def version(self) -> str:
        """``semver-peer -version``: the peer's, the semver library's and Go's versions."""
        done = subprocess.run(  # noqa: S603
            [self.binary, "-version"], capture_output=True, text=True, timeout=STOP_TIMEOUT_S, check=True
        )
        return done.stdout.strip()

    def ask(self, request: dict[str, Any]) -> Any:
        """Send one request, return the peer's decoded answer."""
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except BrokenPipeError as exc:
            raise PeerError(f"semver-peer exited: {self._stderr()}") from exc
        except BaseException:
            # Interrupted between question and answer (a timeout, Ctrl-C): an unread answer would
            # be taken for the next question's, so this process is replaced by a fresh one.
            self.close()
            self._process = self._start()
            raise
        if not line:
            raise PeerError(f"semver-peer exited: {self._stderr()}")
        return json.loads(line)

    def pick(self, range_: str, tags: list[str]) -> str | None:
        """The tag Flux picks for ``range_`` among ``tags``; None for no match, :data:`ERROR` for an invalid range."""
        answer = self.ask({"range": range_, "tags": tags})
        if isinstance(answer, dict):
            if "error" not in answer:
                raise PeerError(f"unexpected answer {answer!r}")
            return ERROR
        if answer is not None and not isinstance(answer, str):
            raise PeerError(f"unexpected answer {answer!r}")
        return answer

    def check(self, range_: str, version: str) -> bool | str:
        """Masterminds ``Check`` of ``version`` (``NewVersion`` syntax); :data:`ERROR` for a bad range or version."""
        answer = self.ask({"range": range_, "version": version})
        if isinstance(answer, dict) and "error" in answer:
            return ERROR
        if not isinstance(answer, bool):
            raise PeerError(f"unexpected answer {answer!r}")
        return answer

    def _stderr(self) -> str:
        self._process.wait(timeout=STOP_TIMEOUT_S)
        assert self._process.stderr is not None
        return f"exit {self._process.returncode}: {self._process.stderr.read().strip()[-400:]}"

    def close(self) -> None:
        """End of input: the peer exits; killed if it does not within a few seconds."""
        process = self._process
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
