"""Free loopback ports for a local cluster's components.

A port is *picked* here and *bound* later by another process, so another process can take it in between; the
caller then picks again (:func:`sandbox.localcluster.control_plane.up` retries a component's start with new ports
when its log says ``address already in use``). Two things keep that window rare:

* ports are picked at random from a range **below the kernel's ephemeral range**
  (``/proc/sys/net/ipv4/ip_local_port_range``). Ports from ``bind(0)`` come from the ephemeral range, which is
  also where every outgoing connection's source port comes from: on a busy machine (the API server alone holds
  dozens of loopback connections to etcd) an ephemeral port picked now is easily a connection's source port a
  second later, and the component's ``bind`` then fails;
* a candidate is checked by binding it on 127.0.0.1 with ``SO_REUSEADDR``, as Go's ``net.Listen`` does (so a
  port with only ``TIME_WAIT`` connections counts as free, as it is for the component).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

from sandbox.localcluster.errors import PortsExhaustedError

#: Every component of a local cluster listens on this address and no other.
LOOPBACK = "127.0.0.1"

#: The lowest port ever picked (well above the privileged and the commonly configured ports).
PICK_LOW = 20000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL = (32768, 60999)


def ephemeral_range(path: Path = _EPHEMERAL_RANGE) -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default when it cannot be read)."""
    try:
        low, high = (int(part) for part in path.read_text().split()[:2])
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def pick_range(ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """The ``[low, high)`` range ports are picked from: below the ephemeral range, else above it.

    A machine whose ephemeral range starts too low for a useful range below it (fewer than 1000 ports) gets
    the ports above the range instead.
    """
    low, high = ephemeral if ephemeral is not None else ephemeral_range()
    if low - PICK_LOW >= 1000:
        return PICK_LOW, low
    if 65536 - (high + 1) >= 1000:
        return high + 1, 65536
    # A kernel configured to use (nearly) every port: nothing is safe from it, take the whole upper part.
    return 1024, 65536


def is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` can be bound for listening right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_ports(
    count: int,
    *,
    exclude: Collection[int] = (),
    rng: random.Random | None = None,
    attempts: int = 2000,
    port_range: tuple[int, int] | None = None,
) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 now (none of ``exclude``).

    Args:
        count: How many ports.
        exclude: Ports never to return (e.g. those that just failed to bind, or the cluster's other ports).
        rng: The random source (tests pass a seeded one).
        attempts: How many candidates to try before giving up.
        port_range: ``[low, high)`` to pick from; :func:`pick_range` by default.

    Raises:
        PortsExhaustedError: Not enough free ports were found (retryable: ports come free again).
    """
    rng = rng or random.SystemRandom()
    low, high = port_range or pick_range()
    chosen: list[int] = []
    skip = set(exclude)
    for _ in range(attempts):
        if len(chosen) == count:
            break
        candidate = rng.randrange(low, high)
        if candidate in skip:
            continue
        skip.add(candidate)
        if is_free(candidate):
            chosen.append(candidate)
    if len(chosen) < count:
        raise PortsExhaustedError(f"found only {len(chosen)} of {count} free loopback ports in [{low}, {high})")
    return chosen


def port_taken(output: str) -> bool:
    """Whether a process's output says it could not bind a port another process holds.

    Go prints ``listen tcp 127.0.0.1:N: bind: address already in use``, Python ``[Errno 98] Address already in
    use``: the errno's text, in either case.
    """
    return "address already in use" in output.lower()
