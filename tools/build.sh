#!/usr/bin/env bash
# Builds the local control plane's binaries from their Go modules (through the module proxy) and
# caches them outside the repo, keyed by the tools module's go.mod + go.sum: a binary is rebuilt
# only when its pinned version changes. Prints the directory holding every binary.
#
#   tools/build.sh            build what is missing, print the bin dir
#   tools/build.sh --print    print the bin dir only (exit 1 if anything is missing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}

command -v go >/dev/null || { echo "error: 'go' is not on PATH; install Go >= 1.26 to build the control plane" >&2; exit 2; }

# component -> the binaries its tools module builds
declare -A binaries=(
  [k8s]="kube-apiserver kube-controller-manager kube-scheduler kubectl"
  [etcd]="etcd"
  [kwok]="kwok kwokctl"
  [helm]="helm"
)
order=(etcd kwok helm k8s)

module_version() { # module path as required in a tools go.mod -> its pinned version
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$here/$1/go.mod"
}

ldflags_for() {
  case $1 in
  k8s)
    local v; v=$(module_version k8s k8s.io/kubernetes)
    local minor; minor=$(echo "$v" | cut -d. -f2)
    local flags="-s -w" pkg
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
      flags+=" -X '$pkg.gitVersion=$v' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
      flags+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=1970-01-01T00:00:00Z'"
    done
    echo "$flags" ;;
  helm)
    local v; v=$(module_version helm helm.sh/helm/v3)
    local kv; kv=$(module_version helm k8s.io/client-go)
    local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    local pkg
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$(echo "$kv" | cut -d. -f2)"
    done
    echo "$flags" ;;
  *) echo "-s -w" ;;
  esac
}

key_of() { cat "$here/$1/go.mod" "$here/$1/go.sum" | sha256sum | cut -c1-16; }

bindir="$cache/bin"
missing=0
for c in "${order[@]}"; do
  out="$cache/build/$c-$(key_of "$c")"
  for b in ${binaries[$c]}; do
    [ -x "$out/$b" ] || missing=1
  done
done

if [ "${1:-}" = "--print" ]; then
  [ $missing = 0 ] || exit 1
fi

mkdir -p "$bindir"
for c in "${order[@]}"; do
  out="$cache/build/$c-$(key_of "$c")"
  need=0
  for b in ${binaries[$c]}; do [ -x "$out/$b" ] || need=1; done
  if [ $need = 1 ]; then
    echo "building $c (${binaries[$c]}) into $out ..." >&2
    start=$(date +%s)
    tmp="$out.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    # The tool directives name the main packages; `go build tool` is not a pattern, so list them.
    pkgs=$(cd "$here/$c" && go list -f '{{.ImportPath}}' tool)
    (cd "$here/$c" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
        -tags=selinux,notest,grpcnotrace -ldflags "$(ldflags_for "$c")" -o "$tmp/" $pkgs)
    # etcd's main package is its module root (go.etcd.io/etcd/server/v3): go names it "server".
    if [ "$c" = etcd ] && [ -x "$tmp/server" ]; then mv "$tmp/server" "$tmp/etcd"; fi
    rm -rf "$out"; mv "$tmp" "$out"
    echo "built $c in $(( $(date +%s) - start ))s" >&2
  fi
  for b in ${binaries[$c]}; do ln -sfn "$out/$b" "$bindir/$b"; done
done
echo "$bindir"
