"""Port picking for local clusters (sandbox.localcluster.ports)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from sandbox.localcluster import ports
from sandbox.localcluster.errors import PortsExhaustedError


def test_ports_come_from_below_the_ephemeral_range() -> None:
    assert ports.pick_range((32768, 60999)) == (ports.PICK_LOW, 32768)
    # An ephemeral range that starts low leaves the ports above it.
    assert ports.pick_range((10000, 50000)) == (50001, 65536)
    assert ports.pick_range((1024, 65000)) == (1024, 65536)


def test_the_ephemeral_range_is_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("40000\t50000\n")
    assert ports.ephemeral_range(tmp_path / "range") == (40000, 50000)
    assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_picked_ports_are_distinct_free_and_not_excluded() -> None:
    picked = ports.pick_ports(6, exclude={20000, 20001}, rng=random.Random(1))
    assert len(set(picked)) == 6
    assert not {20000, 20001} & set(picked)
    assert all(ports.is_free(port) for port in picked)
    assert all(ports.PICK_LOW <= port < 65536 for port in picked)


def test_a_bound_port_is_never_picked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        assert not ports.is_free(taken)
        with pytest.raises(PortsExhaustedError, match="found only 0 of 1"):
            ports.pick_ports(1, port_range=(taken, taken + 1), attempts=5)


def test_bind_failures_are_recognised_in_go_and_python_wording() -> None:
    assert ports.port_taken("listen tcp 127.0.0.1:2379: bind: address already in use")
    assert ports.port_taken("OSError: [Errno 98] Address already in use")
    assert not ports.port_taken("connection refused")
