#!/usr/bin/env bash
# Installs the MLflow tracking server the registry tests use into its own venv outside the repo,
# keyed by tools/mlflow/requirements.txt and the project's scikit-learn version: installed once
# per pin (a cache hit is instant). Prints the venv's bin directory.
#
#   tools/mlflow/install.sh [PYTHON]   PYTHON: the project's interpreter (default .venv/bin/python)
#   tools/mlflow/install.sh --print    print the bin dir only (exit 1 when not installed)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
mode=install
project_python=$root/.venv/bin/python
case "${1:-}" in
--print) mode=print ;;
"") ;;
*) project_python=$1 ;;
esac

[ -x "$project_python" ] || { echo "error: $project_python not found; run 'make install' first" >&2; exit 2; }
sklearn=$("$project_python" -c 'import sklearn; print(sklearn.__version__)')
key=$( (grep -v '^#' "$here/requirements.txt"; echo "scikit-learn==$sklearn") | sha256sum | cut -c1-16)
venv="$cache/mlflow/venv-$key"

if [ -x "$venv/bin/mlflow" ] && [ -f "$venv/.complete" ]; then
  echo "$venv/bin"; exit 0
fi
[ "$mode" = install ] || exit 1

echo "installing mlflow ($(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')scikit-learn==$sklearn) into $venv ..." >&2
start=$(date +%s)
# Installed in place (a venv's scripts name their interpreter by absolute path); only a run
# that finished writes .complete, so an interrupted one is started over.
rm -rf "$venv"
"$project_python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -r "$here/requirements.txt" "scikit-learn==$sklearn"
touch "$venv/.complete"
echo "installed mlflow in $(( $(date +%s) - start ))s" >&2
echo "$venv/bin"
