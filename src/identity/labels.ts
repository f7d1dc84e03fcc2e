// Cilium's label form: "source:key=value". A security identity is the sorted set of these.
// Sources: k8s (pod and namespace labels), reserved (host, world, ...), cidr (CIDR identities).

export interface Label {
  source: string;
  key: string;
  value: string;
}

export const labelSources = ['k8s', 'reserved', 'cidr', 'container', 'any', 'unspec'] as const;

export function formatLabel(l: Label): string {
  return l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

/**
 * Parses "source:key=value". A missing source becomes `defaultSource`. Kubernetes keys never
 * hold ':', so the first ':' always ends the source; CIDR keys (cidr:10.0.0.0/8) hold ':' only
 * for IPv6, where the key is everything after "cidr:".
 */
export function parseLabel(s: string, defaultSource = 'unspec'): Label {
  const eq = s.indexOf('=');
  const kv = eq >= 0 ? s.slice(0, eq) : s;
  const value = eq >= 0 ? s.slice(eq + 1) : '';
  const colon = kv.indexOf(':');
  if (colon < 0) return { source: defaultSource, key: kv, value };
  return { source: kv.slice(0, colon), key: kv.slice(colon + 1), value };
}

/** Sorted, de-duplicated label strings: the canonical form an identity is keyed by. */
export function sortLabels(labels: readonly Label[]): string[] {
  return [...new Set(labels.map(formatLabel))].sort();
}

/** Labels indexed for selector matching: by "source:key" and by key alone (source any). */
export class LabelIndex {
  readonly bySourceKey = new Map<string, string>();
  readonly byKey = new Map<string, string>();
  constructor(readonly labels: readonly Label[]) {
    for (const l of labels) {
      this.bySourceKey.set(`${l.source}:${l.key}`, l.value);
      if (!this.byKey.has(l.key)) this.byKey.set(l.key, l.value);
    }
  }

  /** Value of the label, or undefined if absent. Source 'any' matches every source. */
  get(source: string, key: string): string | undefined {
    return source === 'any' ? this.byKey.get(key) : this.bySourceKey.get(`${source}:${key}`);
  }
}
