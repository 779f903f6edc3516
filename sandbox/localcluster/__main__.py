"""``python -m sandbox.localcluster``: the local cluster's command line (the terraform stack runs it).

::

    python -m sandbox.localcluster prepare   --dir D      # create D with its marker (refuses a foreign dir)
    python -m sandbox.localcluster up        --dir D [--name N] [--nodes K] [--kubernetes-version 1.36] [--timeout S]
    python -m sandbox.localcluster down      --dir D      # stop every marked process, delete D
    python -m sandbox.localcluster status    --dir D      # JSON
    python -m sandbox.localcluster stop      --dir D      # stop the processes, keep D
    python -m sandbox.localcluster find      [--dir D]    # JSON: marked processes (all clusters)
    python -m sandbox.localcluster stop-below --dir D     # stop every cluster's processes under D (make clean)
    python -m sandbox.localcluster supervise --dir D      # the Flux host kubelet (started by `up`)
    python -m sandbox.localcluster git-serve --root R [--port P] [--allow-push]   # git over HTTP until SIGTERM

Exit codes: 0 done, 2 invalid input (a version the toolchain lacks, a node count below 1), 1 any other failure
(a directory that is not a local cluster's, a component that did not start), with one line on stderr.
Nothing secret is printed: the kubeconfig stays in ``D/admin.kubeconfig``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sandbox.errors import InvalidInputError, SandboxError
from sandbox.localcluster import control_plane, processes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox.localcluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("prepare", "down", "status", "stop", "stop-below", "supervise"):
        commands.add_parser(name).add_argument("--dir", required=True, help="the cluster directory")
    up = commands.add_parser("up")
    up.add_argument("--dir", required=True, help="the cluster directory")
    up.add_argument("--name", default="local", help="the cluster name (kubeconfig, CA subject)")
    up.add_argument("--nodes", type=int, default=1, help="how many fake (kwok) nodes")
    up.add_argument("--kubernetes-version", default=None, help="MAJOR.MINOR expected (must be the toolchain's)")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds for the whole start")
    serve = commands.add_parser("git-serve")
    serve.add_argument("--root", required=True, help="directory holding the bare repositories")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    serve.add_argument("--allow-push", action="store_true", help="accept git push over HTTP")
    find = commands.add_parser("find")
    find.add_argument("--dir", default=None, help="only this cluster directory")
    return parser


def _say(line: str) -> None:
    print(line, flush=True)


def _git_serve(root: str, port: int, allow_push: bool) -> int:
    import signal
    import threading

    from sandbox.localcluster.git_http import GitHttpServer

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with GitHttpServer(root, port=port, allow_push=allow_push) as server:
        _say(f"serving {server.root} at http://127.0.0.1:{server.port}/")
        done.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "prepare":
            control_plane.prepare(args.dir)
        elif args.command == "up":
            settings = control_plane.ClusterSettings(
                name=args.name, nodes=args.nodes, python=sys.executable, timeout=args.timeout
            )
            info = control_plane.up(args.dir, settings, kubernetes_version=args.kubernetes_version, progress=_say)
            version = info["kubernetes_git_version"]
            _say(f"local cluster {info['name']} ready at {info['endpoint']} (Kubernetes {version})")
        elif args.command == "down":
            stopped = control_plane.down(args.dir)
            print(f"stopped {len(stopped)} processes; deleted {control_plane.layout(args.dir).root}")
        elif args.command == "stop":
            stopped = processes.stop(control_plane.layout(args.dir).root, order=control_plane.STOP_ORDER)
            print(f"stopped {len(stopped)} processes")
        elif args.command == "stop-below":
            left = processes.below(args.dir, processes.find_local_cluster_processes())
            processes.terminate(left, grace=10.0)
            print(f"stopped {len(left)} processes of local clusters under {args.dir}")
        elif args.command == "status":
            print(json.dumps(control_plane.status(args.dir), indent=2, sort_keys=True))
        elif args.command == "find":
            found = processes.find_local_cluster_processes(control_plane.layout(args.dir).root if args.dir else None)
            print(json.dumps(processes.describe(found), indent=2))
        elif args.command == "git-serve":
            return _git_serve(args.root, args.port, args.allow_push)
        elif args.command == "supervise":
            from sandbox.localcluster.supervisor import supervise

            return supervise(args.dir)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
