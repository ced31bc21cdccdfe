#!/usr/bin/env bash
# Builds the local cluster's binaries from their Go modules (through the module proxy) and
# caches them outside the repo, keyed by the tools module's go.mod + go.sum: a binary is rebuilt
# only when its pinned version changes. Also builds the pause image for the real node (OCI
# archive, cached by a hash of its inputs). Prints the directory holding every binary.
#
#   tools/build.sh            build what is missing, print the bin dir
#   tools/build.sh --print    print the bin dir only (exit 1 if anything is missing)
#
# MODELDEPLOY_REAL_NODE=0 skips the real node's components (containerd, runc, CNI plugins,
# metrics-server, the pause image); kubelet and kube-proxy come with the control plane module.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}

command -v go >/dev/null || { echo "error: 'go' is not on PATH; install Go >= 1.26 to build the control plane" >&2; exit 2; }

# component -> the binaries its tools module builds
declare -A binaries=(
  [k8s]="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy"
  [etcd]="etcd"
  [kwok]="kwok kwokctl"
  [helm]="helm"
  [containerd]="containerd ctr containerd-shim-runc-v2"
  [runc]="runc"
  [cni]="bridge host-local loopback portmap"
  [metrics-server]="metrics-server"
  # Object stores for the storage tests (tests/helpers/object_stores.py starts them).
  [seaweedfs]="weed"
  [fake-gcs-server]="fake-gcs-server"
)
order=(etcd kwok helm k8s)
# MODELDEPLOY_OBJECT_STORES=0 skips the storage tests' servers (their tests then skip, saying so).
if [ "${MODELDEPLOY_OBJECT_STORES:-1}" != 0 ]; then
  order+=(fake-gcs-server seaweedfs)
fi
if [ "${MODELDEPLOY_REAL_NODE:-1}" != 0 ]; then
  order+=(runc cni containerd metrics-server)
fi

# Per component: cgo and build tags. runc needs cgo for libseccomp (Debian libseccomp-dev).
cgo_for() { case $1 in runc) echo 1 ;; *) echo 0 ;; esac; }
tags_for() {
  case $1 in
  containerd) echo "no_btrfs,no_devmapper,no_zfs" ;;
  runc) echo "seccomp" ;;
  cni | metrics-server | seaweedfs | fake-gcs-server) echo "" ;;
  *) echo "selinux,notest,grpcnotrace" ;;
  esac
}

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
  containerd)
    local v; v=$(module_version containerd github.com/containerd/containerd/v2)
    echo "-s -w -X github.com/containerd/containerd/v2/version.Version=$v" ;;
  runc) echo "-s -w -X main.version=$(module_version runc github.com/opencontainers/runc | sed 's/^v//')" ;;
  cni)
    local v; v=$(module_version cni github.com/containernetworking/plugins)
    echo "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" ;;
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
    (cd "$here/$c" && CGO_ENABLED=$(cgo_for "$c") GOFLAGS=-mod=mod go build -trimpath \
        -tags="$(tags_for "$c")" -ldflags "$(ldflags_for "$c")" -o "$tmp/" $pkgs)
    # etcd's main package is its module root (go.etcd.io/etcd/server/v3): go names it "server".
    if [ "$c" = etcd ] && [ -x "$tmp/server" ]; then mv "$tmp/server" "$tmp/etcd"; fi
    if [ "$c" = runc ] && [ ! -x "$tmp/runc" ]; then
      echo "error: runc was not built (is libseccomp-dev installed? run tools/host-packages.sh)" >&2; exit 1
    fi
    rm -rf "$out"; mv "$tmp" "$out"
    echo "built $c in $(( $(date +%s) - start ))s" >&2
  fi
  for b in ${binaries[$c]}; do ln -sfn "$out/$b" "$bindir/$b"; done
done

# Azurite (Microsoft's Azure Storage emulator) from npm, for the storage tests: installed from
# tools/azurite's lockfile into the cache, keyed by that lockfile, without install scripts.
if [ "${MODELDEPLOY_OBJECT_STORES:-1}" != 0 ]; then
  command -v npm >/dev/null || { echo "error: npm is missing (it installs Azurite for the storage tests; MODELDEPLOY_OBJECT_STORES=0 skips them)" >&2; exit 2; }
  out="$cache/build/azurite-$(cat "$here/azurite/package.json" "$here/azurite/package-lock.json" | sha256sum | cut -c1-16)"
  if [ ! -x "$out/node_modules/.bin/azurite-blob" ]; then
    echo "installing azurite into $out ..." >&2
    tmp="$out.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    cp "$here/azurite/package.json" "$here/azurite/package-lock.json" "$tmp/"
    (cd "$tmp" && npm ci --ignore-scripts --omit=dev --no-audit --no-fund --loglevel=error >&2)
    rm -rf "$out"; mv "$tmp" "$out"
  fi
  ln -sfn "$out/node_modules/.bin/azurite-blob" "$bindir/azurite-blob"
fi

# Images for the real node, without a registry: one static binary each, packed as an OCI archive
# with umoci and cached by a hash of its inputs; $cache/images/<name>.tar links to the current one.
images="$cache/images"
oci_pack() { # name tag binary user -> $images/<name>-<key>.tar (key: the binary's bytes)
  local name=$1 tag=$2 bin=$3 user=$4
  local key; key=$( (sha256sum <"$bin"; echo "$tag $user") | sha256sum | cut -c1-16)
  local out="$images/$name-$key.tar"
  if [ ! -s "$out" ]; then
    command -v umoci >/dev/null || { echo "error: umoci is missing (run tools/host-packages.sh)" >&2; exit 1; }
    local work; work=$(mktemp -d)
    umoci init --layout "$work/oci"
    umoci new --image "$work/oci:$tag"
    umoci insert --image "$work/oci:$tag" "$bin" "/$name" >/dev/null
    umoci config --image "$work/oci:$tag" --config.entrypoint "/$name" \
      --config.user "$user" --os linux --architecture amd64
    umoci gc --layout "$work/oci"
    tar -C "$work/oci" -cf "$out.tmp" . && mv "$out.tmp" "$out"
    rm -rf "$work"
    echo "packed $out" >&2
  fi
  ln -sfn "$out" "$images/$name.tar"
}

# The pod sandbox: build/pause/linux/pause.c from the k8s module itself, gcc -Os -static.
PAUSE_TAG=3.10.2 # build/pause/Makefile's TAG in k8s.io/kubernetes v1.36
build_images() {
  mkdir -p "$images"
  local v; v=$(module_version k8s k8s.io/kubernetes)
  local src; src=$(cd "$here/k8s" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" |
    awk -F'"' '$2 == "Dir" {print $4}')/build/pause/linux/pause.c
  local work; work=$(mktemp -d)
  gcc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_TAG-modeldeploy" -o "$work/pause" "$src"
  oci_pack pause "$PAUSE_TAG" "$work/pause" 65535:65535
  # The test image: an HTTP server for Service, logs and exec checks (tools/images/hello).
  (cd "$here/images/hello" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/hello" .)
  oci_pack hello 1 "$work/hello" 65532:65532
  rm -rf "$work"
}
if [ "${MODELDEPLOY_REAL_NODE:-1}" != 0 ]; then build_images; fi
echo "$bindir"
