"""The product's readiness wait in a process of its own, as ``sandbox validate`` runs it (the bench's waiter).

``python -m bench.wait_ready_process KUBECONFIG TIMEOUT``: connects with the product's
:class:`~sandbox.drivers.kubernetes_cluster.KubernetesClusterDriver`, prints ``connected`` once it has,
then ``ready`` when :func:`sandbox.flux.wait_ready` returns (exit 0), or prints why it did not (exit 1).

A process, like the ``kubectl wait`` it is measured beside: in the bench's own process it would share the
interpreter lock with the bench's reference watch, which reads the same event at the same moment.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Wait until every Flux object of the cluster is Ready; 0 when they are."""
    from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver
    from sandbox.flux import wait_ready

    kubeconfig, timeout = Path(argv[0]), float(argv[1])
    try:
        with KubernetesClusterDriver.from_kubeconfig_text(kubeconfig.read_text(encoding="utf-8")) as driver:
            driver.server_version()
            print("connected", flush=True)
            wait_ready(driver, timeout)
            print("ready", flush=True)  # as kubectl wait prints "condition met": the moment the wait returned
    except Exception as exc:  # noqa: BLE001 - one line for the bench's error
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
