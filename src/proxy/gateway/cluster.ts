// One backend of a BackendTrafficPolicy as Envoy runs an upstream cluster: its own HTTP/1.1
// connection pool with the circuit breaker's thresholds, outlier detection over its endpoints,
// the retry limit (maxParallelRetries or a retry budget) and the connection timeouts.
//
//   admit ── maxParallelRequests (requests in flight, pending included) ── else 503 UO
//   connection ── a free one, or a new one under maxConnections ── else wait as pending
//                 (maxPendingRequests, else 503 UO)
//   pick ── a random endpoint not ejected (all of them when fewer than half are healthy: Envoy's
//           panic threshold)
//   outcome ── consecutive 5xx / gateway errors (local-origin errors count as both) eject the
//              endpoint for baseEjectionTime × its ejections, within maxEjectionPercent
//
// Envoy Gateway gives every backendRef of every rule its own counters; weir keys a cluster by
// policy and backend (Service port).
import http, { type ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import type { BackendRetry, BackendTimeout, CircuitBreaker, PassiveHealthCheck } from '../../gateway/api.js';
import type { GatewayMetrics } from './metrics.js';
import { upstreamAgent, type UpstreamTunnel } from './upstream.js';

/** Envoy's defaults when a policy sets no circuit breaker (max_retries: 3 concurrent retries). */
const envoyDefaults: CircuitBreaker = {
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxParallelRequests: 1024,
  maxParallelRetries: 3,
};
/** Envoy's max_ejection_time default (Envoy Gateway does not expose it). */
const MAX_EJECTION_MS = 300_000;

export interface ClusterConfig {
  circuitBreaker?: CircuitBreaker;
  passiveHealthCheck?: PassiveHealthCheck;
  retry?: BackendRetry;
  timeout?: BackendTimeout;
}

interface Host {
  c5xx: number;
  cGateway: number;
  ejectedUntil: number;
  /** Ejections not yet forgiven (Envoy decrements it each interval the host stays healthy). */
  multiplier: number;
  /** When it was last returned (or first seen): the healthy time that forgives ejections. */
  healthySince: number;
}

/** What one attempt did, as outlier detection counts it. */
export type Outcome = { code: number } | { local: 'connect-failure' | 'reset' | 'timeout' };

interface Waiter {
  resolve(ok: boolean): void;
}

const kSocket = Symbol('weir.cluster.socket');
interface Tracked {
  idle?: NodeJS.Timeout;
  maxDuration?: NodeJS.Timeout;
  draining?: boolean;
}
type TrackedSocket = Socket & { [kSocket]?: Tracked };

export class Cluster {
  readonly agent: http.Agent;
  /** Requests admitted and not finished (Envoy's active + pending requests). */
  inFlight = 0;
  /** Requests holding an upstream connection. */
  active = 0;
  /** Retries scheduled or running. */
  retries = 0;
  readonly #pending: Waiter[] = [];
  readonly #sockets = new Set<TrackedSocket>();
  readonly #hosts = new Map<string, Host>();

  constructor(
    readonly backend: string,
    public config: ClusterConfig,
    private readonly metrics: GatewayMetrics,
    tunnel?: UpstreamTunnel,
  ) {
    this.agent = upstreamAgent({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' }, tunnel);
    // A connection back in the pool: closed when idle too long, or at once when past its duration.
    this.agent.on('free', (s: TrackedSocket) => {
      const t = s[kSocket];
      if (!t || s.destroyed) return;
      if (t.draining) return void s.destroy();
      const idle = this.config.timeout?.idleMs;
      if (idle)
        t.idle = setTimeout(() => {
          this.metrics.timeouts.inc({ backend: this.backend, kind: 'idle' });
          s.destroy();
        }, idle);
    });
  }

  get limits(): CircuitBreaker {
    return this.config.circuitBreaker ?? envoyDefaults;
  }

  get pending(): number {
    return this.#pending.length;
  }

  get open(): number {
    return this.#sockets.size;
  }

  /** A request enters (maxParallelRequests); false = overflow, answered 503. */
  admit(): boolean {
    if (this.inFlight >= this.limits.maxParallelRequests) {
      this.metrics.overflow.inc({ backend: this.backend, limit: 'requests' });
      return false;
    }
    this.inFlight++;
    return true;
  }

  leave(): void {
    this.inFlight--;
  }

  /**
   * A connection for one HTTP/1.1 attempt: at once when fewer than maxConnections are busy, else
   * after waiting as pending (false when maxPendingRequests are already waiting, or the wait
   * outlived `waitMs`). Every true must be given back with release().
   */
  async connection(waitMs: number): Promise<boolean | 'timeout'> {
    if (this.active < this.limits.maxConnections) {
      this.active++;
      return true;
    }
    this.metrics.cxOverflow.inc({ backend: this.backend });
    if (this.#pending.length >= this.limits.maxPendingRequests) {
      this.metrics.overflow.inc({ backend: this.backend, limit: 'pending' });
      return false;
    }
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const w: Waiter = {
        resolve: (ok) => {
          clearTimeout(timer);
          resolve(ok);
        },
      };
      if (Number.isFinite(waitMs))
        timer = setTimeout(() => {
          const i = this.#pending.indexOf(w);
          if (i >= 0) this.#pending.splice(i, 1);
          resolve('timeout');
        }, waitMs);
      this.#pending.push(w);
    });
  }

  release(): void {
    const next = this.#pending.shift();
    if (next) next.resolve(true);
    else this.active--;
  }

  /** A retry may start (maxParallelRetries, or the retry budget when set); it holds a slot till retryDone(). */
  retryAllowed(): boolean {
    const b = this.config.retry?.budget;
    const limit = b
      ? Math.max(b.minRetryConcurrency, Math.floor((b.percent / 100) * this.inFlight))
      : this.limits.maxParallelRetries;
    if (this.retries >= limit) {
      this.metrics.overflow.inc({ backend: this.backend, limit: 'retries' });
      return false;
    }
    this.retries++;
    return true;
  }

  retryDone(): void {
    this.retries--;
  }

  /**
   * Sockets of the pool: counted, bounded by the connect timeout and maxConnectionDuration; a
   * free connection to another endpoint is closed when a new one is needed at maxConnections.
   */
  track(req: ClientRequest, ep: string, onConnectTimeout: () => void): void {
    req.on('socket', (sock) => {
      const s = sock as TrackedSocket;
      const t = s[kSocket];
      if (t) {
        clearTimeout(t.idle);
        return;
      }
      const tracked: Tracked = {};
      s[kSocket] = tracked;
      this.#sockets.add(s);
      this.metrics.cxTotal.inc({ backend: this.backend });
      if (this.#sockets.size > this.limits.maxConnections) this.#evictFree(ep);
      s.once('close', () => {
        this.#sockets.delete(s);
        clearTimeout(tracked.idle);
        clearTimeout(tracked.maxDuration);
      });
      const to = this.config.timeout;
      if (to?.connectMs && s.connecting) {
        const timer = setTimeout(() => {
          this.metrics.timeouts.inc({ backend: this.backend, kind: 'connect' });
          onConnectTimeout();
          s.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' }));
        }, to.connectMs);
        s.once('connect', () => clearTimeout(timer));
        s.once('close', () => clearTimeout(timer));
      }
      if (to?.maxConnectionDurationMs)
        tracked.maxDuration = setTimeout(() => {
          this.metrics.timeouts.inc({ backend: this.backend, kind: 'max_duration' });
          // Drained as Envoy does: a busy connection finishes its request, then closes.
          if (this.#isFree(s)) s.destroy();
          else tracked.draining = true;
        }, to.maxConnectionDurationMs);
    });
  }

  #isFree(s: Socket): boolean {
    return Object.values(this.agent.freeSockets).some((l) => l?.includes(s));
  }

  #evictFree(ep: string): void {
    for (const [name, list] of Object.entries(this.agent.freeSockets))
      if (!name.startsWith(`${ep}:`) && list && list.length > 0) {
        list[0]?.destroy();
        return;
      }
  }

  // ---- outlier detection ----

  #host(ep: string, now: number): Host {
    let h = this.#hosts.get(ep);
    if (!h)
      this.#hosts.set(ep, (h = { c5xx: 0, cGateway: 0, ejectedUntil: 0, multiplier: 0, healthySince: now }));
    return h;
  }

  #ejected(h: Host, now: number): boolean {
    if (h.ejectedUntil === 0) return false;
    if (now < h.ejectedUntil) return true;
    h.ejectedUntil = 0;
    h.healthySince = now;
    return false;
  }

  /** Endpoints traffic may go to now: the ones not ejected, or all in panic (< 50 % healthy). */
  healthy(eps: string[]): string[] {
    if (!this.config.passiveHealthCheck) return eps;
    const now = performance.now();
    const ok = eps.filter((e) => !this.#ejected(this.#host(e, now), now));
    this.metrics.ejectionsActive.set({ backend: this.backend }, eps.length - ok.length);
    return ok.length * 2 < eps.length ? eps : ok;
  }

  /** Ejected endpoints of `eps` now (for status and tests). */
  ejected(eps: string[]): string[] {
    const now = performance.now();
    return eps.filter((e) => {
      const h = this.#hosts.get(e);
      return h ? this.#ejected(h, now) : false;
    });
  }

  /** One attempt's result on endpoint `ep` of `eps` (the Service's ready endpoints now). */
  outcome(ep: string, eps: string[], o: Outcome): void {
    const p = this.config.passiveHealthCheck;
    if (!p) return;
    const now = performance.now();
    const h = this.#host(ep, now);
    if (this.#ejected(h, now)) return;
    const code = 'code' in o ? o.code : 503;
    if (code < 500) {
      h.c5xx = 0;
      h.cGateway = 0;
      return;
    }
    h.c5xx++;
    if ('local' in o || code === 502 || code === 503 || code === 504) h.cGateway++;
    else h.cGateway = 0;
    const reason =
      p.consecutive5xx > 0 && h.c5xx >= p.consecutive5xx
        ? 'consecutive_5xx'
        : p.consecutiveGateway > 0 && h.cGateway >= p.consecutiveGateway
          ? 'consecutive_gateway_failure'
          : undefined;
    if (!reason) return;
    h.c5xx = 0;
    h.cGateway = 0;
    // maxEjectionPercent, but the first ejection is always allowed (Envoy).
    const already = eps.filter((e) => e !== ep && this.#ejected(this.#host(e, now), now)).length;
    if (already > 0 && (already * 100) / eps.length >= p.maxEjectionPercent) {
      this.metrics.ejectionsOverflow.inc({ backend: this.backend });
      return;
    }
    // Ejections are forgiven one per interval the host stayed healthy since it last returned.
    h.multiplier = Math.max(0, h.multiplier - Math.floor((now - h.healthySince) / p.intervalMs)) + 1;
    h.ejectedUntil =
      now + Math.min(p.baseEjectionMs * h.multiplier, Math.max(MAX_EJECTION_MS, p.baseEjectionMs));
    this.metrics.ejections.inc({ backend: this.backend, reason });
    this.metrics.ejectionsActive.set({ backend: this.backend }, already + 1);
  }

  close(): void {
    for (const w of this.#pending.splice(0)) w.resolve(false);
    this.agent.destroy();
  }
}
