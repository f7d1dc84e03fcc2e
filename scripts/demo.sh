#!/usr/bin/env bash
# `make demo`: a lab with four pods, traffic before and after applying a Kubernetes NetworkPolicy and
# a CiliumNetworkPolicy, why each verdict was given, what the kernel holds, a Service reached through
# its ClusterIP, the flows naming the rule behind each drop, and an HTTP policy enforced by the proxy.
# The lab stays up afterwards so you can try things; `bin/weir lab down --lab demo` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIR_LAB=${WEIR_LAB:-demo}
weir=bin/weir
# shellcheck source=scripts/demo-common.sh
source scripts/demo-common.sh

flows=(
  "shop/frontend shop/backend 8080/TCP"
  "shop/frontend shop/backend 9090/TCP"
  "tools/debug   shop/backend 8080/TCP"
  "shop/backend  data/db      5432/TCP"
  "tools/debug   data/db      5432/TCP"
  "shop/backend  data/db      53/UDP"
  "tools/debug   shop/frontend 80/TCP"
)
say "0. Cleaning up any earlier demo lab"
$weir lab down >/dev/null 2>&1 || true

say "1. A lab: a node and pods as network namespaces, the weir agent attaching eBPF programs to each pod's veth"
run lab up
run apply -f examples/demo/01-namespaces-pods.yaml
run get pods -A -o wide

say "2. No policy selects any pod yet: every connection is allowed (real TCP/UDP connections from inside the pods)"
probe_all

say "3. Policies, unchanged Kubernetes and Cilium YAML: the backend accepts only the frontend on its 'http' port;"
echo "   the database accepts SQL only from the shop's backend, and an explicit deny closes its UDP port to everyone"
run apply -f examples/demo/02-policies.yaml

say "4. The same connections now, enforced in the kernel"
probe_all

say "5. Why? 'weir policy trace' names the rule, from the engine and from the live kernel maps"
run policy trace --from tools/debug --to data/db --port 53/UDP --datapath
run policy trace --from shop/frontend --to shop/backend --port 8080/TCP

say "6. What the kernel holds"
run endpoint list
run bpf policy get data/db
run bpf metrics list

# A field of a JSON object on stdin, by dotted path (kubectl's -o jsonpath, for the demo's needs).
field() { node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () =>
  console.log(process.argv[1].split(".").reduce((o, k) => o[k], JSON.parse(s))));' "$1"; }

say "7. A Service: its ClusterIP is translated to a backend when the client connects (no kube-proxy, no"
echo "   iptables); the backend's policy judges the real pod -> backend flow"
run apply -f examples/demo/03-service.yaml
run get svc -n shop
cluster_ip=$($weir get svc backend -n shop -o json | field spec.clusterIP)
for from in shop/frontend tools/debug; do
  if $weir lab probe --from "$from" --to "$cluster_ip" --port 80/TCP --timeout 700 >/dev/null 2>&1; then
    printf '  %-14s -> %-22s %sALLOWED%s\n' "$from" "$cluster_ip:80 (backend)" "$green" "$norm"
  else
    printf '  %-14s -> %-22s %sDENIED%s\n' "$from" "$cluster_ip:80 (backend)" "$red" "$norm"
  fi
done

say "8. Every verdict is a flow: 'weir observe' names the rule behind each drop, like hubble observe"
run observe --verdict DROPPED --to-pod shop/backend --last 2
run observe --verdict DROPPED --to-pod data/db --last 2

say "9. L7 on demand: an HTTP rule lets tools/debug GET the backend's API; only its connections to port"
echo "   8080 go to weir's node proxy, which forwards GET /api/... and answers anything else 403 itself."
echo "   The frontend's L4 allow keeps its connections in the kernel (no proxy)."
run apply -f examples/demo/04-l7.yaml
backend_ip=$($weir get pod backend -n shop -o json | field status.podIP)
for req in "tools/debug GET /api/orders" "tools/debug POST /api/orders" "tools/debug GET /admin" \
  "shop/frontend POST /api/orders"; do
  read -r from method path <<<"$req"
  code=$($weir lab exec "$from" -- curl -s -o /dev/null -m 2 -w '%{http_code}' -X "$method" \
    "http://$backend_ip:8080$path" || true)
  printf '  %-14s %-5s http://%s:8080%-12s -> HTTP %s\n' "$from" "$method" "$backend_ip" "$path" "$code"
done
run observe --type l7 --last 4
run proxy status
cat <<EOT

${bold}The lab '$WEIR_LAB' is still up. Things to try next:${norm}
  export WEIR_LAB=$WEIR_LAB
  bin/weir lab exec tools/debug -- curl -s http://$backend_ip:8080/api/x   # an HTTP answer naming the pod
  bin/weir lab exec tools/debug -- curl -s -X DELETE http://$backend_ip:8080/api/x   # Access denied
  bin/weir policy trace --from tools/debug --to shop/backend --port 8080/TCP
  bin/weir observe --last 20                 # the flows above, with the rule that decided each
  bin/weir ui                                # the same, live, as a service map (http://127.0.0.1:12000/)
  bin/weir bpf ct list                       # connections the datapath tracks
  bin/weir identity list                     # label sets and their numeric identities
  bin/weir delete -f examples/demo/02-policies.yaml   # policies go, connections open again
  bin/weir conformance run --cases conformance/netpol/cases --mode simulate
  bin/weir lab down                          # remove everything
EOT
