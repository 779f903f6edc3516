"""The product's readiness wait in a process of its own, as ``sandbox validate`` runs it (the bench's waiter).

``python -m bench.wait_ready_process FLEET_YAML KUBECONFIG TIMEOUT``: connects as the product does
(:func:`sandbox.wiring.connect_cluster`, from the cluster module's kubeconfig output), prints ``connected`` once it has,
then ``ready`` when :func:`sandbox.flux.wait_ready` returns (exit 0), or prints why it did not (exit 1).

A process, like the ``kubectl wait`` it is measured beside: in the bench's own process it would share the
interpreter lock with the bench's reference watch, which reads the same event at the same moment.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Wait until every Flux object of the cluster is Ready; 0 when they are."""
    from sandbox.config import load_config
    from sandbox.drivers.terraform import TerraformOutput
    from sandbox.flux import wait_ready
    from sandbox.wiring import connect_cluster

    config_path, kubeconfig, timeout = Path(argv[0]), Path(argv[1]), float(argv[2])
    try:
        config = load_config(config_path)
        output = TerraformOutput(value=kubeconfig.read_text(encoding="utf-8"), sensitive=True)
        driver = connect_cluster(config, {config.drivers.cluster.kubeconfig_output: output})
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
