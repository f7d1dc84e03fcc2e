#!/usr/bin/env bash
# Installs what weir needs to build, test, demo and bench, and only what is missing:
# Debian packages through apt, npm packages through `npm ci`. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A need=(
  [clang]=clang [llc]=llvm [bpftool]=bpftool [ip]=iproute2 [tc]=iproute2
  [iptables]=iptables [nft]=nftables [iperf3]=iperf3 [sockperf]=sockperf [nsenter]=util-linux
  [chromium]=chromium [wrk]=wrk [h2load]=nghttp2-client [nginx]=nginx-light [haproxy]=haproxy
  [dig]=bind9-dnsutils [dnsperf]=dnsperf [strace]=strace
  [podman]=podman [busybox]=busybox-static [prometheus]=prometheus
)
missing=()
for cmd in "${!need[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}"); done
# The CNI test's containers run a busybox tree without libraries: the static build is needed.
if [ -x /bin/busybox ] && [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" != *'not a dynamic'* ]]; then
  missing+=(busybox-static)
fi
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
[ -e /usr/lib/x86_64-linux-gnu/libbpf.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libbpf.so.1 ] || missing+=(libbpf1)
[ -f /usr/include/linux/bpf.h ] || missing+=(linux-libc-dev)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" != 0 ]; then
    echo "weir: missing packages: ${missing[*]} (run as root so apt can install them)" >&2
    exit 1
  fi
  echo "weir: installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  # Packages with a daemon (nginx, haproxy) must not start one in the machine's namespace: weir runs
  # them itself, inside lab namespaces. policy-rc.d answering 101 tells invoke-rc.d not to start them.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1
  fi
  trap 'if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# etcd (the Store of a cluster; tests run it inside a weir network namespace). Debian's
# etcd-server package would start a system etcd on 127.0.0.1:2379 of the root namespace on
# machines with an init system, so its binary is unpacked into .deps/ instead of installed.
if ! command -v etcd >/dev/null 2>&1 && [ ! -x .deps/etcd/usr/bin/etcd ]; then
  echo "weir: unpacking etcd-server into .deps/etcd"
  tmp=$(mktemp -d)
  ( cd "$tmp" && apt-get download -qq etcd-server 2>/dev/null ) || {
    apt-get update -qq && ( cd "$tmp" && apt-get download -qq etcd-server )
  }
  mkdir -p .deps/etcd
  dpkg -x "$tmp"/etcd-server_*.deb .deps/etcd
  rm -rf "$tmp"
fi

# npm packages: reinstall when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "weir: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
