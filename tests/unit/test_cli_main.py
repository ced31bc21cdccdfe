"""`kubectl modeldeploy` against an in-memory API: parsing, dispatch, output, exit codes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import yaml

from modeldeploy import cli, names
from modeldeploy.cli_actions import CliError
from tests.unit.cli_fixtures import progressing


class FakeKube:
    """Stands in for cli_kube.Kube: one object, every patch recorded."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[dict[str, Any]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        meta = self.obj["metadata"]
        if (namespace, name) != (meta["namespace"], meta["name"]):
            raise CliError(f'modeldeployment "{name}" not found in namespace "{namespace}"')
        return self.obj

    def annotate(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.get(namespace, name)
        self.patches.append(patch)
        return self.obj


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
