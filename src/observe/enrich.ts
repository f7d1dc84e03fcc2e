// Enrichment: the names behind the numbers of a datapath event. An endpoint id or address becomes
// a pod (namespace, name, labels), an identity becomes its labels (pods, reserved peers, CIDRs), a
// policy cookie becomes the rule that decided. The agent implements EnrichmentSource; this module
// never imports the agent.
import { formatRuleRef, type RuleRef } from '../policy/api/types.js';
import { reservedLabels } from '../identity/reserved.js';
import type { FlowEndpoint, FlowPolicy } from './flow.js';

export interface EndpointMeta {
  id: number;
  namespace: string;
  pod: string;
  identity: number;
  labels: string[];
}

export interface EnrichmentSource {
  endpointByIfindex(ifindex: number): EndpointMeta | undefined;
  endpointByIp(ip: string): EndpointMeta | undefined;
  /** Labels of an allocated (pod or CIDR) identity. */
  identityLabels(identity: number): string[] | undefined;
  rule(cookie: number): RuleRef | undefined;
}

export class Enricher {
  constructor(private readonly src: EnrichmentSource) {}

  /**
   * One side of a flow. `local` is the endpoint the event was observed at, when this side is it;
   * other addresses are looked up among the node's endpoints, then by identity.
   */
  endpoint(ip: string, identity: number, local?: EndpointMeta): FlowEndpoint {
    const ep = local ?? this.src.endpointByIp(ip);
    if (ep)
      return {
        ID: ep.id,
        identity: identity || ep.identity,
        namespace: ep.namespace,
        labels: [...ep.labels],
        pod_name: ep.pod,
      };
    return { ID: 0, identity, labels: this.labels(identity) };
  }

  labels(identity: number): string[] {
    const reserved = reservedLabels(identity);
    if (reserved.length > 0) return reserved;
    return [...(this.src.identityLabels(identity) ?? [])];
  }

  localEndpoint(ifindex: number, ip: string): EndpointMeta | undefined {
    return this.src.endpointByIfindex(ifindex) ?? this.src.endpointByIp(ip);
  }

  /** The rule behind a cookie (0: no rule decided, e.g. default deny). */
  policy(cookie: number): { ref: RuleRef; policy: FlowPolicy } | undefined {
    if (cookie === 0) return undefined;
    const ref = this.src.rule(cookie);
    if (!ref) return undefined;
    return {
      ref,
      policy: {
        name: ref.name,
        ...(ref.namespace ? { namespace: ref.namespace } : {}),
        kind: ref.kind,
        rule: formatRuleRef(ref),
      },
    };
  }
}
