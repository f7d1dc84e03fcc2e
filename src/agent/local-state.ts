// What a node's agent keeps for itself, in the same Store as everything else (weir/local/v1/<node>/…):
// its settings, the identity allocator's state, the endpoint ids it handed out, the service load
// balancer's stable ids and the FQDN cache (what the DNS proxy learned). A restarted agent resumes
// with the same identities, endpoint ids and toFQDNs selections and so rewrites nothing in the
// kernel. (Cluster-wide identity allocation is later work: then
// identities move to weir/state/identities/v1/….)
import { localKey } from '../cluster/keys.js';
import type { JsonObject, Store } from '../store/index.js';
import { defaultSettings, isPersisted, type AgentSettings } from './settings.js';

export interface EndpointIds {
  /** "namespace/pod" -> endpoint id */
  ids: Record<string, number>;
  next: number;
}

export interface LbIds {
  backends: Record<string, number>;
  revNat: Record<string, number>;
}

type Part = 'settings' | 'identities' | 'endpoints' | 'lb' | 'fqdn';

/** The FQDN cache (agent/fqdn-cache.ts FqdnEntry): toFQDNs selections survive a restart. */
export interface FqdnEntryState {
  endpointId: number;
  name: string;
  ip: string;
  ttl: number;
  learnedAt: number;
  expiresAt: number;
}

export class LocalState {
  settings: AgentSettings | undefined;
  identities: unknown;
  endpoints: EndpointIds = { ids: {}, next: 1 };
  lb: LbIds = { backends: {}, revNat: {} };
  /** What the DNS proxy learned (undefined: never saved). */
  fqdn: FqdnEntryState[] | undefined;
  /** The JSON last written (or read) per part: unchanged parts are not written again. */
  private readonly written = new Map<Part, string>();

  private constructor(
    readonly store: Store,
    readonly node: string,
  ) {}

  static async load(store: Store, node: string): Promise<LocalState> {
    const s = new LocalState(store, node);
    const get = async (part: Part) => {
      const kv = await store.get(localKey(node, part));
      if (kv) s.written.set(part, JSON.stringify(kv.value));
      return kv?.value;
    };
    s.settings = (await get('settings')) as AgentSettings | undefined;
    s.identities = (await get('identities'))?.state;
    const eps = (await get('endpoints')) as EndpointIds | undefined;
    if (eps) s.endpoints = eps;
    const lb = (await get('lb')) as LbIds | undefined;
    if (lb) s.lb = lb;
    const fqdn = (await get('fqdn')) as { entries?: FqdnEntryState[] } | undefined;
    if (Array.isArray(fqdn?.entries)) s.fqdn = fqdn.entries;
    return s;
  }

  /**
   * The stored settings, overridden by those given (kept for the next start by save()); a setting
   * neither given nor stored has its default. Only persisted settings are kept.
   */
  mergeSettings(given: Partial<AgentSettings>): AgentSettings {
    const defined = Object.fromEntries(
      Object.entries({ ...this.settings, ...given }).filter(([k, v]) => v !== undefined && isPersisted(k)),
    );
    this.settings = { ...defaultSettings, ...defined } as AgentSettings;
    return this.settings;
  }

  endpointId(podKey: string): number {
    let id = this.endpoints.ids[podKey];
    if (id === undefined) {
      id = this.endpoints.next++;
      this.endpoints.ids[podKey] = id;
    }
    return id;
  }

  releaseEndpoint(podKey: string): void {
    delete this.endpoints.ids[podKey];
  }

  /** Writes the parts that changed since they were last written, in one transaction. */
  async save(): Promise<void> {
    const parts: [Part, JsonObject | undefined][] = [
      ['settings', this.settings as unknown as JsonObject | undefined],
      ['identities', this.identities === undefined ? undefined : { state: this.identities }],
      ['endpoints', this.endpoints as unknown as JsonObject],
      ['lb', this.lb as unknown as JsonObject],
      ['fqdn', this.fqdn === undefined ? undefined : ({ entries: this.fqdn } as unknown as JsonObject)],
    ];
    const ops = [];
    const texts = new Map<Part, string>();
    for (const [part, value] of parts) {
      if (value === undefined) continue;
      const text = JSON.stringify(value);
      if (this.written.get(part) === text) continue;
      texts.set(part, text);
      ops.push({ op: 'put' as const, key: localKey(this.node, part), value });
    }
    if (ops.length === 0) return;
    await this.store.txn(ops);
    for (const [part, text] of texts) this.written.set(part, text);
  }
}
