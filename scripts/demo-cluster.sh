#!/usr/bin/env bash
# `make demo-cluster`: the demo's pods spread over a lab of three nodes (one agent each, sharing the
# etcd weir runs for the lab), the same policies enforced across nodes through the VXLAN tunnel
# (the sender's identity in the VNI), and the flows of one node. The lab stays up afterwards;
# `bin/weir lab down --lab demo3` removes it. `ROUTING=native make demo-cluster`: native routing.
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIR_LAB=${WEIR_LAB:-demo3}
weir=bin/weir
bold=$(tput bold 2>/dev/null || true) norm=$(tput sgr0 2>/dev/null || true)
green=$(tput setaf 2 2>/dev/null || true) red=$(tput setaf 1 2>/dev/null || true)
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$norm"; }
run() { printf '%s$ weir %s%s\n' "$bold" "$*" "$norm"; $weir "$@"; }

flows=(
  "shop/frontend shop/backend 8080/TCP"
  "tools/debug   shop/backend 8080/TCP"
  "shop/backend  data/db      5432/TCP"
  "tools/debug   data/db      5432/TCP"
)
probe_all() {
  for f in "${flows[@]}"; do
    read -r from to port <<<"$f"
    if $weir lab probe --from "$from" --to "$to" --port "$port" --timeout 700 >/dev/null 2>&1; then
      printf '  %-14s -> %-14s %-9s %sALLOWED%s\n' "$from" "$to" "$port" "$green" "$norm"
    else
      printf '  %-14s -> %-14s %-9s %sDENIED%s\n' "$from" "$to" "$port" "$red" "$norm"
    fi
  done
}

say "0. Cleaning up any earlier cluster demo lab"
$weir lab down >/dev/null 2>&1 || true

say "1. Three nodes on an underlay, etcd for their shared state, an agent per node"
run lab up --nodes 3 --routing "${ROUTING:-tunnel}"
run node list

say "2. The demo's pods, spread over the nodes by the API (any node's)"
run apply -f examples/demo/01-namespaces-pods.yaml
run get pods -A -o wide
probe_all

say "3. The demo's policies: every node judges pods of other nodes by their cluster-wide identity"
run apply -f examples/demo/02-policies.yaml
probe_all

say "4. One identity per label set on every node"
for n in node1 node2 node3; do
  printf '%s$ WEIR_NODE=%s weir identity list | grep app=%s\n' "$bold" "$n" "$norm"
  WEIR_NODE=$n $weir identity list | grep 'app=' | cut -c1-60
done

say "5. The flows of the node running data/db"
node=$($weir get pods -n data -o json | sed -n 's/.*"nodeName": "\([^"]*\)".*/\1/p' | head -1)
run observe --node "$node" --last 6

say "The lab '$WEIR_LAB' is still up: try 'bin/weir lab probe --lab $WEIR_LAB …'; 'bin/weir lab down --lab $WEIR_LAB' removes it"
