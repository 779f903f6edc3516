"""The sandbox lock's holder note: naming the holder, and telling a dead holder from a live one."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

import httpx
import prefect
import pytest

from sandbox.errors import LockHeldError
from sandbox.locks import (
    LockNote,
    held_error,
    holder_process_gone,
    lock_name,
    machine_id,
    note_name,
    process_start,
    this_process,
)

linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times come from /proc")


def note_for(pid: int, **changes: object) -> LockNote:
    note = this_process("sandbox-a", "lease-1", flow_run_id="f-1", flow_run_name="sandbox-a", flow_name="lifecycle")
    return note.model_copy(update={"pid": pid, "process_start": process_start(pid), **changes})


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_names_are_scoped_by_the_fleet() -> None:
    assert (lock_name("sandbox-a", "0123abcd4567"), note_name("sandbox-a", "0123abcd4567")) == (
        "sandbox:0123abcd4567:sandbox-a",
        "sandbox-lock-0123abcd4567-sandbox-a",
    )
    # Prefect's own validation of the names (limit: no '/', '%', '&', '<', '>'; variable: [a-z0-9_-]).
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, VariableCreate

    GlobalConcurrencyLimitCreate(name=lock_name("sandbox-a", "0123abcd4567"), limit=1)
    VariableCreate(name=note_name("sandbox-a", "0123abcd4567"), value={})


def test_the_refusal_names_the_holder_on_one_line() -> None:
    note = LockNote(
        sandbox="sandbox-a",
        lease_id="l",
        flow_run_id="3f2a",
        flow_run_name="sandbox-a",
        flow_name="sandbox-lifecycle",
        host="worker-1",
        machine="m",
        pid=42,
        acquired_at=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
    )
    error = held_error("sandbox-a", note, 60)
    assert isinstance(error, LockHeldError) and not error.retryable
    assert str(error) == (
        "sandbox 'sandbox-a' is locked by flow run 'sandbox-a' (3f2a) of flow sandbox-lifecycle, pid 42 on worker-1, "
        "since 2026-11-28T10:00:00Z; one run per sandbox: wait for it to finish or cancel it"
    )
    assert "lease expires at most 60s" in str(held_error("sandbox-a", None, 60))


@linux_only
def test_a_live_holder_is_respected(child: subprocess.Popen[bytes]) -> None:
    assert not holder_process_gone(note_for(child.pid))


@linux_only
def test_a_killed_holder_is_gone_reaped_or_not(child: subprocess.Popen[bytes]) -> None:
    note = note_for(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, still a zombie
    assert holder_process_gone(note)
    child.wait()  # reaped: no such process
    assert holder_process_gone(note)


@linux_only
def test_a_reused_pid_is_not_the_holder(child: subprocess.Popen[bytes]) -> None:
    assert holder_process_gone(note_for(child.pid, process_start="1"))


def test_a_holder_on_another_machine_is_never_judged_by_pid() -> None:
    assert not holder_process_gone(note_for(999_999_999, machine="another-boot/pid:[1]"))
    assert machine_id() == this_process("s", "l").machine


def test_this_process_is_never_taken_over() -> None:
    assert not holder_process_gone(note_for(os.getpid()))


def test_a_lost_lease_stops_the_run_before_its_next_stage() -> None:
    from sandbox.locks import LockLostError
    from tasks.locking import SandboxLock

    lock = SandboxLock("sandbox-a", "0123abcd4567", this_process("sandbox-a", "lease-1"))
    lock.check()  # held: nothing to say
    lock.lost_reason = "its lease expired or was released by another run"
    lock.lost.set()
    with pytest.raises(LockLostError, match="lost the lock of sandbox 'sandbox-a' \\(its lease expired"):
        lock.check()


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://prefect.test/api/v2/concurrency_limits/increment-with-lease")
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=httpx.Response(status, request=request))


class _Flaky:
    """A client call that fails with ``errors`` first, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, name: str) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"granted {name}"


def test_lock_calls_ask_a_busy_server_again_after_short_delays() -> None:
    from tasks import locking

    busy = _Flaky(_status_error(503), _status_error(503), httpx.ReadTimeout("slow"))
    assert locking._patiently(busy, "sandbox:a") == "granted sandbox:a"
    assert busy.calls == 4


@pytest.mark.parametrize(
    "error",
    [_status_error(423), _status_error(400), httpx.ConnectError("connection refused")],
    ids=["locked", "bad-request", "no-server"],
)
def test_lock_calls_do_not_retry_answers_that_will_not_change(error: Exception) -> None:
    from tasks import locking

    answer = _Flaky(error)
    with pytest.raises(type(error)):
        locking._patiently(answer, "sandbox:a")
    assert answer.calls == 1


def test_a_request_that_timed_out_is_asked_again_past_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stalled SQLite server: the first request times out after the whole budget, the next is answered."""
    from tasks import locking

    clock = _FakeTime()
    monkeypatch.setattr(locking, "time", clock)

    class Stalled:
        calls = 0

        def __call__(self, name: str) -> str:
            Stalled.calls += 1
            if Stalled.calls == 1:
                clock.now += locking._RETRY_BUDGET_SECONDS  # the client's own timeout, a minute
                raise httpx.ReadTimeout("timed out")
            return f"granted {name}"

    assert locking._patiently(Stalled(), "sandbox:a") == "granted sandbox:a"

    class Dead:
        calls = 0

        def __call__(self, name: str) -> str:
            Dead.calls += 1
            clock.now += locking._RETRY_BUDGET_SECONDS
            raise httpx.ReadTimeout("timed out")

    with pytest.raises(httpx.ReadTimeout):
        locking._patiently(Dead(), "sandbox:a")
    assert Dead.calls == 1 + locking._TIMEOUT_RETRIES_PAST_BUDGET  # then it fails loudly


class _BusyOnce(http.server.BaseHTTPRequestHandler):
    """A Prefect API stand-in whose first DELETE meets a busy database (503), as SQLite's can."""

    requests: ClassVar[list[str]] = []

    def do_DELETE(self) -> None:  # noqa: N802 (http.server's naming)
        _BusyOnce.requests.append(f"DELETE {self.path}")
        status = 503 if len(_BusyOnce.requests) == 1 else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        # A client's first use checks the server is there and speaks its API version.
        answers = {"/health": b"true", "/admin/version": json.dumps(prefect.__version__).encode()}
        answer = next((body for path, body in answers.items() if self.path.endswith(path)), None)
        if answer is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        # The client asks for a CSRF token before a change; this server has CSRF protection off.
        body = b'{"detail": "CSRF protection is disabled."}'
        self.send_response(422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def stub_api() -> Iterator[str]:
    """The API URL of a :class:`_BusyOnce` server."""
    _BusyOnce.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BusyOnce)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_the_lock_client_sends_once_and_its_calls_retry_after_short_delays(
    monkeypatch: pytest.MonkeyPatch, stub_api: str
) -> None:
    import prefect.client.base
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks import locking

    class NoSlowRetry:
        """Stands for the ``time`` module of Prefect's HTTP client, which sleeps only before a retry."""

        @staticmethod
        def sleep(seconds: float) -> None:
            pytest.fail(f"Prefect's client slept {seconds}s before retrying a lock call")

    monkeypatch.setattr(prefect.client.base, "time", NoSlowRetry)
    with temporary_settings({PREFECT_API_URL: stub_api}), locking._lock_client() as client:
        locking._patiently(client.delete_variable_by_name, "sandbox-lock-a")
    assert _BusyOnce.requests == ["DELETE /api/variables/name/sandbox-lock-a"] * 2


def test_the_lock_client_is_its_own_and_the_runs_shared_client_keeps_its_retries(stub_api: str) -> None:
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks import locking

    # Inside a flow run a SyncClientContext holds the client every Prefect call shares.
    with temporary_settings({PREFECT_API_URL: stub_api}), SyncClientContext.get_or_create() as shared:
        with locking._lock_client() as client:
            assert client is not shared.client
            assert "_send_with_retry" in vars(client._client)  # the lock's own: one send per request
        assert "_send_with_retry" not in vars(shared.client._client)  # the run's: Prefect's retry loop


class _FakeTime:
    """``time`` for the lock module: sleeping moves its monotonic clock, no wall time passes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


WINNER = "00000000-0000-0000-0000-00000000000a"


class _SlowNoteServer:
    """A lock another run took, whose note that run writes only ``note_after`` seconds later (a loaded server)."""

    def __init__(self, clock: _FakeTime, note_after: float) -> None:
        self.clock = clock
        self.note_ready_at = clock.now + note_after
        self.holder = note_for(os.getpid(), flow_run_id=WINNER, lease_id="00000000-0000-0000-0000-00000000000b")

    def read_global_concurrency_limit_by_name(self, name: str) -> object:
        return object()

    def increment_concurrency_slots_with_lease(self, **kwargs: object) -> object:
        raise _status_error(423)

    def read_variable_by_name(self, name: str) -> object:
        if self.clock.now < self.note_ready_at:
            return None

        class Variable:
            value = self.holder.model_dump(mode="json")

        return Variable()

    def read_flow_run(self, flow_run_id: object) -> object:
        class Run:
            state = None  # running

        return Run()


def test_a_refused_run_waits_for_a_slow_holder_to_write_its_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """The new holder's note arrives late on a busy server: the refusal still names it (no wall-time budget)."""
    from tasks import locking

    clock = _FakeTime()
    monkeypatch.setattr(locking, "time", clock)
    server = _SlowNoteServer(clock, note_after=locking.LEASE_SECONDS / 2)
    with pytest.raises(LockHeldError, match=rf"\({WINNER}\)"):
        locking._acquire(server, "sandbox-a", "f", {"flow_run_id": None}, print)  # type: ignore[arg-type]


def test_a_holder_that_never_writes_its_note_is_waited_for_at_most_its_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded by the lease (a noteless holder has died, its lease lapses), not by a guess."""
    from tasks import locking

    clock = _FakeTime()
    monkeypatch.setattr(locking, "time", clock)
    start = clock.now
    with pytest.raises(LockHeldError):
        locking._acquire(_SlowNoteServer(clock, note_after=1e9), "sandbox-a", "f", {}, print)  # type: ignore[arg-type]
    assert locking.LEASE_SECONDS <= clock.now - start <= locking.NOTE_WAIT_SECONDS + locking.NOTE_POLL_MAX_SECONDS


class _RacyLimits:
    """A Prefect client whose limit is missing until created, counting callers inside it at once.

    Without serialisation the runs' threads all find the limit missing together
    and each creates it (what a SQLite Prefect server answered with a minute's
    stall). Each call lingers a moment so that overlapping calls do overlap.
    """

    def __init__(self) -> None:
        self.created: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.guard = threading.Lock()

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        with self.guard:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0.05)
            yield
        finally:
            with self.guard:
                self.inside -= 1

    def read_global_concurrency_limit_by_name(self, name: str) -> object:
        from prefect.exceptions import ObjectNotFound

        with self._call():
            if name in self.created:
                return object()
        raise ObjectNotFound(http_exc=Exception("missing"))

    def create_global_concurrency_limit(self, limit: object) -> None:
        from prefect.exceptions import ObjectAlreadyExists

        with self._call():
            name = limit.name  # type: ignore[attr-defined]
            self.created.append(name)
            if self.created.count(name) > 1:
                raise ObjectAlreadyExists(http_exc=Exception("UNIQUE constraint failed"))


def test_concurrent_runs_of_one_process_create_the_limit_once() -> None:
    from tasks import locking

    client = _RacyLimits()
    threads = [threading.Thread(target=locking._ensure_limit, args=(client, "sandbox:f:sandbox-a")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.created == ["sandbox:f:sandbox-a"]
    assert client.most_inside == 1


def test_a_limit_another_process_just_created_is_success() -> None:
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    from tasks import locking

    class Client:
        reads = 0

        def read_global_concurrency_limit_by_name(self, name: str) -> object:
            Client.reads += 1
            if Client.reads == 1:
                raise ObjectNotFound(http_exc=Exception("missing"))
            return object()

        def create_global_concurrency_limit(self, limit: object) -> None:
            raise ObjectAlreadyExists(http_exc=Exception("UNIQUE constraint failed"))

    locking._ensure_limit(Client(), "sandbox:f:sandbox-a")  # type: ignore[arg-type]
    assert Client.reads == 2  # read back after the "already exists"
