"""One run per sandbox: who holds a sandbox's lock, and whether that holder is still alive.

The lock itself is a Prefect global concurrency limit (``sandbox:<fleet>:<name>``,
limit 1) taken with a lease by ``tasks.locking``; this module is the Prefect-free part: the
*holder note* the lock's holder leaves so that a refused run can say who holds it,
and the checks that tell a live holder from one that died without releasing it
(SIGKILL, a lost machine), so a rerun after a crash is not locked out until the
lease expires.

A holder is known dead when

* it ran on this machine (same boot and process namespace) and its process is
  gone, a zombie, or a different process reusing its pid; or
* it is the very flow run asking again (Prefect's "Retry" of a crashed run); or
* its flow run is in a final state on the Prefect server (checked by the caller).

A holder on another machine whose flow run still looks Running is respected until
its lease expires (``tasks.locking.LEASE_SECONDS`` after its last renewal).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field

from sandbox.errors import LockHeldError, PermanentError

#: Prefix of the Prefect global concurrency limit that locks a sandbox.
LOCK_PREFIX = "sandbox:"

#: Prefix of the Prefect variable that holds the lock's holder note.
NOTE_PREFIX = "sandbox-lock-"


class LockError(PermanentError):
    """The lock could not be taken or kept (Prefect API unreachable, limit missing, lease lost)."""


class LockLostError(LockError):
    """The lock's lease could not be renewed: another run may hold the sandbox now."""


def lock_name(sandbox: str, fleet: str) -> str:
    """The global concurrency limit of a sandbox (``sandbox:<fleet>:<name>``).

    Args:
        sandbox: The sandbox's (validated) name.
        fleet: The fleet's id (:attr:`sandbox.config.FleetConfig.fleet_id`): a sandbox
            is its name within one fleet, and fleets on one machine share the Prefect server.
    """
    return f"{LOCK_PREFIX}{fleet}:{sandbox}"


def note_name(sandbox: str, fleet: str) -> str:
    """The Prefect variable holding the lock holder's note (``sandbox-lock-<fleet>-<name>``).

    Variable names allow lowercase letters, digits, ``-`` and ``_`` only, which the
    fleet id (hex) and a validated sandbox name are.
    """
    return f"{NOTE_PREFIX}{fleet}-{sandbox}"


class LockNote(BaseModel):
    """Who holds a sandbox's lock: written by the holder right after it took the lock."""

    sandbox: str
    lease_id: str = Field(description="The holder's lease on the concurrency limit")
    flow_run_id: str | None = Field(default=None, description="The holding flow run")
    flow_run_name: str | None = None
    flow_name: str | None = None
    host: str = Field(description="Host name of the holding process")
    machine: str = Field(description="Boot id and process namespace: where the pid below means something")
    pid: int
    process_start: str | None = Field(default=None, description="The process's start time in clock ticks (Linux)")
    acquired_at: datetime

    def describe(self) -> str:
        """One line naming the holder, e.g. ``flow run 'x' (id …) of flow sandbox-lifecycle, pid 12 on h since …``."""
        if self.flow_run_id:
            who = f"flow run {self.flow_run_name!r} ({self.flow_run_id})"
            if self.flow_name:
                who += f" of flow {self.flow_name}"
        else:
            who = "a process outside any flow run"
        return f"{who}, pid {self.pid} on {self.host}, since {self.acquired_at:%Y-%m-%dT%H:%M:%SZ}"


def held_error(sandbox: str, note: LockNote | None, lease_seconds: float) -> LockHeldError:
    """The refusal a run gets when another run holds the sandbox."""
    if note is None:
        return LockHeldError(
            f"sandbox {sandbox!r} is locked by another run that left no holder note; "
            f"its lease expires at most {lease_seconds:g}s after that run stops"
        )
    return LockHeldError(
        f"sandbox {sandbox!r} is locked by {note.describe()}; one run per sandbox: wait for it to finish or cancel it"
    )


@cache
def machine_id() -> str:
    """This machine's boot id and this process's pid namespace (pids compare only within one)."""
    boot = _read("/proc/sys/kernel/random/boot_id") or socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "pid:[?]"
    return f"{boot}/{namespace}"


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (field 22 of ``/proc/<pid>/stat``), or ``None`` where unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def this_process(sandbox: str, lease_id: str, **flow_run: str | None) -> LockNote:
    """The note this process leaves as the lock's holder."""
    pid = os.getpid()
    return LockNote(
        sandbox=sandbox,
        lease_id=lease_id,
        host=socket.gethostname(),
        machine=machine_id(),
        pid=pid,
        process_start=process_start(pid),
        acquired_at=datetime.now(UTC).replace(microsecond=0),
        **flow_run,
    )


def holder_process_gone(note: LockNote) -> bool:
    """Whether the holder ran on this machine and its process no longer exists.

    ``False`` when it may still be alive, including every holder on another machine.
    """
    if note.machine != machine_id():
        return False
    if note.pid == os.getpid():
        return False  # this process: a caller that holds it already, or a thread of ours
    try:
        os.kill(note.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by someone else
    if _process_state(note.pid) == "Z":
        return True  # killed, not yet reaped by its parent
    started = process_start(note.pid)
    return bool(note.process_start and started and started != note.process_start)  # pid reused


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None
