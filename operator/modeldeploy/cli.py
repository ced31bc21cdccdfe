"""`kubectl modeldeploy`: inspect and steer ModelDeployments from the command line.

    kubectl modeldeploy status NAME [--wait[=TIMEOUT]]   the status view; --wait gates CI
    kubectl modeldeploy list [-A] [-l SELECTOR]          one line per ModelDeployment
    kubectl modeldeploy get NAME                         revision -> Deployment -> pods tree
    kubectl modeldeploy history NAME                     finished rollouts
    kubectl modeldeploy rollback NAME --to N | promote | abort | pause | resume | retry NAME
    kubectl modeldeploy watch NAME                       live status until Ctrl-C or --timeout

Actions only set annotations on the ModelDeployment (never its spec); the operator acts on them.
Rendering lives in cli_render and cli_views, decisions in cli_actions, API calls in cli_kube.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from modeldeploy import cli_actions, cli_render, cli_views
from modeldeploy.cli_actions import CliError
from modeldeploy.cli_kube import Kube, connect
from modeldeploy.units import parse_duration

CLEAR_SCREEN = "\x1b[H\x1b[2J"
ACTIONS = ("rollback", "promote", "abort", "pause", "resume", "retry")


@dataclass
class Session:
    kube: Kube
    namespace: str
    output: str | None  # None: human text; "json" or "yaml": machine-readable
    out: TextIO
    color: bool
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    width: int | None = None  # a terminal's columns: human lines are cut to it

    def emit(self, doc: Any, compact: bool = False) -> None:
        if self.output == "yaml":
            self.out.write(("---\n" if compact else "") + yaml.safe_dump(doc, sort_keys=False))
        else:
            self.out.write(json.dumps(doc, indent=None if compact else 2) + "\n")
        self.out.flush()

    def say(self, lines: list[str]) -> None:
        self.out.write("\n".join(cli_views.clip_all(lines, self.width)) + "\n")
        self.out.flush()


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # The flags work before and after the command; a subcommand must not reset them to defaults.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("-n", "--namespace", default=default(None), help="namespace of NAME")
    parser.add_argument("--kubeconfig", default=default(None), help="kubeconfig file")
    parser.add_argument("--context", default=default(None), help="kubeconfig context")
    parser.add_argument(
        "-o", "--output", choices=("json", "yaml"), default=default(None), help="for scripts"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl modeldeploy",
        description="Inspect and steer ModelDeployments. Actions set annotations, never spec.",
    )
    _common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "status": "phase, traffic split, revisions, last breach and conditions",
        "list": "ModelDeployments in a namespace (or all, -A), one line each",
        "get": "tree: revision -> Deployment -> pods with verdict, readiness and restarts",
        "history": "finished rollouts, the stable revision marked",
        "rollback": "roll back to an earlier promoted revision",
        "promote": "skip the remaining canary steps, or end a bake now (a manual promotion)",
        "abort": "roll the revision in flight back now and quarantine its spec",
        "pause": "hold the rollout where it is",
        "resume": "continue a paused rollout",
        "retry": "re-run a quarantined (rolled back) spec on purpose",
        "watch": "live status view until Ctrl-C or --timeout",
    }
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        _common(sub, suppress=True)
        if command == "list":
            sub.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
            sub.add_argument("-l", "--selector", help="label selector, as kubectl's")
            continue
        sub.add_argument("name", metavar="NAME", help="the ModelDeployment")
        if command == "status":
            sub.add_argument(
                "--wait",
                nargs="?",
                const="",
                metavar="TIMEOUT",
                help="wait until the desired spec is Stable (exit 0) or RolledBack (3), Failed "
                "(4), Degraded (5); TIMEOUT like 10m (exit 6 when it passes); none: no limit",
            )
        if command == "rollback":
            sub.add_argument("--to", type=int, required=True, metavar="N", help="revision")
        if command == "watch":
            sub.add_argument("--timeout", type=float, help="stop after this many seconds")
    return parser


def _decide(
    command: str, obj: dict[str, Any], revision: int, now: datetime
) -> cli_actions.Action | None:
    token = cli_actions.unique_token(now, secrets.token_hex(3))
    if command == "rollback":
        return cli_actions.rollback(obj, revision, token)
    if command == "promote":
        return cli_actions.promote(obj, token)
    if command == "abort":
        return cli_actions.abort(obj, token)
    if command == "pause":
        return cli_actions.pause(obj)
    if command == "resume":
        return cli_actions.resume(obj)
    return cli_actions.retry(obj, token)


def run_action(session: Session, command: str, name: str, args: argparse.Namespace) -> int:
    obj = session.kube.get(session.namespace, name)
    action = _decide(command, obj, args.to if command == "rollback" else 0, session.now())
    if action is None:  # pause/resume that is already in effect: nothing to write
        state = "already paused" if command == "pause" else "not paused"
        message = f"{cli_render.qualified_name(obj)} is {state}: nothing to change"
    else:
        session.kube.annotate(session.namespace, name, action.patch())
        message = f"{action.message} ({action.annotation}={action.value or '<removed>'})"
    if session.output:
        session.emit(
            {
                "name": name,
                "namespace": session.namespace,
                "action": command,
                "changed": action is not None,
                "annotation": action.annotation if action else None,
                "value": action.value if action else None,
                "message": message,
            }
        )
    else:
        session.say([message])
    return 0


def run_watch(session: Session, name: str, timeout: float | None) -> int:
    """Redraw on every change, and every second on a terminal so ages stay current."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tty = session.out.isatty()
    shown: str | None = None

    def draw(obj: dict[str, Any]) -> None:
        nonlocal shown
        version = obj["metadata"].get("resourceVersion")
        if version == shown and not (tty and not session.output):
            return
        shown = version
        if session.output:
            session.emit(cli_render.status_document(obj), compact=True)
            return
        now = session.now()
        header = f"{now:%H:%M:%S}  kubectl modeldeploy watch {name}  (Ctrl-C to stop)"
        lines = [header, "", *cli_render.status_lines(obj, now, session.color)]
        session.out.write(CLEAR_SCREEN if tty else "\n")
        session.say(lines)

    obj = session.kube.get(session.namespace, name)
    draw(obj)
    while deadline is None or time.monotonic() < deadline:
        for obj in session.kube.changes(session.namespace, name, seconds=1):
            draw(obj)
        draw(obj)
    return 0


def run_wait(session: Session, name: str, timeout: str) -> int:
    """Follow the rollout until the desired spec's phase is final; its exit code says which.
    One line per change of phase or message, then the status view."""
    try:
        limit = parse_duration(timeout).total_seconds() if timeout else None
    except ValueError as err:
        raise CliError(f"--wait: {err}") from err
    deadline = None if limit is None else time.monotonic() + limit
    obj = session.kube.get(session.namespace, name)
    said: tuple[Any, ...] | None = None
    while (code := cli_views.wait_verdict(obj)) is None:
        status = obj.get("status") or {}
        news = (status.get("phase"), status.get("message"), status.get("observedGeneration"))
        if news != said and not session.output:
            said = news
            session.say([f"{session.now():%H:%M:%S}  {news[0] or '-'}: {news[1] or ''}"])
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            code = cli_views.EXIT_TIMEOUT
            break
        for obj in session.kube.changes(
            session.namespace, name, seconds=int(min(left or 5, 5)) + 1
        ):
            if cli_views.wait_verdict(obj) is not None:
                break
    if session.output:
        session.emit({**cli_render.status_document(obj), "exitCode": code})
    else:
        session.say(["", *cli_render.status_lines(obj, session.now(), session.color)])
        if code == cli_views.EXIT_TIMEOUT:
            session.say([f"timed out after {timeout} waiting for the rollout to finish"])
    return code


def run_list(session: Session, all_namespaces: bool, selector: str | None) -> int:
    items = session.kube.find(None if all_namespaces else session.namespace, selector)
    if session.output:
        session.emit({"items": [cli_render.status_document(o) for o in items]})
    else:
        session.say(cli_views.list_lines(items, session.now(), all_namespaces, session.color))
    return 0


def run(args: argparse.Namespace, out: TextIO) -> int:
    api, default_namespace = connect(args.kubeconfig, args.context)
    tty = out.isatty()
    color = tty and "NO_COLOR" not in os.environ and args.output is None
    session = Session(Kube(api), args.namespace or default_namespace, args.output, out, color)
    session.width = shutil.get_terminal_size().columns if tty and not args.output else None
    if args.command in ACTIONS:
        return run_action(session, args.command, args.name, args)
    if args.command == "watch":
        return run_watch(session, args.name, args.timeout)
    if args.command == "list":
        return run_list(session, args.all_namespaces, args.selector)
    if args.command == "status" and args.wait is not None:
        return run_wait(session, args.name, args.wait)
    obj = session.kube.get(session.namespace, args.name)
    if args.command == "get":
        deployments, pods = session.kube.children(session.namespace, args.name)
        if session.output:
            session.emit(
                {**cli_render.status_document(obj), "deployments": deployments, "pods": pods}
            )
        else:
            session.say(cli_views.tree_lines(obj, deployments, pods, session.now(), color))
        return 0
    if args.command == "status":
        if session.output:
            session.emit(cli_render.status_document(obj))
        else:
            _, pods = session.kube.children(session.namespace, args.name)
            health = cli_views.health_lines(obj, pods, color)
            session.say(cli_render.status_lines(obj, session.now(), color) + health)
    else:  # history
        if session.output:
            session.emit(cli_render.history_document(obj))
        else:
            session.say(cli_render.history_lines(obj, session.now(), color))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, sys.stdout)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
