// The agent's mutual authentication (Cilium's auth manager; docs/mtls.md):
//
//   SVIDs     one X.509-SVID per cluster identity in use (256..65535: pods' identities), issued
//             by the lab CA with --svid-ttl, renewed at half its life (±1 % jitter) — the next
//             handshake presents the new one, nothing established is touched — and revoked when
//             the identity is released (its serials refused by the listener from then on, its
//             weir_auth entries deleted).
//   listener  the node's AuthListener on <node IP>:--auth-listener-port.
//   requests  a drop with 189 (the flow pipeline calls `required`) asks for a handshake of the
//             pair: this agent dials the listener of the peer's node (node 0: its own), with the
//             source's SVID, expecting the destination's; on success weir_auth holds the pair until
//             the earlier notAfter of the two certificates. A renewal handshakes the pairs of that
//             identity again, so an authenticated pair never lapses while both are in use.
//   expiry    entries past their expiry, or of an identity without an SVID, are deleted.
import type { Logger as Pino } from 'pino';
import { CertificateAuthority, summarize, type Svid, type SvidSummary } from '../auth/ca.js';
import { AuthListener, authenticate, type AuthListenerCounters } from '../auth/handshake.js';
import { serviceAccountSpiffeId } from '../auth/spiffe.js';
import type { AuthMap, AuthPair } from '../datapath/maps/auth/index.js';
import { NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL } from '../identity/pod-labels.js';
import { WeirError } from '../shared/errors.js';

/** Identities that get SVIDs: Cilium's cluster range (pods), not reserved or CIDR identities. */
const isWorkload = (id: number) => id >= 256 && id <= 0xffff;
const TICK_MS = 1000;
/** Revoked serials kept (an SVID lives --svid-ttl at most; these outlive any of them in practice). */
const REVOKED_KEPT = 65536;

export interface AuthManagerOptions {
  ca: CertificateAuthority;
  trustDomain: string;
  svidTtl: number;
  /** The node IP and port of this node's listener (also what node 0 is dialled at). */
  listen: { host: string; port: number };
  map: AuthMap;
  /** The identities in use, with their labels. */
  identities(): { id: number; labels: string[] }[];
  log: Pino;
}

export interface AuthPairRow extends AuthPair {
  expires: string;
  valid: boolean;
}

export interface AuthStatus {
  trustDomain: string;
  listener: string;
  svids: number;
  handshakes: { ok: number; failed: number };
  counters: AuthListenerCounters;
  pairs: AuthPairRow[];
}

export interface IdentityCert {
  identity: number;
  /** The SVID's one URI SAN. */
  spiffeId: string;
  /** Istio's namespace/service-account SPIFFE IDs of the identity's pods (not in the certificate). */
  serviceAccountIds: string[];
  summary: SvidSummary;
  /** When the agent renews it. */
  renewAt: string;
  certPem: string;
  caPem: string;
}

const pairKey = (p: AuthPair) => `${p.srcIdentity}/${p.dstIdentity}/${p.remoteNodeId}`;

export class AuthManager {
  readonly listener: AuthListener;
  readonly handshakes = { ok: 0, failed: 0 };
  readonly #svids = new Map<number, { svid: Svid; renewAt: number }>();
  readonly #revoked = new Set<string>();
  readonly #pending = new Map<string, Promise<boolean>>();
  readonly #issuing = new Map<number, Promise<Svid>>();
  readonly #o: AuthManagerOptions;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(o: AuthManagerOptions) {
    this.#o = o;
    this.listener = new AuthListener({
      trustDomain: () => o.trustDomain,
      caPem: o.ca.certPem,
      svid: (id) => this.#svids.get(id)?.svid,
      revoked: (serial) => this.#revoked.has(serial),
    });
  }

  async start(): Promise<void> {
    await this.listener.listen(this.#o.listen.host, this.#o.listen.port);
    await this.tick();
    // weir_auth is pinned: pairs a previous agent authenticated stay in force (they expire with
    // that agent's certificates); they are handshaken again with this agent's SVIDs at once.
    for (const e of this.#o.map.list()) void this.required(e);
    this.#timer = setInterval(() => void this.tick(), TICK_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.listener.close();
  }

  /** Issues, renews and revokes SVIDs, and removes expired pairs. Errors are logged, not thrown. */
  async tick(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const inUse = new Set(
        this.#o
          .identities()
          .map((i) => i.id)
          .filter(isWorkload),
      );
      for (const [id, { svid }] of this.#svids)
        if (!inUse.has(id)) {
          this.#revoke(id, svid);
        }
      const now = Date.now();
      for (const id of inUse) {
        const have = this.#svids.get(id);
        if (!have) await this.#ensure(id);
        else if (now >= have.renewAt) {
          await this.#renew(id);
        }
      }
      for (const e of this.#o.map.list())
        if (!e.valid || !this.#svids.has(e.srcIdentity) || !this.#svids.has(e.dstIdentity))
          this.#o.map.delete(e);
    } catch (err) {
      this.#o.log.error({ err }, 'auth: SVID maintenance failed');
    } finally {
      this.#busy = false;
    }
  }

  #revoke(id: number, svid: Svid): void {
    this.#svids.delete(id);
    this.#revoked.add(svid.serial);
    if (this.#revoked.size > REVOKED_KEPT)
      this.#revoked.delete(this.#revoked.values().next().value as string);
    for (const e of this.#o.map.list())
      if (e.srcIdentity === id || e.dstIdentity === id) this.#o.map.delete(e);
    this.#o.log.info({ identity: id, serial: svid.serial }, 'auth: identity released, SVID revoked');
  }

  async #issue(id: number): Promise<Svid> {
    const svid = await this.#o.ca.issue(this.#o.trustDomain, id, this.#o.svidTtl);
    const life = svid.notAfter.getTime() - Date.now();
    const jitter = (Math.random() * 2 - 1) * 0.01 * life;
    this.#svids.set(id, { svid, renewAt: Date.now() + life / 2 + jitter });
    return svid;
  }

  /** The identity's SVID, issued now if it has none (one issue at a time per identity). */
  async #ensure(id: number): Promise<Svid> {
    const have = this.#svids.get(id);
    if (have) return have.svid;
    let p = this.#issuing.get(id);
    if (!p) {
      p = this.#issue(id).finally(() => this.#issuing.delete(id));
      this.#issuing.set(id, p);
    }
    return p;
  }

  async #renew(id: number): Promise<void> {
    const svid = await this.#issue(id);
    this.#o.log.info({ identity: id, serial: svid.serial, notAfter: svid.notAfter }, 'auth: SVID renewed');
    // Pairs of this identity are authenticated again with the new certificate before the old
    // expiry is reached: no gap for new connections.
    for (const e of this.#o.map.list())
      if (e.srcIdentity === id || e.dstIdentity === id) void this.required(e);
  }

  /**
   * The datapath dropped a connection of `pair` (189): handshake, then write weir_auth. Concurrent
   * requests for one pair share one handshake. Resolves true when the pair is authenticated.
   */
  required(pair: AuthPair): Promise<boolean> {
    const k = pairKey(pair);
    let p = this.#pending.get(k);
    if (!p) {
      p = this.#handshake(pair).finally(() => this.#pending.delete(k));
      this.#pending.set(k, p);
    }
    return p;
  }

  async #handshake(pair: AuthPair): Promise<boolean> {
    const inUse = new Set(this.#o.identities().map((i) => i.id));
    if (!isWorkload(pair.srcIdentity) || !isWorkload(pair.dstIdentity)) return false;
    if (!inUse.has(pair.srcIdentity) || !inUse.has(pair.dstIdentity)) return false;
    if (pair.remoteNodeId !== 0) {
      // Other nodes' listeners (and their node ids) come with the cluster: nothing to dial yet.
      this.#o.log.warn({ pair }, 'auth: a remote node id, but this node knows no other node');
      return false;
    }
    try {
      const src = await this.#ensure(pair.srcIdentity);
      await this.#ensure(pair.dstIdentity);
      const res = await authenticate({
        host: this.#o.listen.host,
        port: this.#o.listen.port,
        trustDomain: this.#o.trustDomain,
        caPem: this.#o.ca.certPem,
        src,
        dst: pair.dstIdentity,
      });
      this.#o.map.set(pair, res.notAfter);
      this.handshakes.ok++;
      return true;
    } catch (err) {
      this.handshakes.failed++;
      this.#o.log.warn({ err, pair }, 'auth: handshake failed');
      return false;
    }
  }

  /** The lab CA's certificate (the trust bundle of the nodes' mTLS tunnels). */
  get caPem(): string {
    return this.#o.ca.certPem;
  }

  /**
   * The current SVIDs of `ids` (issued now for those in use without one), for the node proxy's
   * mTLS tunnels (--encryption mtls); identities that get none are left out.
   */
  async svidsOf(ids: Iterable<number>): Promise<Svid[]> {
    const inUse = new Set(this.#o.identities().map((i) => i.id));
    const out: Svid[] = [];
    for (const id of new Set(ids))
      if (isWorkload(id) && inUse.has(id)) {
        try {
          out.push(await this.#ensure(id));
        } catch (err) {
          this.#o.log.error({ err, identity: id }, 'auth: no SVID for the tunnel');
        }
      }
    return out;
  }

  /** The counters, for the agent's metrics. */
  counts() {
    return { handshakes: { ...this.handshakes }, ...structuredClone(this.listener.counters) };
  }

  status(): AuthStatus {
    return {
      trustDomain: this.#o.trustDomain,
      listener: `${this.#o.listen.host}:${this.#o.listen.port}`,
      svids: this.#svids.size,
      handshakes: { ...this.handshakes },
      counters: structuredClone(this.listener.counters),
      pairs: this.#o.map
        .list()
        .sort((a, b) => a.srcIdentity - b.srcIdentity || a.dstIdentity - b.dstIdentity)
        .map((e) => ({
          srcIdentity: e.srcIdentity,
          dstIdentity: e.dstIdentity,
          remoteNodeId: e.remoteNodeId,
          expires: e.expires.toISOString(),
          valid: e.valid,
        })),
    };
  }

  /** The SVID of an identity in use (issued now if it has none yet). */
  async cert(identity: number): Promise<IdentityCert> {
    const ident = this.#o.identities().find((i) => i.id === identity);
    if (!ident || !isWorkload(identity))
      throw new WeirError(
        'ERR_AUTH_NO_SVID',
        `identity ${identity} has no SVID: SVIDs are issued for the pod identities in use (256..65535)`,
        { location: { object: `identity ${identity}` } },
      );
    const svid = await this.#ensure(identity);
    const renewAt = this.#svids.get(identity)?.renewAt ?? svid.notAfter.getTime();
    return {
      identity,
      spiffeId: svid.spiffeId,
      serviceAccountIds: serviceAccountIds(this.#o.trustDomain, ident.labels),
      summary: summarize(svid.certPem),
      renewAt: new Date(renewAt).toISOString(),
      certPem: svid.certPem,
      caPem: this.#o.ca.certPem,
    };
  }
}

/** Istio's spiffe://<td>/ns/<ns>/sa/<sa> of an identity's labels (the pods' namespace and SA). */
export function serviceAccountIds(td: string, labels: readonly string[]): string[] {
  const value = (key: string) => {
    const l = labels.find((x) => x.startsWith(`k8s:${key}=`));
    return l?.slice(`k8s:${key}=`.length);
  };
  const ns = value(NAMESPACE_LABEL);
  const sa = value(SERVICE_ACCOUNT_LABEL) ?? 'default';
  return ns ? [serviceAccountSpiffeId(td, ns, sa)] : [];
}
