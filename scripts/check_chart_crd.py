"""Keep charts/modeldeploy/crds/ a byte-for-byte copy of crds/ (the API's source of truth).

python scripts/check_chart_crd.py          exit 1 and name the drifted files
python scripts/check_chart_crd.py --fix    copy crds/*.yaml into the chart
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "modeldeploy" / "crds"


def drifted() -> list[str]:
    source = {p.name: p.read_bytes() for p in SOURCE.glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    return sorted(n for n in source.keys() | chart.keys() if source.get(n) != chart.get(n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="copy crds/ into the chart")
    args = parser.parse_args()
    names = drifted()
    if names and args.fix:
        for stale in CHART_CRDS.glob("*.yaml"):
            stale.unlink()
        for crd in SOURCE.glob("*.yaml"):
            shutil.copyfile(crd, CHART_CRDS / crd.name)
        print(f"copied into {CHART_CRDS.relative_to(ROOT)}: {', '.join(names)}")
        return 0
    if names:
        print(f"chart CRDs differ from crds/: {', '.join(names)} (run with --fix)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
