#!/usr/bin/env bash
# `make demo-cluster`: the demo's shop on a lab of three nodes — etcd shared by three agents, pods
# spread over the nodes, VXLAN between them carrying the sender's security identity, and the same
# policies enforced across nodes. The lab stays up afterwards; `bin/weir lab down --lab democ`
# removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIR_LAB=${WEIR_LAB:-democ}
weir=bin/weir
# shellcheck source=scripts/demo-common.sh
source scripts/demo-common.sh

flows=(
  "shop/frontend shop/backend 8080/TCP"
  "shop/frontend shop/backend 9090/TCP"
  "tools/debug   shop/backend 8080/TCP"
  "shop/backend  data/db      5432/TCP"
  "tools/debug   data/db      5432/TCP"
)
# Each probe line names the nodes of both ends: the connection crosses the tunnel when they differ.
node_of() { $weir get pod "${1#*/}" -n "${1%%/*}" -o json | node -e 'let s = "";
  process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s).spec.nodeName))'; }
where() { echo "$(node_of "$1") -> $(node_of "$2")"; }

say "0. Cleaning up any earlier cluster demo lab"
$weir lab down >/dev/null 2>&1 || true

say "1. Three nodes: node namespaces on an underlay bridge, etcd (Debian's) shared by one agent per node"
run lab up --nodes 3
run node list

say "2. The shop's pods, spread over the nodes by the API (no spec.nodeName: the least loaded node)"
run apply -f examples/demo/01-namespaces-pods.yaml
run get pods -A -o wide
echo "   Every label set got one cluster-wide identity, allocated in etcd:"
run identity list

say "3. No policy yet: every connection passes, through the VXLAN tunnel where the pods' nodes differ"
probe_all

say "4. The demo's policies, applied through node2's API: every node enforces them with the identity"
echo "   the sending node put in the VXLAN header (the VNI), not with addresses"
WEIR_NODE=node2 run apply -f examples/demo/02-policies.yaml
probe_all

say "5. What node2's kernel holds: other nodes' pods in its ipcache, each with its node as tunnel endpoint"
WEIR_NODE=node2 run bpf ipcache list

say "6. Why: the verdicts name their rules, on the node that judged them"
node=$(node_of shop/backend)
WEIR_NODE=$node run observe --verdict DROPPED --to-pod shop/backend --last 2
cat <<EOT

${bold}The lab '$WEIR_LAB' is still up. Things to try next:${norm}
  export WEIR_LAB=$WEIR_LAB
  bin/weir node list
  WEIR_NODE=node3 bin/weir endpoint list        # the endpoints node3 runs
  bin/weir lab exec tools/debug -- curl -s http://<backend IP>:8080/
  bin/weir lab down                             # nodes, underlay, etcd, agents
EOT
