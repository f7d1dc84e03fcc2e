// The DNS proxy's side of toFQDNs learning: what the agent already holds, so that most answers
// skip the agent entirely.
//
// The agent's FQDN cache (src/agent/fqdn-cache.ts) is per endpoint, name and address. After each
// learn the agent says what it now holds for that endpoint and name (address, expiry); the proxy
// keeps that. An answer whose every address the agent holds for that endpoint and name, with more
// than `marginMs` of life left, brings nothing new for any policy: it is released at once and the
// renewal (its fresh TTL) goes to the agent afterwards, coalesced per endpoint and name, in the
// next batch. Any other answer waits for the agent (the ordering guarantee: a new name/address a
// toFQDNs selects is in the ipcache and policy maps before the pod sees it). Learns are
// pipelined: one request to the agent at a time; what arrives meanwhile goes in the next one.
//
// What the proxy keeps can only be stale if the agent forgot something while it still had life
// left: `weir fqdn cache clean` and an agent restart. The agent then calls forget() (admin API)
// before it answers; the agent's GC only drops expired entries, which the proxy skips anyway.
import type { Packet } from 'dns-packet';
import { normalizeName } from '../../policy/l7/dns-match.js';

export interface LearnItem {
  endpointId: number;
  name: string;
  answers: { ip: string; ttl: number }[];
}

/** What the agent holds for one endpoint and name after a learn (expiry in ms since the epoch). */
export type Held = { ip: string; expiresAt: number }[];

export interface FqdnLearnerOptions {
  /** Sends a batch to the agent; resolves once it is in force, with what is held per item. */
  send(items: LearnItem[]): Promise<Held[]>;
  /** Life an entry must have left to skip the agent (covers the renewal and the agent's GC). */
  marginMs?: number;
  /** How long renewals wait to be sent with others. */
  renewAfterMs?: number;
  now?: () => number;
  onError?(err: unknown, items: number): void;
}

interface Waiter {
  item: LearnItem;
  resolve(): void;
  reject(err: unknown): void;
}

/** Longest CNAME chain followed in an answer. */
const MAX_CHAIN = 16;

/**
 * What one allowed answer teaches toFQDNs (Cilium's behaviour): its A and AAAA addresses, for the
 * queried name and for every name of the CNAME chain from it, with the lowest TTL along the chain.
 * Addresses owned by names outside the chain (nothing a resolver would use) are not learned.
 */
export function learnItemsOf(endpointId: number, qname: string, answer: Packet): LearnItem[] {
  const rrs = (answer.answers ?? []) as { name: string; type: string; ttl?: number; data: unknown }[];
  const chain = [normalizeName(qname)];
  let ttl = Infinity;
  for (let hop = 0; hop < MAX_CHAIN; hop++) {
    const last = chain[chain.length - 1] as string;
    const c = rrs.find((r) => r.type === 'CNAME' && normalizeName(r.name) === last);
    if (!c) break;
    const target = normalizeName(String(c.data));
    if (chain.includes(target)) break;
    chain.push(target);
    ttl = Math.min(ttl, c.ttl ?? 0);
  }
  const owners = new Set(chain);
  const answers = rrs
    .filter((r) => (r.type === 'A' || r.type === 'AAAA') && owners.has(normalizeName(r.name)))
    .map((r) => ({ ip: String(r.data), ttl: Math.min(r.ttl ?? 0, ttl) }));
  if (answers.length === 0) return [];
  return chain.map((name) => ({ endpointId, name, answers }));
}

/** Names known held beyond which the expired ones are swept (the map stays bounded). */
const SWEEP_ABOVE = 4096;
const MARGIN_MS = 5000;
const RENEW_AFTER_MS = 200;
/** Items per request to the agent. */
const MAX_BATCH = 512;

export class FqdnLearner {
  /** "endpoint|name" -> ip -> expiresAt, as the agent last said. */
  readonly #known = new Map<string, Map<string, number>>();
  /** Answers waiting for the agent (released once a batch holding them returns). */
  #waiting: Waiter[] = [];
  /** Renewals (nobody waits), coalesced per endpoint and name: the latest answer. */
  readonly #renew = new Map<string, LearnItem>();
  #inflight = false;
  #timer: NodeJS.Timeout | undefined;
  /** Bumped by forget(): a batch sent before it does not refill what it cleared. */
  #generation = 0;
  readonly stats = { skipped: 0, waited: 0, batches: 0, renewals: 0, forgotten: 0 };

  constructor(private readonly o: FqdnLearnerOptions) {}

  #now(): number {
    return (this.o.now ?? Date.now)();
  }

  /**
   * Resolves when the answer may be released to the pod: at once when the agent holds all of it
   * already, else once the agent has it in force. One answer may teach several names (the CNAME
   * chain): they go to the agent together.
   */
  learn(...items: LearnItem[]): Promise<void> {
    const until = this.#now() + (this.o.marginMs ?? MARGIN_MS);
    const waits: Promise<void>[] = [];
    for (const item of items) {
      if (item.answers.length === 0) continue;
      const key = `${item.endpointId}|${normalizeName(item.name)}`;
      const held = this.#known.get(key);
      if (held && item.answers.every((a) => (held.get(a.ip) ?? 0) > until)) {
        this.stats.skipped++;
        this.#renew.set(key, item);
        this.#later();
        continue;
      }
      this.stats.waited++;
      waits.push(new Promise<void>((resolve, reject) => this.#waiting.push({ item, resolve, reject })));
    }
    if (this.#known.size > SWEEP_ABOVE) this.#sweep();
    if (waits.length === 0) return Promise.resolve();
    this.#flush();
    return Promise.all(waits).then(() => undefined);
  }

  /** Drops everything the proxy knew the agent holds (the agent forgot some of it). */
  forget(): number {
    const n = [...this.#known.values()].reduce((s, m) => s + m.size, 0);
    this.#known.clear();
    this.#generation++;
    this.stats.forgotten += n;
    return n;
  }

  /** Entries the proxy knows the agent holds. */
  size(): number {
    return [...this.#known.values()].reduce((s, m) => s + m.size, 0);
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Sends what waits (and the renewals with it), one request at a time. */
  #flush(): void {
    if (this.#inflight) return;
    if (this.#waiting.length === 0 && this.#renew.size === 0) return;
    const waiters = this.#waiting.splice(0, MAX_BATCH);
    const renewals = [...this.#renew.values()].slice(0, MAX_BATCH);
    for (const r of renewals) this.#renew.delete(`${r.endpointId}|${normalizeName(r.name)}`);
    const items = [...waiters.map((w) => w.item), ...renewals];
    this.#inflight = true;
    this.stats.batches++;
    this.stats.renewals += renewals.length;
    const generation = this.#generation;
    void this.o
      .send(items)
      .then(
        (held) => {
          if (generation === this.#generation)
            items.forEach((it, i) => {
              const h = held[i];
              if (h)
                this.#known.set(
                  `${it.endpointId}|${normalizeName(it.name)}`,
                  new Map(h.map((x) => [x.ip, x.expiresAt])),
                );
            });
          for (const w of waiters) w.resolve();
        },
        (err: unknown) => {
          // Nothing is known to be held any more for these names: the next answers wait.
          for (const it of items) this.#known.delete(`${it.endpointId}|${normalizeName(it.name)}`);
          this.o.onError?.(err, items.length);
          for (const w of waiters) w.reject(err);
        },
      )
      .finally(() => {
        this.#inflight = false;
        if (this.#waiting.length > 0) this.#flush();
        else if (this.#renew.size > 0) this.#later();
      });
  }

  /** Forgets the names whose every address expired at the agent. */
  #sweep(): void {
    const now = this.#now();
    for (const [key, m] of this.#known) if (![...m.values()].some((t) => t > now)) this.#known.delete(key);
  }

  /** Renewals go out within renewAfterMs. */
  #later(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, this.o.renewAfterMs ?? RENEW_AFTER_MS);
    this.#timer.unref();
  }
}
