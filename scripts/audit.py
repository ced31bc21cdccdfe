"""Known vulnerabilities in the serving image's locked dependencies: `make audit`.

    python scripts/audit.py                  # exit 1 on a finding, 2 if anything went unaudited
    python scripts/audit.py --unaudited-ok   # same, but a source it cannot reach only warns

pip-audit checks every pin of serving_image/requirements.lock (hashed, so it installs nothing)
against its vulnerability service, PyPI's per-version JSON API by default. Findings listed in
serving_image/audit-ignore.toml, with a reason and an expiry date, are accepted until then.
A package pip-audit could not look up is *unaudited*, never passed: by default that fails too
(exit 2); `--unaudited-ok` (what .ci/run uses on machines that reach only the package index,
not its vulnerability data) turns it into a loud warning. docs/security.md says which applies.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
LOCK: Final = ROOT / "serving_image" / "requirements.lock"
IGNORES: Final = ROOT / "serving_image" / "audit-ignore.toml"


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...] = ()
    fix_versions: tuple[str, ...] = ()

    def __str__(self) -> str:
        fix = f", fixed in {', '.join(self.fix_versions)}" if self.fix_versions else ""
        also = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.package} {self.version}: {self.id}{also}{fix}"


@dataclass(frozen=True)
class Accepted:
    id: str
    package: str
    reason: str
    until: date


@dataclass(frozen=True)
class Verdict:
    vulnerable: list[Finding] = field(default_factory=list)
    accepted: list[tuple[Finding, Accepted]] = field(default_factory=list)
    unaudited: list[tuple[str, str]] = field(default_factory=list)  # (package, why)
    expired: list[Accepted] = field(default_factory=list)  # entries past `until`


def parse_ignores(text: str) -> list[Accepted]:
    entries = tomllib.loads(text).get("ignore", [])
    accepted = []
    for entry in entries:
        missing = {"id", "package", "reason", "until"} - set(entry)
        if missing:
            raise ValueError(f"audit-ignore entry {entry!r} lacks {sorted(missing)}")
        if not isinstance(entry["until"], date) or not str(entry["reason"]).strip():
            what = "`until` must be a date and `reason` a text"
            raise ValueError(f"audit-ignore entry {entry['id']}: {what}")
        accepted.append(Accepted(entry["id"], entry["package"], entry["reason"], entry["until"]))
    return accepted


def judge(report: Mapping[str, Any], ignores: Sequence[Accepted], today: date) -> Verdict:
    """pip-audit's JSON report against the accepted list. Pure: `today` is a parameter."""
    verdict = Verdict()
    live = [a for a in ignores if a.until >= today]
    verdict.expired.extend(a for a in ignores if a.until < today)
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            verdict.unaudited.append((dep["name"], dep["skip_reason"]))
            continue
        for vuln in dep.get("vulns", []):
            finding = Finding(
                dep["name"],
                dep.get("version", "?"),
                vuln["id"],
                tuple(vuln.get("aliases", [])),
                tuple(vuln.get("fix_versions", [])),
            )
            ids = {finding.id, *finding.aliases}
            match = next(
                (a for a in live if a.id in ids and a.package.lower() == finding.package.lower()),
                None,
            )
            if match is None:
                verdict.vulnerable.append(finding)
            else:
                verdict.accepted.append((finding, match))
    return verdict


def exit_code(verdict: Verdict, *, unaudited_ok: bool) -> int:
    if verdict.vulnerable:
        return 1
    if verdict.unaudited and not unaudited_ok:
        return 2
    return 0


def report_lines(verdict: Verdict, *, audited: int, unaudited_ok: bool) -> list[str]:
    lines = [f"VULNERABLE {finding}" for finding in verdict.vulnerable]
    lines += [f"accepted {f} until {a.until}: {a.reason}" for f, a in verdict.accepted]
    lines += [f"expired acceptance {a.id} ({a.package}, until {a.until})" for a in verdict.expired]
    if verdict.unaudited:
        sample = "; ".join(f"{name}: {why}" for name, why in verdict.unaudited[:3])
        lines.append(
            f"{'WARNING' if unaudited_ok else 'ERROR'}: NOT AUDITED: {len(verdict.unaudited)} of "
            f"{audited} locked packages could not be checked for known vulnerabilities (is the "
            f"vulnerability service reachable from here?): {sample}"
        )
    if not verdict.vulnerable and not verdict.unaudited:
        lines.append(f"audit: {audited} locked packages, no known vulnerability")
    return lines


def run_pip_audit(lock: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "report.json"
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "pip-audit"),
                "--disable-pip",  # the lock is hashed: audit its pins, install nothing
                "--require-hashes",
                f"--requirement={lock}",
                "--format=json",
                f"--output={output}",
                "--progress-spinner=off",
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        if not output.exists():  # pip-audit itself failed, not a finding
            raise RuntimeError(f"pip-audit failed ({proc.returncode}): {proc.stderr.strip()}")
        report: dict[str, Any] = json.loads(output.read_text())
        return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--unaudited-ok",
        action="store_true",
        help="warn, do not fail, when packages could not be looked up",
    )
    args = parser.parse_args(argv)
    report = run_pip_audit(LOCK)
    verdict = judge(report, parse_ignores(IGNORES.read_text()), date.today())
    audited = len(report.get("dependencies", []))
    for line in report_lines(verdict, audited=audited, unaudited_ok=args.unaudited_ok):
        print(line, file=sys.stderr if line.startswith(("VULN", "ERROR", "WARN")) else sys.stdout)
    return exit_code(verdict, unaudited_ok=args.unaudited_ok)


if __name__ == "__main__":
    sys.exit(main())
