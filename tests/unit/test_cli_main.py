"""`kubectl modeldeploy` against an in-memory API: parsing, dispatch, output, exit codes."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from modeldeploy import cli, names
from modeldeploy.cli_actions import CliError
from modeldeploy.cli_views import EXIT_DEGRADED, EXIT_FAILED, EXIT_ROLLED_BACK, EXIT_TIMEOUT
from tests.unit.cli_fixtures import progressing, stable


class FakeKube:
    """Stands in for cli_kube.Kube: one object, every patch recorded."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[dict[str, Any]] = []
        self.later: list[dict[str, Any]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        meta = self.obj["metadata"]
        if (namespace, name) != (meta["namespace"], meta["name"]):
            raise CliError(f'modeldeployment "{name}" not found in namespace "{namespace}"')
        return self.obj

    def annotate(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.get(namespace, name)
        self.patches.append(patch)
        return self.obj

    def changes(self, namespace: str, name: str, seconds: int) -> Iterator[dict[str, Any]]:
        """The next object of `later`, as a watch would bring it (none left: no change)."""
        if self.later:
            self.obj = self.later.pop(0)
            yield self.obj

    def find(self, namespace: str | None, selector: str | None) -> list[dict[str, Any]]:
        return [self.obj]


def run(argv: list[str], kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    out = io.StringIO()
    monkeypatch.setattr(cli, "connect", lambda kubeconfig, context: (None, "default"))
    monkeypatch.setattr(cli, "Kube", lambda api: kube)
    args = cli.build_parser().parse_args(argv)
    try:
        code = cli.run(args, out)
    except CliError:
        code = 1
    return code, out.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "ml", "status", "iris"],
        ["status", "iris", "-n", "ml"],
        ["--namespace=ml", "status", "--kubeconfig", "/k", "iris"],
    ],
)
def test_flags_work_before_and_after_the_command(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert (args.command, args.name, args.namespace) == ("status", "iris", "ml")


def test_rollback_requires_to() -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["rollback", "iris"])
    assert exit_.value.code == 2


def test_status_json_for_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = run(
        ["-n", "ml", "-o", "json", "status", "iris"], FakeKube(progressing()), monkeypatch
    )
    assert code == 0
    doc = json.loads(text)
    assert doc["status"]["phase"] == names.PHASE_PROGRESSING
    assert doc["status"]["canary"]["revision"] == 4


def test_history_yaml_for_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    code, text = run(
        ["-n", "ml", "-o", "yaml", "history", "iris"], FakeKube(progressing()), monkeypatch
    )
    assert code == 0
    assert yaml.safe_load(text)["stableRevision"] == 3


@pytest.mark.parametrize(
    ("argv", "annotation"),
    [
        (["rollback", "iris", "--to", "1"], names.ANNOTATION_ROLLBACK_TO),
        (["promote", "iris"], names.ANNOTATION_PROMOTE),
        (["pause", "iris"], names.ANNOTATION_PAUSED),
        (["retry", "iris"], names.ANNOTATION_RETRY),
    ],
)
def test_actions_patch_only_one_annotation(
    argv: list[str], annotation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = FakeKube(progressing())
    code, text = run(["-n", "ml", *argv], kube, monkeypatch)
    assert code == 0
    assert len(kube.patches) == 1
    assert list(kube.patches[0]) == ["metadata"]
    assert list(kube.patches[0]["metadata"]["annotations"]) == [annotation]
    assert annotation in text


def test_unique_values_change_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube(progressing())
    run(["-n", "ml", "retry", "iris"], kube, monkeypatch)
    run(["-n", "ml", "retry", "iris"], kube, monkeypatch)
    first, second = (p["metadata"]["annotations"][names.ANNOTATION_RETRY] for p in kube.patches)
    assert first != second


def test_action_json_reports_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube(progressing())
    kube.obj["metadata"]["annotations"][names.ANNOTATION_PAUSED] = "true"
    code, text = run(["-n", "ml", "-o", "json", "pause", "iris"], kube, monkeypatch)
    assert code == 0
    assert json.loads(text)["changed"] is False
    assert kube.patches == []


def test_errors_are_one_line_on_stderr_with_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "connect", lambda kubeconfig, context: (None, "default"))
    monkeypatch.setattr(cli, "Kube", lambda api: FakeKube(progressing()))
    assert cli.main(["-n", "ml", "rollback", "iris", "--to", "2"]) == 1
    assert cli.main(["status", "iris"]) == 1  # wrong namespace
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = captured.err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("error: revision 2 of ml/iris was rolled back")
    assert errors[1] == 'error: modeldeployment "iris" not found in namespace "default"'


def _with(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["status"].update(status)
    return obj


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        (names.PHASE_STABLE, 0),
        (names.PHASE_ROLLED_BACK, EXIT_ROLLED_BACK),
        (names.PHASE_FAILED, EXIT_FAILED),
        (names.PHASE_DEGRADED, EXIT_DEGRADED),
    ],
)
def test_status_wait_exits_with_the_final_phase_of_the_desired_spec(
    phase: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = FakeKube(_with(progressing(), observedGeneration=3))  # older than generation 4
    # An old status saying Stable is not the desired spec's: keep waiting.
    kube.later = [_with(stable(), observedGeneration=3), _with(progressing(), phase=phase)]
    exit_code, text = run(["-n", "ml", "status", "iris", "--wait=1m"], kube, monkeypatch)
    assert exit_code == code
    assert kube.later == []  # it read every change up to the final one
    assert f"Phase:       {phase}" in text


def test_status_wait_times_out_with_its_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    exit_code, text = run(
        ["-n", "ml", "status", "iris", "--wait", "0s"], FakeKube(progressing()), monkeypatch
    )
    assert exit_code == EXIT_TIMEOUT
    assert "timed out after 0s" in text


def test_status_wait_json_carries_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = FakeKube(_with(stable(), observedGeneration=4))
    exit_code, text = run(["-n", "ml", "-o", "json", "status", "iris", "--wait"], kube, monkeypatch)
    assert (exit_code, json.loads(text)["exitCode"]) == (0, 0)


def test_a_bad_wait_timeout_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    exit_code, _ = run(
        ["-n", "ml", "status", "iris", "--wait=soon"], FakeKube(stable()), monkeypatch
    )
    assert exit_code == 1


def test_list_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    exit_code, text = run(["-n", "ml", "-o", "json", "list"], FakeKube(progressing()), monkeypatch)
    assert exit_code == 0
    assert [d["name"] for d in json.loads(text)["items"]] == ["iris"]


def test_list_takes_all_namespaces_and_a_selector() -> None:
    args = cli.build_parser().parse_args(["list", "-A", "-l", "team=ml"])
    assert (args.command, args.all_namespaces, args.selector) == ("list", True, "team=ml")
