"""The per-sandbox lock: a strict Prefect global concurrency limit, held for a whole flow run.

``sandbox:<fleet>:<name>`` (limit 1; ``<fleet>`` is the fleet's id,
:attr:`sandbox.config.FleetConfig.fleet_id`, so that two fleets on one machine
with a sandbox of the same name do not block each other) is created the first
time a run locks the sandbox
and taken with a lease that a background thread renews, so it works across
processes, workers and machines that share one Prefect server. A run that finds
the sandbox locked fails at once (:class:`~sandbox.errors.LockHeldError`) naming
the holder from its note (a Prefect variable ``sandbox-lock-<fleet>-<name>``), unless the
holder is known dead (see :mod:`sandbox.locks`): then its lease is released and
the lock taken over, so a rerun after a crash never waits for the lease to expire.

"Strict": a Prefect API that cannot be reached, or a limit that vanished, fails
the run loudly (:class:`~sandbox.locks.LockError`) instead of running unlocked.

The lock is re-entrant within one flow run (``sandbox_lifecycle`` takes it before
registering the sandbox, and ``run_stages`` inside it takes it again for free).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

import httpx
from prefect.client.base import PrefectHttpxSyncClient
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, VariableCreate, VariableUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger
from pydantic import ValidationError

from sandbox.config import load_config
from sandbox.locks import (
    LockError,
    LockLostError,
    LockNote,
    held_error,
    holder_process_gone,
    lock_name,
    note_name,
    this_process,
)

#: Lease on the limit; renewed every ``RENEW_SECONDS``. A holder that dies without
#: releasing (on another machine) blocks the sandbox at most this long.
LEASE_SECONDS = 60.0
RENEW_SECONDS = 15.0

#: How long a refused run waits for a new holder's note to appear. The holder
#: writes it right after taking the slot, but on a busy server that can take many
#: seconds, so the wait is bounded by the lease, not by a guess: a holder that has
#: no note a lease (and a renewal period, for the server to reap it) after taking
#: the slot died before writing it, and its slot is free again.
NOTE_WAIT_SECONDS = LEASE_SECONDS + RENEW_SECONDS
#: Looks for the note start this often and back off to every NOTE_POLL_MAX_SECONDS.
NOTE_POLL_SECONDS = 0.1
NOTE_POLL_MAX_SECONDS = 1.0

_HTTP_LOCKED = 423

#: Answers of a busy server worth asking again: on SQLite, the server answers 503
#: when a write meets ``SQLITE_BUSY`` while it stores other runs' events and logs.
_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Prefect's client waits 2 s, 4 s, ... before asking again (and 2 s even with
#: ``PREFECT_CLIENT_MAX_RETRIES=0``, before giving up); a lock taken at the start
#: and released at the end of every run would add seconds to each. The lock's
#: client sends each request once (:func:`_lock_client`) and its calls retry by
#: themselves after short, doubling delays, within the patience of Prefect's own
#: client (five retries waiting 2+4+8+16+32 s, besides the requests themselves)
#: before failing loudly. A minute was not enough: a SQLite Prefect database that
#: twenty runs start on at once stalls for its whole busy timeout (a minute,
#: "database is locked") and answers 503 meanwhile; a lock call that began just
#: before the stall must outlast it.
_FIRST_RETRY_SECONDS = 0.05
_MAX_RETRY_SECONDS = 2.0
_RETRY_BUDGET_SECONDS = 150.0
#: A request that timed out (the client's own timeout, a minute by default) may have
#: used up the budget by itself, on a server that answers right after its stall; such a
#: request is asked again this many times even past the budget, as Prefect's client
#: retries a read timeout. A server that keeps not answering still fails the run loudly.
_TIMEOUT_RETRIES_PAST_BUDGET = 2

_P = ParamSpec("_P")
_R = TypeVar("_R")

_logger = get_logger("fleet_sandbox.lock")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in _RETRY_STATUSES
    # As Prefect's client does, except a refused connection: no server there fails at once.
    return isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.ConnectError)


def _patiently(call: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``call(*args, **kwargs)``, asked again after short delays while the server is busy.

    Used with :func:`_lock_client`, so the client itself does not also wait.
    """
    delay = _FIRST_RETRY_SECONDS
    deadline = time.monotonic() + _RETRY_BUDGET_SECONDS
    timeouts_past_budget = _TIMEOUT_RETRIES_PAST_BUDGET
    while True:
        try:
            return call(*args, **kwargs)
        except (httpx.HTTPStatusError, httpx.TransportError) as exc:
            if not _retryable(exc):
                raise
            if time.monotonic() + delay > deadline:
                if not isinstance(exc, httpx.TimeoutException) or timeouts_past_budget <= 0:
                    raise
                timeouts_past_budget -= 1
        time.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY_SECONDS)


_CHANGE_METHODS = frozenset({"post", "put", "patch", "delete"})


@contextmanager
def _lock_client() -> Iterator[SyncPrefectClient]:
    """A Prefect client that sends each request once; the lock's calls retry themselves (:func:`_patiently`).

    Prefect's HTTP client has no setting for a short retry delay, so this one
    instance's retry loop is replaced with a single send (adding the CSRF
    token as the loop does). The instance must be the lock's own: inside a
    flow run ``get_client()`` hands back the run's shared client, and every
    other call of the run keeps Prefect's retries. Passing ``httpx_settings``
    (empty: the defaults) is what makes ``get_client`` build a new one.
    Checked against the pinned Prefect by ``tests/unit/test_locks.py``.
    """
    with get_client(httpx_settings={}, sync_client=True) as client:
        http = client._client
        if not isinstance(http, PrefectHttpxSyncClient):  # another client class: keep its own retries
            yield client
            return

        def send_once(
            request: httpx.Request,
            send: Callable[..., httpx.Response],
            send_args: tuple[Any, ...],
            send_kwargs: dict[str, Any],
            retry_codes: Any = frozenset(),
            retry_exceptions: Any = (),
        ) -> httpx.Response:
            if http.enable_csrf_support and request.method.lower() in _CHANGE_METHODS:
                http._add_csrf_headers(request=request)
            return send(request, *send_args, **send_kwargs)

        setattr(http, "_send_with_retry", send_once)  # noqa: B010 (a method replaced on one instance)
        yield client


class SandboxLock:
    """A held sandbox lock: its note, and whether its lease was lost since."""

    def __init__(self, sandbox: str, fleet: str, note: LockNote) -> None:
        self.sandbox = sandbox
        self.fleet = fleet
        self.note = note
        self.lost = threading.Event()
        self.lost_reason = ""

    def check(self) -> None:
        """Raise if the lease could not be renewed (another run may have the sandbox now).

        Raises:
            LockLostError: The lease was lost.
        """
        if self.lost.is_set():
            raise LockLostError(
                f"lost the lock of sandbox {self.sandbox!r} ({self.lost_reason}); stopped before the next stage"
            )


#: The locks held in the current context (a flow run's thread), by lock name.
_held: contextvars.ContextVar[dict[str, SandboxLock]] = contextvars.ContextVar("sandbox_locks_held")


def _flow_run_identity() -> dict[str, str | None]:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {"flow_run_id": None, "flow_run_name": None, "flow_name": None}
    return {
        "flow_run_id": str(context.flow_run.id),
        "flow_run_name": context.flow_run.name,
        "flow_name": context.flow.name if context.flow else None,
    }


def _api_error(sandbox: str, exc: Exception) -> LockError:
    if isinstance(exc, httpx.HTTPStatusError):
        detail = f"HTTP {exc.response.status_code} from {exc.request.url.path}"
    else:
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return LockError(f"cannot lock sandbox {sandbox!r}: the Prefect API refused or did not answer ({detail})")


def read_note(client: SyncPrefectClient, sandbox: str, fleet: str) -> LockNote | None:
    """The holder note of a sandbox's lock, or ``None``."""
    variable = _patiently(client.read_variable_by_name, note_name(sandbox, fleet))
    if variable is None or not isinstance(variable.value, dict):
        return None
    try:
        return LockNote.model_validate(variable.value)
    except ValidationError:
        return None


def _write_note(client: SyncPrefectClient, note: LockNote, fleet: str) -> None:
    name = note_name(note.sandbox, fleet)
    value = note.model_dump(mode="json")
    try:
        _patiently(client.create_variable, VariableCreate(name=name, value=value))
    except ObjectAlreadyExists:
        _patiently(client.update_variable, VariableUpdate(name=name, value=value))


#: Creating a limit is done by one thread of a process at a time (see :func:`_ensure_limit`).
_limit_creation = threading.Lock()


def _ensure_limit(client: SyncPrefectClient, name: str) -> None:
    """Make sure the limit ``name`` exists; an "already exists" from a concurrent creator is success.

    Runs of one process (flow runs in threads: ``sandbox create`` does this, and so
    does a worker) ask one after another: twenty threads that all found the limit
    missing used to create it at once, and on a SQLite Prefect database the
    failed ``INSERT`` s (UNIQUE violations) stalled the server for about a minute
    ("database is locked"). After the first thread created it the others find it
    on their read. Runs in other processes can still race: their "already exists"
    (HTTP 409) is taken as the limit existing, and read back to be sure.
    """
    with _limit_creation:
        try:
            _patiently(client.read_global_concurrency_limit_by_name, name)
            return
        except ObjectNotFound:
            pass
        try:
            _patiently(client.create_global_concurrency_limit, GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:  # created by a run in another process a moment ago
            _patiently(client.read_global_concurrency_limit_by_name, name)


def _try_acquire(client: SyncPrefectClient, sandbox: str, fleet: str, holder: dict[str, str | None]) -> UUID | None:
    """Take the lock's slot with a lease; ``None`` when another lease holds it."""
    flow_run_id = holder.get("flow_run_id")
    name = lock_name(sandbox, fleet)
    try:
        response = _patiently(
            client.increment_concurrency_slots_with_lease,
            names=[name],
            slots=1,
            mode="concurrency",
            lease_duration=LEASE_SECONDS,
            holder=ConcurrencyLeaseHolder(type="flow_run", id=UUID(flow_run_id)) if flow_run_id else None,
        )
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == _HTTP_LOCKED:
            return None
        raise
    granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
    if name not in {limit.name for limit in granted.limits}:
        # Strict: a lease on a limit that does not exist locks nothing.
        _patiently(client.release_concurrency_slots_with_lease, granted.lease_id)
        raise LockError(f"cannot lock sandbox {sandbox!r}: the concurrency limit {name!r} is missing")
    return granted.lease_id


def _stale_reason(client: SyncPrefectClient, note: LockNote, my_flow_run: str | None) -> str | None:
    """Why the holder in ``note`` is known dead, or ``None`` if it may be alive."""
    if note.flow_run_id and note.flow_run_id == my_flow_run:
        return "an earlier attempt of this same flow run"
    if holder_process_gone(note):
        return f"its process {note.pid} on {note.host} is gone"
    if note.flow_run_id:
        try:
            run = _patiently(client.read_flow_run, UUID(note.flow_run_id))
        except ObjectNotFound:
            return "its flow run no longer exists"
        if run.state is not None and run.state.is_final():
            return f"its flow run is {run.state.name}"
    return None


def _acquire(
    client: SyncPrefectClient, sandbox: str, fleet: str, holder: dict[str, str | None], say: Callable[[str], Any]
) -> LockNote:
    _ensure_limit(client, lock_name(sandbox, fleet))
    released: set[str] = set()
    deadline = time.monotonic() + NOTE_WAIT_SECONDS
    pause = NOTE_POLL_SECONDS
    while True:
        lease_id = _try_acquire(client, sandbox, fleet, holder)
        if lease_id is not None:
            mine = this_process(sandbox, str(lease_id), **holder)
            _write_note(client, mine, fleet)
            return mine
        current = read_note(client, sandbox, fleet)
        if current is not None and current.lease_id not in released:
            reason = _stale_reason(client, current, holder.get("flow_run_id"))
            if reason is None:
                raise held_error(sandbox, current, LEASE_SECONDS)
            say(f"taking over the lock of sandbox {sandbox!r} from {current.describe()}: {reason}")
            _patiently(client.release_concurrency_slots_with_lease, UUID(current.lease_id))
            released.add(current.lease_id)
            continue
        # No note, or one whose lease we just released: a new holder took the
        # slot and is about to write its note (or is releasing the slot). Wait
        # for either; asking for the slot again each time.
        if time.monotonic() >= deadline:
            raise held_error(sandbox, None, LEASE_SECONDS)
        time.sleep(pause)
        pause = min(pause * 2, NOTE_POLL_MAX_SECONDS)


def _renew_until(lock: SandboxLock, stop: threading.Event) -> None:
    lease_id = UUID(lock.note.lease_id)
    failures = 0
    with get_client(sync_client=True) as client:
        while not stop.wait(RENEW_SECONDS):
            try:
                client.renew_concurrency_lease(lease_id=lease_id, lease_duration=LEASE_SECONDS)
                failures = 0
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code in (404, 410):
                    lock.lost_reason = "its lease expired or was released by another run"
                    lock.lost.set()
                    return
                failures += 1
            except httpx.HTTPError:
                failures += 1
            if failures * RENEW_SECONDS >= LEASE_SECONDS:
                lock.lost_reason = "the Prefect API did not answer the lease renewals"
                lock.lost.set()
                return


def _release(lock: SandboxLock) -> None:
    try:
        with _lock_client() as client:
            # The note goes first: while the lease is ours nobody else writes one.
            current = read_note(client, lock.sandbox, lock.fleet)
            if current is not None and current.lease_id == lock.note.lease_id:
                with suppress(ObjectNotFound):
                    _patiently(client.delete_variable_by_name, note_name(lock.sandbox, lock.fleet))
            _patiently(client.release_concurrency_slots_with_lease, UUID(lock.note.lease_id))
    except (httpx.HTTPError, OSError) as exc:
        # The lease expires by itself; the next run also takes over from a dead holder.
        _logger.warning(f"could not release the lock of sandbox {lock.sandbox!r}: {exc}")


def fleet_of(config_path: str) -> str:
    """The fleet id of the configuration at ``config_path`` (what scopes its sandboxes' locks)."""
    return load_config(config_path).fleet_id


@contextmanager
def sandbox_lock(sandbox: str, fleet: str, log: Callable[[str], Any] | None = None) -> Iterator[SandboxLock]:
    """Hold sandbox ``sandbox``'s lock for the block; re-entrant within one flow run.

    Args:
        sandbox: A validated sandbox name.
        fleet: The fleet's id (:attr:`sandbox.config.FleetConfig.fleet_id`): the same
            name in another fleet is another sandbox, with its own lock.
        log: Where to say that the lock was taken or taken over (the flow run's logger).

    Yields:
        The lock (the one already held when this flow run holds it).

    Raises:
        LockHeldError: Another live run holds the sandbox (its holder named).
        LockError: The Prefect API could not be reached, or the limit is missing.
    """
    held = _held.get({})
    key = lock_name(sandbox, fleet)
    if key in held:
        yield held[key]
        return
    holder = _flow_run_identity()
    try:
        with _lock_client() as client:
            note = _acquire(client, sandbox, fleet, holder, log or _logger.info)
    except (httpx.HTTPError, OSError, RuntimeError) as exc:
        raise _api_error(sandbox, exc) from None
    lock = SandboxLock(sandbox, fleet, note)
    if log is not None:
        log(f"locked sandbox {sandbox!r} ({key}, lease {note.lease_id})")
    stop = threading.Event()
    renewer = threading.Thread(
        target=contextvars.copy_context().run,
        args=(_renew_until, lock, stop),
        name=f"lock-renewal-{sandbox}",
        daemon=True,
    )
    renewer.start()
    token = _held.set({**held, key: lock})
    try:
        yield lock
    finally:
        _held.reset(token)
        stop.set()
        renewer.join(timeout=5)
        _release(lock)
