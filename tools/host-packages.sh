#!/usr/bin/env bash
# Installs the Debian packages the real node needs on the host (iptables and conntrack for
# kube-proxy, libseccomp-dev + pkg-config to build runc, gcc to build the pause binary, umoci to
# pack images; debootstrap and buildah to build the serving image). Idempotent: a no-op when all are present. Without root or apt-get it only says
# what is missing (the cluster then falls back to KWOK-only nodes).
set -euo pipefail

packages=(iptables conntrack libseccomp-dev pkg-config gcc libc6-dev umoci debootstrap buildah)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "warning: missing Debian packages for the real node: ${missing[*]} (need root and apt-get to install them)" >&2
  exit 0
fi
echo "installing Debian packages for the real node: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A stale package index cannot find new packages: refresh once, then install.
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
