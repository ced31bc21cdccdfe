"""`make audit`'s judgement of pip-audit's report (scripts/audit.py): a finding fails unless it is
accepted with a reason and a date not yet past; a package that could not be looked up is never
a pass."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 12, 1)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit", ROOT / "scripts" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit"] = module
    spec.loader.exec_module(module)
    return module


audit = _load()
VULN = {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2026-1"], "fix_versions": ["2.0"]}


def report(*deps: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(deps), "fixes": []}


def accepted(id_: str = "CVE-2026-1", until: date = date(2027, 1, 1)) -> Any:
    return audit.Accepted(id_, "foo", "never reached", until)


def test_a_clean_report_passes() -> None:
    verdict = audit.judge(report({"name": "foo", "version": "1", "vulns": []}), [], TODAY)
    assert audit.exit_code(verdict, unaudited_ok=False) == 0


def test_a_known_vulnerability_fails_and_names_the_fix() -> None:
    verdict = audit.judge(report({"name": "foo", "version": "1", "vulns": [VULN]}), [], TODAY)
    assert audit.exit_code(verdict, unaudited_ok=True) == 1
    (line,) = [x for x in audit.report_lines(verdict, audited=1, unaudited_ok=True) if "VULN" in x]
    assert "foo 1: GHSA-aaaa-bbbb-cccc (CVE-2026-1), fixed in 2.0" in line


@pytest.mark.parametrize("id_", ["GHSA-aaaa-bbbb-cccc", "CVE-2026-1"])
def test_an_accepted_finding_passes_by_its_id_or_an_alias(id_: str) -> None:
    dep = {"name": "foo", "version": "1", "vulns": [VULN]}
    verdict = audit.judge(report(dep), [accepted(id_)], TODAY)
    assert audit.exit_code(verdict, unaudited_ok=False) == 0
    assert len(verdict.accepted) == 1


def test_an_expired_acceptance_fails_again_and_another_package_is_not_covered() -> None:
    dep = {"name": "foo", "version": "1", "vulns": [VULN]}
    expired = audit.judge(report(dep), [accepted(until=date(2026, 11, 30))], TODAY)
    assert audit.exit_code(expired, unaudited_ok=False) == 1
    assert expired.expired
    other = {"name": "bar", "version": "1", "vulns": [VULN]}
    assert audit.exit_code(audit.judge(report(other), [accepted()], TODAY), unaudited_ok=False) == 1


def test_unaudited_packages_fail_unless_allowed_and_are_said_either_way() -> None:
    dep = {"name": "foo", "skip_reason": "Dependency not found on PyPI and could not be audited"}
    verdict = audit.judge(report(dep), [], TODAY)
    assert audit.exit_code(verdict, unaudited_ok=False) == 2
    assert audit.exit_code(verdict, unaudited_ok=True) == 0
    lines = audit.report_lines(verdict, audited=1, unaudited_ok=True)
    assert any(line.startswith("WARNING: NOT AUDITED: 1 of 1") for line in lines)
    assert not any("no known vulnerability" in line for line in lines)


def test_the_ignore_file_parses_and_requires_a_reason_and_a_date() -> None:
    assert audit.parse_ignores(audit.IGNORES.read_text()) == []  # nothing accepted today
    entry = '[[ignore]]\nid = "X"\npackage = "foo"\nreason = "r"\nuntil = 2027-01-31\n'
    assert audit.parse_ignores(entry)[0].until == date(2027, 1, 31)
    with pytest.raises(ValueError, match="lacks"):
        audit.parse_ignores('[[ignore]]\nid = "X"\npackage = "foo"\n')
    with pytest.raises(ValueError, match="must be a date"):
        audit.parse_ignores(entry.replace("2027-01-31", '"soon"'))
