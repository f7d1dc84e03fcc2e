// The agent's FQDN cache (Cilium's per-endpoint DNS cache): what the DNS proxy learned from
// allowed answers, per endpoint, name and address, each with its expiry (the record's TTL, at
// least --tofqdns-min-ttl). toFQDNs selects from the node-wide union (view()); an address stays
// while any endpoint's entry for it is alive, or while a connection to it is open (the GC asks).
// At most --tofqdns-endpoint-max-ip-per-hostname addresses per endpoint and name: the oldest go
// first, counted.
import { normalizeName, patternRegex } from '../policy/l7/dns-match.js';

export interface FqdnEntry {
  endpointId: number;
  /** Normalized: lower case, no trailing dot. */
  name: string;
  ip: string;
  /** Seconds, as the answer gave it (before the minimum). */
  ttl: number;
  learnedAt: number;
  expiresAt: number;
}

export interface FqdnCacheOptions {
  /** Seconds: the shortest lifetime of a learned address (Cilium's --tofqdns-min-ttl). */
  minTtl: number;
  /** Addresses per endpoint and name (Cilium's --tofqdns-endpoint-max-ip-per-hostname). */
  maxIpsPerName: number;
  now?: () => number;
}

export class FqdnCache {
  /** "endpoint|name" -> ip -> entry */
  private readonly byKey = new Map<string, Map<string, FqdnEntry>>();
  evicted = 0;
  expired = 0;

  constructor(private readonly o: FqdnCacheOptions) {}

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  /**
   * Records an allowed answer. `changed`: a name/address pair the node did not hold before
   * (toFQDNs selections may change: the caller regenerates before releasing the answer).
   */
  learn(endpointId: number, qname: string, answers: { ip: string; ttl: number }[]): { changed: boolean } {
    const name = normalizeName(qname);
    const before = this.pairs();
    const now = this.now();
    const key = `${endpointId}|${name}`;
    let m = this.byKey.get(key);
    if (!m) this.byKey.set(key, (m = new Map()));
    for (const a of answers) {
      const life = Math.max(a.ttl, this.o.minTtl) * 1000;
      const old = m.get(a.ip);
      // A fresh answer renews the entry and makes it the newest.
      if (old) m.delete(a.ip);
      m.set(a.ip, { endpointId, name, ip: a.ip, ttl: a.ttl, learnedAt: now, expiresAt: now + life });
    }
    while (m.size > this.o.maxIpsPerName) {
      const oldest = m.keys().next().value as string;
      m.delete(oldest);
      this.evicted++;
    }
    if (m.size === 0) this.byKey.delete(key);
    const after = this.pairs();
    return { changed: [...after].some((p) => !before.has(p)) || after.size !== before.size };
  }

  private pairs(): Set<string> {
    const out = new Set<string>();
    for (const m of this.byKey.values()) for (const e of m.values()) out.add(`${e.name}|${e.ip}`);
    return out;
  }

  /** The node-wide names and addresses toFQDNs selects from. */
  view(): { name: string; ips: string[] }[] {
    const byName = new Map<string, Set<string>>();
    for (const m of this.byKey.values())
      for (const e of m.values()) {
        let s = byName.get(e.name);
        if (!s) byName.set(e.name, (s = new Set()));
        s.add(e.ip);
      }
    return [...byName]
      .sort((a, b) => a[0].localeCompare(b[0]))
      .map(([name, ips]) => ({ name, ips: [...ips].sort() }));
  }

  /**
   * Removes expired entries, except those whose address has an open connection (`inUse`): they
   * stay until it closes. Returns how many went.
   */
  gc(inUse: (ip: string) => boolean): number {
    const now = this.now();
    let n = 0;
    for (const [key, m] of this.byKey) {
      for (const [ip, e] of m)
        if (e.expiresAt <= now && !inUse(ip)) {
          m.delete(ip);
          n++;
        }
      if (m.size === 0) this.byKey.delete(key);
    }
    this.expired += n;
    return n;
  }

  /** What one endpoint holds for one name: each address and when it expires (ms since the epoch). */
  held(endpointId: number, qname: string): { ip: string; expiresAt: number }[] {
    const m = this.byKey.get(`${endpointId}|${normalizeName(qname)}`);
    return m ? [...m.values()].map((e) => ({ ip: e.ip, expiresAt: e.expiresAt })) : [];
  }

  /**
   * Puts back entries a previous run saved (list()), oldest first per endpoint and name, as they
   * were: expired ones too (the GC keeps those with an open connection, drops the others).
   */
  restore(entries: readonly FqdnEntry[]): void {
    const sorted = [...entries].sort((a, b) => a.learnedAt - b.learnedAt);
    for (const e of sorted) {
      const name = normalizeName(e.name);
      const key = `${e.endpointId}|${name}`;
      let m = this.byKey.get(key);
      if (!m) this.byKey.set(key, (m = new Map()));
      m.delete(e.ip);
      m.set(e.ip, { ...e, name });
      while (m.size > this.o.maxIpsPerName) {
        m.delete(m.keys().next().value as string);
        this.evicted++;
      }
    }
  }

  /** Every entry, by endpoint, name, address. */
  list(): FqdnEntry[] {
    return [...this.byKey.values()]
      .flatMap((m) => [...m.values()])
      .sort(
        (a, b) => a.endpointId - b.endpointId || a.name.localeCompare(b.name) || a.ip.localeCompare(b.ip),
      );
  }

  /** Removes the entries whose name matches `pattern` (all without one); returns how many. */
  clean(pattern?: string): number {
    const re = pattern ? patternRegex(pattern) : undefined;
    let n = 0;
    for (const [key, m] of this.byKey) {
      const name = key.slice(key.indexOf('|') + 1);
      if (re && !re.test(name)) continue;
      n += m.size;
      this.byKey.delete(key);
    }
    return n;
  }

  /** When the next entry expires (ms since the epoch), if any. */
  nextExpiry(): number | undefined {
    let next: number | undefined;
    for (const m of this.byKey.values())
      for (const e of m.values()) if (next === undefined || e.expiresAt < next) next = e.expiresAt;
    return next;
  }
}
