// weir's error codes, declared once (like fastify's lib/errors.js): what each ERR_<AREA>_<WHAT> means
// and, for codes the agent's API answers with, the HTTP status when it is not 400. WeirError takes
// only a code declared here (the compiler refuses any other), docs/errors.md is generated from this
// table, and error-codes.test.ts fails on an entry no source uses.
//
// Keep the entries sorted by code, one per line-group, so parallel additions merge cleanly.

export interface ErrorCodeSpec {
  /** What went wrong, for people (docs/errors.md). */
  readonly meaning: string;
  /** The status the agent API answers with (default 400; unknown non-weir errors are 500). */
  readonly http?: number;
}

export const errorCodes = {
  ERR_AGENT_BAD_ANSWER: { meaning: "the agent's answer was not the JSON (or NDJSON) the client expected" },
  ERR_AGENT_CONFIG: { meaning: 'an agent setting is invalid (e.g. an --identity-labels pattern)' },
  ERR_AGENT_METRICS_LISTEN: {
    meaning: 'the agent cannot listen on its --prometheus-serve-addr (address in use or not on the node)',
  },
  ERR_AGENT_NOT_READY: { meaning: 'the agent has not computed its first policy state yet', http: 503 },
  ERR_AGENT_NO_PROXY: { meaning: 'this agent manages no node proxy (weir proxy status)', http: 404 },
  ERR_AGENT_START: { meaning: 'the agent exited or did not answer while starting (see its log)' },
  ERR_AGENT_TIMEOUT: { meaning: 'the agent did not answer a request in time' },
  ERR_AGENT_UNREACHABLE: {
    meaning: "nothing answers on the lab's agent socket (the lab or its agent is down)",
  },
  ERR_API_BAD_JSON: { meaning: 'an agent API request body is not JSON' },
  ERR_API_BAD_REQUEST: { meaning: 'an agent API request body does not have the shape the route expects' },
  ERR_API_BODY_TOO_LARGE: { meaning: 'an agent API request body is over 64 MiB', http: 413 },
  ERR_API_CONFLICT: {
    meaning:
      'the desired state kept changing under an apply or delete (other API writers); nothing was written',
    http: 409,
  },
  ERR_API_NODE_IMMUTABLE: { meaning: "a pod's spec.nodeName cannot change (pods do not move)" },
  ERR_API_NODE_UNKNOWN: { meaning: 'spec.nodeName names a node that has not registered' },
  ERR_API_NOT_FOUND: { meaning: 'no agent API route for this method and path', http: 404 },
  ERR_API_NO_NODE: { meaning: 'no node is registered to run a pod (no agent has started)', http: 503 },
  ERR_API_POD_FAILED: {
    meaning: 'a pod was stored but its node could not start it (its status says why)',
    http: 500,
  },
  ERR_API_RECONCILE_FAILED: {
    meaning: 'a change was stored but a node failed to put it in force (it retries)',
    http: 500,
  },
  ERR_API_RECONCILE_TIMEOUT: {
    meaning: 'a change was stored but a node did not put it in force in time (its agent may be down)',
    http: 504,
  },
  ERR_AUTH_CA: {
    meaning: "the lab's CA (its certificate or key under the agent's ca/ directory) cannot be used",
  },
  ERR_AUTH_CA_ROTATE: {
    meaning:
      'a CA rotation was refused (an overlap out of range, or an earlier rotation still in its overlap)',
    http: 409,
  },
  ERR_AUTH_CSR: {
    meaning:
      'a certificate signing request for an SVID was refused (not PKCS#10, not P-256, bad signature, an identity not in use)',
    http: 400,
  },
  ERR_AUTH_CSR_NOT_HOSTED: {
    meaning:
      "an SVID was refused to a node that hosts no pod of the identity (the pods of the Store's desired state placed on that node)",
    http: 403,
  },
  ERR_AUTH_CSR_UNKNOWN_NODE: {
    meaning:
      "a node SVID was refused: the node asking has no node record in the cluster's state (weir/state/nodes/v1/<node>)",
    http: 403,
  },
  ERR_AUTH_NO_CA: {
    meaning: "this node's agent does not run the CA (the CA and its key live on the first node)",
    http: 400,
  },
  ERR_AUTH_NO_SVID: { meaning: 'the identity has no SVID on this node (not in use, or released)', http: 404 },
  ERR_AUTH_TRUST_DOMAIN: {
    meaning: 'the trust domain is not a SPIFFE trust domain (a-z 0-9 . - _, at most 255)',
  },
  ERR_BENCH_BASELINE: {
    meaning: "a benchmark's no-policy baseline is not raw (tc filters or rules present)",
  },
  ERR_BENCH_DNS: { meaning: 'dnsperf or a timed lookup of the DNS benchmark failed' },
  ERR_BENCH_IPTABLES: { meaning: 'the iptables comparison did not install the expected rules' },
  ERR_BENCH_OUTPUT: { meaning: 'a benchmark client reported fewer measurements than it was asked for' },
  ERR_BENCH_PEER: { meaning: 'a benchmark peer (nginx, haproxy …) exited or did not listen in time' },
  ERR_BENCH_PEERS: { meaning: 'a benchmark asked for more CIDR peers than its address block holds' },
  ERR_BENCH_POLICY: { meaning: 'the kernel does not hold the policy entries a benchmark set up' },
  ERR_BENCH_RSS: { meaning: "a process's resident memory could not be read" },
  ERR_BENCH_SCALE: { meaning: 'the scale benchmark found no endpoint it created' },
  ERR_BENCH_SECTIONS: { meaning: 'WEIR_BENCH_SECTIONS names an unknown benchmark section' },
  ERR_BENCH_SERVER: { meaning: 'a benchmark server exited early' },
  ERR_BENCH_SERVICES: { meaning: 'a benchmark asked for more services than its address block holds' },
  ERR_BPF_CODEC: { meaning: 'a value does not fit the map key or value layout it is encoded into' },
  ERR_BPF_KEY_EXIST: { meaning: 'a map element already exists (create-only update)' },
  ERR_BPF_KEY_NOT_EXIST: { meaning: 'a map element does not exist' },
  ERR_BPF_LAYOUT: { meaning: "a TypeScript map layout differs from the compiled object's BTF" },
  ERR_BPF_MAP_INCOMPATIBLE: { meaning: 'a pinned map has another type, size or layout than the one loaded' },
  ERR_BPF_NOT_FOUND: { meaning: 'a BPF object, program, map, pin, device or cgroup does not exist' },
  ERR_BPF_STATE: { meaning: 'a BPF object was used after close(), or changed after load()' },
  ERR_BPF_SYSCALL: { meaning: 'a bpf(2), netlink or libbpf call failed (the errno is kept)', http: 500 },
  ERR_BPF_VERIFIER: { meaning: 'the kernel verifier rejected a program (the verifier log is kept)' },
  ERR_CLI_ARGUMENT: { meaning: 'a command-line argument is invalid' },
  ERR_CLI_NEEDS_ROOT: {
    meaning: 'the command needs root (lab state, BPF maps and network namespaces are root-only)',
  },
  ERR_CLI_NOT_FOUND: { meaning: 'the pod, endpoint or identity named on the command line does not exist' },
  ERR_CLI_NO_DATAPATH: { meaning: 'the lab has no pinned datapath maps (its agent never loaded them)' },
  ERR_CLI_OPTION: { meaning: 'a command-line option value is out of range or malformed' },
  ERR_CLI_OUTPUT: { meaning: 'an unknown -o output format' },
  ERR_CNI_ATTACHMENT_FAILED: {
    meaning:
      "the node could not create a runtime's container endpoint (weir-cni ADD; the pod status says why)",
    http: 500,
  },
  ERR_CNI_INSTALL: {
    meaning: 'weir cni install/uninstall could not write or remove the plugin or its config',
  },
  ERR_CNI_NETNS: {
    meaning: "CNI_NETNS cannot be opened, or is the machine's or the node's own network namespace (refused)",
  },
  ERR_CNI_NOT_FOUND: {
    meaning: 'no attachment of that container exists on this node (weir-cni CHECK)',
    http: 404,
  },
  ERR_CNI_REQUEST: { meaning: 'a weir-cni request to the agent lacks a field or names an invalid pod' },
  ERR_CONFORMANCE_CASE: { meaning: 'a conformance case file is malformed' },
  ERR_CONFORMANCE_NO_CASES: { meaning: 'no conformance case files were found where --cases points' },
  ERR_CONFORMANCE_PEER: { meaning: 'a conformance probe names a peer its topology does not have' },
  ERR_CONFORMANCE_SERVICE: { meaning: 'a conformance probe targets a Service that has no ClusterIP' },
  ERR_CONFORMANCE_STATE: { meaning: 'the simulate prober was asked to probe before anything was applied' },
  ERR_DATAPATH_ADDRESS: { meaning: 'a value written to a datapath map is not an IPv4 or IPv6 address' },
  ERR_DATAPATH_AUTH_KEY: { meaning: 'a weir_auth key is malformed (identity or node id out of range)' },
  ERR_DATAPATH_CONFIG: { meaning: 'a datapath setting (map sizes, modes) is out of range' },
  ERR_DATAPATH_DIRECTION: { meaning: 'a datapath map holds an unknown traffic direction' },
  ERR_DATAPATH_ENDPOINT: { meaning: 'an endpoint id is outside 1..65535' },
  ERR_DATAPATH_EVENT: { meaning: 'a ring-buffer record is not a well-formed flow event' },
  ERR_DATAPATH_MAC: { meaning: 'a MAC address given to the datapath (host routing) is malformed' },
  ERR_DATAPATH_MAP_KIND: {
    meaning: 'a pinned map is not of the kind the map catalogue declares (a stale or foreign pin)',
  },
  ERR_DATAPATH_MAP_UNKNOWN: {
    meaning: 'a map name is not in the map catalogue (src/datapath/maps/catalog.ts)',
  },
  ERR_DATAPATH_NO_POLICY_MAP: { meaning: 'the endpoint has no policy map' },
  ERR_DATAPATH_POLICY_KEY: { meaning: 'a policy map key is malformed (identity, protocol, port prefix)' },
  ERR_DATAPATH_PREFIX: { meaning: 'an ipcache prefix is malformed' },
  ERR_DOC_SECTION: { meaning: 'a generated section of a doc file is missing its begin/end markers' },
  ERR_EXEC_EMPTY: { meaning: 'an external command was run with an empty argv' },
  ERR_EXEC_FAILED: { meaning: 'an external command (ip, nsenter, mount …) failed or timed out', http: 500 },
  ERR_GATEWAY_ADDRESS_EXHAUSTED: {
    meaning: 'the gateway address range (198.51.100.0/24) has no free address',
  },
  ERR_GATEWAY_NOT_FOUND: {
    meaning: 'weir route trace names a Gateway, listener port or Service that routes nothing',
  },
  ERR_GATEWAY_UNSUPPORTED: {
    meaning:
      "a Gateway API field or filter that weir's gateway controller does not implement (refused by name)",
  },
  ERR_IDENTITY_CONFLICT: {
    meaning:
      'a cluster identity id was taken by a writer that ignored the allocator lock (nothing was written)',
  },
  ERR_IDENTITY_EXHAUSTED: { meaning: 'no free numeric identity is left in its range' },
  ERR_IDENTITY_LOCKED: { meaning: "the cluster's identity allocator lock stayed taken for 30 s" },
  ERR_IDENTITY_STATE: { meaning: "the identity allocator's persisted state has an unknown format" },
  ERR_IDENTITY_UNKNOWN: { meaning: 'an identity was released that is not allocated' },
  ERR_INPUT_INVALID: { meaning: 'input errors were found (a list with no code of its own)' },
  ERR_INTERNAL: { meaning: 'an unexpected failure inside the agent (not a weir error)', http: 500 },
  ERR_K8S_ANNOTATION_INVALID: { meaning: 'a weir.dev/ annotation has a value weir does not accept' },
  ERR_K8S_DUPLICATE: { meaning: 'the same object is defined twice in one apply' },
  ERR_K8S_FIELD_INVALID: { meaning: 'a manifest field has an invalid value' },
  ERR_K8S_FIELD_MISSING: { meaning: 'a required manifest field is missing' },
  ERR_K8S_FILE_NOT_FOUND: { meaning: 'a manifest file or directory given with -f does not exist' },
  ERR_K8S_KIND_DUPLICATE: { meaning: 'an apiVersion and kind were registered twice (a weir bug)' },
  ERR_K8S_KIND_UNKNOWN: { meaning: 'weir does not know this apiVersion and kind' },
  ERR_K8S_LABEL_INVALID: { meaning: 'a label key or value breaks Kubernetes label syntax' },
  ERR_K8S_NAMESPACE_NOT_FOUND: {
    meaning: 'a namespaced object names a namespace that neither exists nor comes in the same apply',
    http: 404,
  },
  ERR_K8S_PORT_DUPLICATE: { meaning: 'two ports of one pod share a name, or a port and protocol' },
  ERR_K8S_YAML_INVALID: { meaning: 'a manifest file is not valid YAML or JSON' },
  ERR_LAB_EXTERNAL_NOT_FOUND: { meaning: 'the lab has no external host of this name' },
  ERR_LAB_IPAM_EXHAUSTED: { meaning: "the node's pod CIDR has no room for more pods (checked by the API)" },
  ERR_LAB_LOCKED: { meaning: 'another weir command holds the lab lock' },
  ERR_LAB_NAMESPACE_NOT_EMPTY: { meaning: 'a namespace with pods left in it cannot be deleted' },
  ERR_LAB_NAMESPACE_PROTECTED: { meaning: 'the default namespace cannot be deleted' },
  ERR_LAB_NAME_COLLISION: { meaning: "a pod's netns or veth name would clash with another pod's" },
  ERR_LAB_NAME_INVALID: { meaning: 'a lab name is not ≤ 24 lowercase alphanumerics and -' },
  ERR_LAB_NODE_NOT_FOUND: { meaning: 'the lab has no node of this name (`weir node list` shows them)' },
  ERR_LAB_NOT_FOUND: { meaning: 'an object to delete does not exist (checked by the API)', http: 404 },
  ERR_LAB_NOT_UP: { meaning: 'the lab does not exist or is not up (weir lab up creates it)' },
  ERR_LAB_POD_NOT_FOUND: { meaning: 'the lab has no pod of this name' },
  ERR_LAB_PROBE_FAILED: { meaning: 'a probe connection failed or its workload gave no valid answer' },
  ERR_LAB_PROBE_SOURCE: { meaning: 'a probe source names no workload in the lab' },
  ERR_LAB_RUNTIME_IMMUTABLE: {
    meaning:
      'annotation weir.dev/runtime cannot change on an existing pod (a lab pod or a runtime container)',
  },
  ERR_LAB_SPEC_CHANGED: { meaning: 'the lab is up with another spec and has pods' },
  ERR_LAB_SPEC_INVALID: { meaning: 'a lab spec (lab.yaml) is invalid' },
  ERR_LAB_SPEC_READ: { meaning: 'a lab spec file cannot be read' },
  ERR_LAB_STATE_CORRUPT: { meaning: "the lab's configuration (lab.json) is not one weir wrote" },
  ERR_LAB_WORKLOAD_IMMUTABLE: { meaning: 'annotation weir.dev/workload cannot change on an existing pod' },
  ERR_LAB_WORKLOAD_START: { meaning: "a pod's, node's or external's workload did not start or become ready" },
  ERR_LAB_WORKLOAD_TIMEOUT: { meaning: 'a workload did not answer its control socket in time' },
  ERR_LAB_WORKLOAD_UNREACHABLE: { meaning: "a workload's control socket cannot be reached" },
  ERR_LB_BACKEND_FAMILY: { meaning: "a service backend's address family differs from its frontend's" },
  ERR_LB_BACKEND_UNKNOWN: { meaning: 'a service names a backend id that is not in weir_lb_backends' },
  ERR_LB_FIELD: { meaning: 'a load-balancer map field is out of range' },
  ERR_LB_MAGLEV_SIZE: { meaning: 'a Maglev table does not have the configured number of entries' },
  ERR_OBSERVE_FILTER: { meaning: 'a flow filter (weir observe, the UI) is malformed' },
  ERR_PACKET_ADDRESS: { meaning: 'a test packet names an invalid IP address' },
  ERR_PACKET_FRAGMENT: { meaning: 'a test packet has an invalid fragment offset' },
  ERR_PACKET_PROTOCOL: { meaning: 'a test packet with a raw payload names no protocol' },
  ERR_PACKET_TRUNCATED: { meaning: 'a frame is shorter than its headers' },
  ERR_POLICY_ENDPOINT_DUPLICATE: { meaning: 'the policy engine was given one endpoint id twice' },
  ERR_POLICY_FIELD_INVALID: { meaning: 'a policy field has an invalid value' },
  ERR_POLICY_FIELD_MISSING: { meaning: 'a required policy field is missing' },
  ERR_POLICY_FIELD_UNKNOWN: { meaning: 'a policy has a field its API does not define' },
  ERR_POLICY_FIELD_UNSUPPORTED: { meaning: 'a policy uses a real API field weir does not implement yet' },
  ERR_POLICY_INPUT_INVALID: { meaning: "the policy engine's input has an invalid address" },
  ERR_POLICY_INVALID_CIDR: { meaning: 'a policy CIDR is malformed' },
  ERR_POLICY_INVALID_ENTITY: { meaning: 'a policy names an unknown Cilium entity' },
  ERR_POLICY_INVALID_PORT: { meaning: 'a policy port or port range is out of range' },
  ERR_POLICY_INVALID_PROTOCOL: { meaning: 'a policy names an unknown protocol' },
  ERR_POLICY_INVALID_SELECTOR: { meaning: 'a label selector in a policy is malformed' },
  ERR_POLICY_KIND_UNKNOWN: { meaning: 'an object given as a policy is not a policy kind' },
  ERR_POLICY_L7_INVALID: {
    meaning: 'an L7 (HTTP) rule is malformed, or sits on a port it cannot apply to (not TCP, no exact port)',
  },
  ERR_POLICY_L7_REGEX: {
    meaning: 'an L7 HTTP rule holds a regular expression RE2 does not accept (method, path or host)',
  },
  ERR_POLICY_L7_UNSUPPORTED: { meaning: 'a policy uses L7 rules weir does not enforce' },
  ERR_POLICY_MAP_OVERFLOW: { meaning: "an endpoint's policy does not fit its policy map (it fails closed)" },
  ERR_POLICY_RULE_INVALID: { meaning: 'a policy rule combines fields that cannot go together' },
  ERR_POLICY_TRACE_HTTP: {
    meaning:
      'a policy trace HTTP request is malformed (--http-method, --http-path, --http-host, --http-header) or not on a TCP port',
  },
  ERR_POLICY_TRACE_NO_PODS: { meaning: 'policy trace -f was given no Pod manifests' },
  ERR_POLICY_TRACE_PEER: { meaning: 'a policy trace peer is not a pod, IP, CIDR, world or host' },
  ERR_POLICY_TRACE_PORT: { meaning: 'a policy trace port is out of range' },
  ERR_POLICY_TRACE_PROTOCOL: { meaning: 'a policy trace protocol is unknown' },
  ERR_PORT_RANGE: { meaning: 'a port range is outside 0..65535 or not ordered' },
  ERR_PROXY_BAD_ANSWER: { meaning: "the node proxy's answer was not the JSON the agent expected" },
  ERR_PROXY_BAD_JSON: { meaning: 'a request body to the node proxy is not JSON' },
  ERR_PROXY_BODY_TOO_LARGE: { meaning: 'a request body to the node proxy is over 64 MiB', http: 413 },
  ERR_PROXY_HTTP_PARSER: {
    meaning: "node's internal HTTP parser (llhttp via _http_common) does not behave as the proxy expects",
  },
  ERR_PROXY_LIMITS: {
    meaning: "a limit of the proxy's HTTP engine is not a positive integer or contradicts another",
  },
  ERR_PROXY_LISTEN: {
    meaning: 'the node proxy cannot listen on a listener port (taken, or no transparent socket)',
  },
  ERR_PROXY_LISTENERS: { meaning: 'a snapshot push to the node proxy names no valid pair of listener ports' },
  ERR_PROXY_NOT_FOUND: {
    meaning: "no route of the node proxy's admin API for this method and path",
    http: 404,
  },
  ERR_PROXY_SNAPSHOT_INVALID: { meaning: 'an L7 policy snapshot sent to the node proxy is malformed' },
  ERR_PROXY_SNAPSHOT_STALE: {
    meaning: 'an L7 policy snapshot is older than the one the node proxy runs (versions only grow)',
    http: 409,
  },
  ERR_PROXY_SOCKET: {
    meaning:
      'a transparent socket of the node proxy cannot be made (socket, setsockopt, bind; the errno is kept)',
  },
  ERR_PROXY_START: { meaning: 'the node proxy exited or did not answer while starting (see its log)' },
  ERR_PROXY_TIMEOUT: { meaning: 'the node proxy did not answer a request in time' },
  ERR_PROXY_UNREACHABLE: { meaning: "nothing answers on the node proxy's admin socket (it is down)" },
  ERR_SERVICE_CIDR: { meaning: 'a service CIDR setting is malformed or of the wrong size' },
  ERR_SERVICE_CIDR_EXHAUSTED: { meaning: 'the service CIDR has no free ClusterIP' },
  ERR_SERVICE_CLUSTERIP_INVALID: {
    meaning: 'spec.clusterIP(s) is not an address or None, or names too many',
  },
  ERR_SERVICE_CLUSTERIP_RANGE: { meaning: 'a given ClusterIP is outside the service CIDR' },
  ERR_SERVICE_CLUSTERIP_TAKEN: { meaning: 'a given ClusterIP belongs to another Service', http: 409 },
  ERR_SERVICE_IDS_EXHAUSTED: { meaning: 'no free backend or reverse-NAT id is left' },
  ERR_SERVICE_IPFAMILYPOLICY_INVALID: {
    meaning: 'spec.ipFamilyPolicy is unknown or contradicts the families',
  },
  ERR_SERVICE_IPFAMILY_INVALID: { meaning: 'spec.ipFamilies is invalid' },
  ERR_SERVICE_IPFAMILY_UNAVAILABLE: {
    meaning: 'a Service asks for an address family the cluster has no CIDR for',
  },
  ERR_SERVICE_IPFAMILY_UNSUPPORTED: {
    meaning: "a NodePort Service without IPv4 (weir's NodePort datapath is IPv4-only)",
  },
  ERR_SERVICE_MAGLEV_SEED: { meaning: 'the Maglev seed is not 12 bytes in base64' },
  ERR_SERVICE_MAGLEV_SIZE: { meaning: "the Maglev table size is not one of Cilium's primes" },
  ERR_SERVICE_NODEPORT_EXHAUSTED: { meaning: 'no free NodePort is left in 30000-32767' },
  ERR_SERVICE_NODEPORT_INVALID: { meaning: 'a nodePort is given on a non-NodePort Service, or twice' },
  ERR_SERVICE_NODEPORT_TAKEN: { meaning: 'a given nodePort belongs to another Service', http: 409 },
  ERR_SERVICE_NOT_FOUND: { meaning: 'no Service of this name has a frontend', http: 404 },
  ERR_SERVICE_NO_MAGLEV: { meaning: 'the frontend has no Maglev table (another algorithm, or no backends)' },
  ERR_SERVICE_PORT_DUPLICATE: { meaning: 'two Service ports share a name, or a port and protocol' },
  ERR_SERVICE_PORT_MISSING: { meaning: 'a Service that is not headless has no ports' },
  ERR_SERVICE_PORT_NAME: { meaning: 'a Service port needs a name (it has several ports)' },
  ERR_SERVICE_SLICE_ADDRESS: { meaning: 'an EndpointSlice address does not match its addressType' },
  ERR_SERVICE_SLICE_SERVICE: { meaning: 'an EndpointSlice lacks its kubernetes.io/service-name label' },
  ERR_STORE_CLOSED: { meaning: 'the Store was used after it was closed' },
  ERR_STORE_COMPACTED: { meaning: 'a watch asked for revisions the Store no longer keeps (list again)' },
  ERR_STORE_CONFLICT: {
    meaning: 'a conditional Store write found the key present, or changed since it was read',
    http: 409,
  },
  ERR_STORE_CORRUPT: { meaning: 'the file Store (snapshot or log) is not one weir wrote' },
  ERR_STORE_ETCD_MISSING: {
    meaning: 'no etcd binary (scripts/install-deps.sh unpacks one, or set WEIR_ETCD)',
  },
  ERR_STORE_ETCD_NAME: { meaning: 'an etcd weir runs must be named weir-…' },
  ERR_STORE_ETCD_NETNS: { meaning: 'the network namespace etcd should run in does not exist' },
  ERR_STORE_ETCD_START: { meaning: 'etcd exited or did not serve clients in time (its log says why)' },
  ERR_STORE_IO: {
    meaning: 'the file Store could not make a write durable; it refuses everything after (fail closed)',
    http: 500,
  },
  ERR_STORE_LEASE: { meaning: 'a Store lease expired or was revoked (its keys are gone)' },
  ERR_STORE_LOCKED: {
    meaning: 'another live process holds the file Store (one process per node: its agent)',
  },
  ERR_STORE_UNREACHABLE: { meaning: 'etcd cannot be reached', http: 503 },
  ERR_STORE_VALUE: { meaning: 'a Store key is malformed or its value is not a JSON object' },
  ERR_STORE_WATCH_BEHIND: { meaning: 'a Store watch did not reach a revision in time', http: 503 },
  ERR_UI_AGENT: { meaning: "the UI's connection to the agent failed" },
  ERR_UI_HOST: { meaning: 'a UI request has an unexpected Host header (DNS rebinding guard)' },
  ERR_UI_INTERNAL: { meaning: 'an unexpected failure inside the UI server' },
  ERR_UI_LISTEN: { meaning: 'the UI cannot listen on --listen (malformed, not loopback, or taken)' },
  ERR_UI_METHOD: { meaning: 'the UI serves only GET and HEAD' },
  ERR_UI_NOT_FOUND: { meaning: 'nothing is served at this UI path' },
  ERR_UI_QUERY: { meaning: 'a UI query parameter is out of range' },
  ERR_UI_STREAM_ENDED: { meaning: 'the agent ended the flow stream the UI follows' },
} as const satisfies Record<`ERR_${string}`, ErrorCodeSpec>;

export type ErrorCode = keyof typeof errorCodes;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(errorCodes, code);
}

/** The agent API's HTTP status for an error of `code`. */
export function httpStatus(code: ErrorCode): number {
  const spec: ErrorCodeSpec = errorCodes[code];
  return spec.http ?? 400;
}
