"""modeldeploy-prestop SECONDS: the model container's preStop hook.

The kubelet runs it in the container when the pod is deleted, before SIGTERM. It tells the
server (the container's PID 1) to start draining now, then pauses so that the endpoint's removal
reaches every node's proxy before the server stops listening. Draining makes every answer close
its keep-alive connection: a client whose connection conntrack still pins to this pod reconnects,
and the new connection follows the Service's current endpoints. Without it, a rolled-back canary
kept answering its kept-alive clients for the whole pause (seen in the e2e tier: 5 s of 500s
after the rollback, although kube-proxy had dropped the pod 0.2 s after the breach).

Only a PID 1 that is the model server is signalled: SIGUSR1's default action is to terminate, and
a custom image may start the server under a shell.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

SERVER_COMMAND = "modeldeploy-server"
DRAIN_SIGNAL = signal.SIGUSR1


def is_server(pid: int, proc: Path = Path("/proc")) -> bool:
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(Path(os.fsdecode(arg)).name == SERVER_COMMAND for arg in argv[:2])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2) or not all(a.isdigit() for a in args):
        print("usage: modeldeploy-prestop SECONDS [PID]", file=sys.stderr)
        return 2
    seconds, pid = int(args[0]), int(args[1]) if len(args) == 2 else 1
    if is_server(pid):
        os.kill(pid, DRAIN_SIGNAL)
    else:
        print(f"pid {pid} is not {SERVER_COMMAND}: pausing without draining", file=sys.stderr)
    time.sleep(seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
