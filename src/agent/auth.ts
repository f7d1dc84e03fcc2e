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
//   nodes     with several nodes (`issuer`, `nodes`, `localIdentities` given): SVIDs only for the
//             identities of this node's pods, issued by the CA node's API from a CSR made here
//             (the key never leaves this node); a 189 drop names the peer's node id (the
//             ipcache's tunnel endpoint, tunnel or native routing), the agent dials that node's listener at its underlay
//             address with the SVID of its own side of the pair, and the listener, having
//             verified it, writes its own entry for the pair with the dialler's node id.
//   rotation  the issuer's bundle changes (a CA rotation): the listener trusts the new bundle
//             at once; a new signing CA re-issues every SVID and handshakes every pair again.
import type { Logger as Pino } from 'pino';
import { CertificateAuthority, summarize, type Svid, type SvidSummary } from '../auth/ca.js';
import type { CaStatus } from '../auth/ca-store.js';
import { AuthListener, authenticate, type AuthListenerCounters } from '../auth/handshake.js';
import { authNodeId, authNodes, type AuthNode } from '../auth/node-id.js';
import { serviceAccountSpiffeId } from '../auth/spiffe.js';
import type { AuthMap, AuthPair } from '../datapath/maps/auth/index.js';
import { NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL } from '../identity/pod-labels.js';
import { WeirError } from '../shared/errors.js';

/** Identities that get SVIDs: Cilium's cluster range (pods), not reserved or CIDR identities. */
const isWorkload = (id: number) => id >= 256 && id <= 0xffff;
const TICK_MS = 1000;
/** After a CA rotation, pairs are handshaken again this much later (the peers' bundle poll). */
const REHANDSHAKE_DELAY_MS = 3 * TICK_MS;
/** Revoked serials kept (an SVID lives --svid-ttl at most; these outlive any of them in practice). */
const REVOKED_KEPT = 65536;

/** Where SVIDs come from: the CA on this node, or the CA node's API (a CSR per identity). */
export interface SvidIssuer {
  /** The trust bundle (PEM; both CAs during a rotation's overlap). */
  bundle(): string;
  /** Fingerprint of the CA that signs new SVIDs. */
  signer(): string;
  issue(td: string, identity: number, ttlSeconds: number): Promise<Svid>;
  /** This node's node SVID (spiffe://<td>/node/<node>); the CA signs it for a registered node only. */
  issueNode?(td: string, node: string, ttlSeconds: number): Promise<Svid>;
  /** Brings bundle and signer up to date (a CA rotation); called every second. */
  refresh?(): Promise<void>;
  /** The CA's rotation state (the CA node only). */
  caStatus?(): CaStatus;
}

/** An issuer over a CA of this process (one node, tests). */
export function localIssuer(ca: CertificateAuthority): SvidIssuer {
  return {
    bundle: () => ca.certPem,
    signer: () => ca.fingerprint,
    issue: (td, id, ttl) => ca.issue(td, id, ttl),
  };
}

export interface AuthManagerOptions {
  /** The CA (one node); `issuer` instead for a CA of several nodes or one that rotates. */
  ca?: CertificateAuthority;
  issuer?: SvidIssuer;
  /** The cluster's other nodes (their records): whose listener a remote node id dials. */
  nodes?: () => readonly { name: string; underlayIP?: string }[];
  /** The identities of this node's pods: given, SVIDs are issued for these only. */
  localIdentities?: () => readonly number[];
  trustDomain: string;
  svidTtl: number;
  /**
   * This node's name: given (--encryption mtls), the agent holds a node SVID too, for the node
   * proxy's own upstreams (Gateway, mesh routes, DNS) in the tunnels; renewed and re-issued on a
   * CA rotation like the identities' SVIDs.
   */
  nodeName?: string;
  /** The node IP and port of this node's listener (also what node 0 is dialled at). */
  listen: { host: string; port: number };
  /** The address the listener binds (default listen.host): all of the node's, with other nodes. */
  bindHost?: string;
  map: AuthMap;
  /** The identities in use, with their labels. */
  identities(): { id: number; labels: string[] }[];
  log: Pino;
}

export interface AuthPairRow extends AuthPair {
  expires: string;
  valid: boolean;
  /** The peer's node: its name, 'local' (node 0), or the id when no node record has it. */
  node?: string;
}

export interface AuthStatus {
  trustDomain: string;
  listener: string;
  svids: number;
  handshakes: { ok: number; failed: number };
  counters: AuthListenerCounters;
  pairs: AuthPairRow[];
  /** Fingerprint of the CA signing this node's SVIDs, and the CAs trusted. */
  signer?: string;
  trusted?: number;
  /** The CA node: its CAs and a rotation's retirement time. */
  ca?: CaStatus;
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

/** A node's node SVID (`weir identity cert get --node`). */
export interface NodeCert {
  node: string;
  spiffeId: string;
  summary: SvidSummary;
  renewAt: string;
  certPem: string;
  caPem: string;
}

const pairKey = (p: AuthPair) => `${p.srcIdentity}/${p.dstIdentity}/${p.remoteNodeId}`;

export class AuthManager {
  readonly listener: AuthListener;
  readonly handshakes = { ok: 0, failed: 0 };
  readonly issuer: SvidIssuer;
  #signer = '';
  readonly #svids = new Map<number, { svid: Svid; renewAt: number }>();
  readonly #revoked = new Set<string>();
  readonly #pending = new Map<string, Promise<boolean>>();
  readonly #issuing = new Map<number, Promise<Svid>>();
  /**
   * After a CA rotation, the SVIDs of the retiring CA, still shown to other nodes' tunnels until
   * `until` (they trust the new CA only after their next bundle poll).
   */
  #previous: { svids: Map<number, Svid>; node?: Svid; until: number } | undefined;
  /** This node's node SVID (options.nodeName), and when it is renewed. */
  #node: { svid: Svid; renewAt: number } | undefined;
  #nodeIssuing: Promise<Svid> | undefined;
  #nodeFailed = false;
  readonly #o: AuthManagerOptions;
  #timer: NodeJS.Timeout | undefined;
  #refreshFailed = false;
  #busy = false;

  constructor(o: AuthManagerOptions) {
    this.#o = o;
    const issuer = o.issuer ?? (o.ca ? localIssuer(o.ca) : undefined);
    if (!issuer) throw new WeirError('ERR_AUTH_CA', 'the auth manager needs a CA or an issuer');
    this.issuer = issuer;
    this.#signer = issuer.signer();
    this.listener = new AuthListener({
      trustDomain: () => o.trustDomain,
      caPem: issuer.bundle(),
      bundle: () => this.issuer.bundle(),
      svid: (id) => this.#svids.get(id)?.svid,
      revoked: (serial) => this.#revoked.has(serial),
      accepted: (a) => this.#accepted(a),
    });
  }

  /** The nodes by weir_auth id (the datapath's auth_remote_node). */
  #nodes(): Map<number, AuthNode | undefined> {
    return authNodes(this.#o.nodes?.() ?? []);
  }

  /** This node's listener accepted a client of another node: the pair's entry with its node id here too. */
  #accepted(a: { src: number; dst: number; peerAddress: string; notAfter: Date }): void {
    const addr = a.peerAddress.replace(/^::ffff:/, '');
    const id = authNodeId(addr);
    if (id === undefined) return; // this node's own client (node 0): it writes the entry
    const node = this.#nodes().get(id);
    if (!node || node.address !== addr) return;
    const local = this.#localSet();
    if (!local.has(a.src) && !local.has(a.dst)) return;
    this.#o.map.set({ srcIdentity: a.src, dstIdentity: a.dst, remoteNodeId: id }, a.notAfter);
  }

  #localSet(): Set<number> {
    const ids = this.#o.localIdentities?.() ?? this.#o.identities().map((i) => i.id);
    return new Set(ids.filter(isWorkload));
  }

  async start(): Promise<void> {
    await this.listener.listen(this.#o.bindHost ?? this.#o.listen.host, this.#o.listen.port);
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
      try {
        await this.issuer.refresh?.();
        if (this.#refreshFailed) this.#o.log.info('auth: the CA node answers again');
        this.#refreshFailed = false;
      } catch (err) {
        if (!this.#refreshFailed)
          this.#o.log.warn({ err }, 'auth: the CA node does not answer (retrying every second)');
        this.#refreshFailed = true;
      }
      this.listener.refreshTrust();
      const inUse = this.#localSet();
      const all = new Set(this.#o.identities().map((i) => i.id));
      const rotated = this.issuer.signer() !== this.#signer;
      if (rotated) {
        // A new signing CA: every SVID again from it, then every pair handshaken again (both CAs
        // are trusted meanwhile, so nothing in force lapses).
        const was = this.#signer;
        this.#signer = this.issuer.signer();
        this.#o.log.info(
          { signer: this.#signer },
          was ? 'auth: a new CA signs: re-issuing SVIDs' : 'auth: the CA node gave its trust bundle',
        );
        if (was)
          this.#previous = {
            svids: new Map([...this.#svids].map(([id, v]) => [id, v.svid])),
            ...(this.#node ? { node: this.#node.svid } : {}),
            until: Date.now() + REHANDSHAKE_DELAY_MS,
          };
        for (const id of this.#svids.keys()) if (inUse.has(id)) await this.#issue(id);
        if (this.#node) this.#node = undefined;
        // The pairs a little later: the other nodes poll the bundle every second, and must trust
        // the new CA before they are shown one of its SVIDs.
        setTimeout(() => {
          for (const e of this.#o.map.list()) void this.required(e);
        }, REHANDSHAKE_DELAY_MS).unref();
      }
      for (const [id, { svid }] of this.#svids)
        if (!inUse.has(id)) {
          this.#revoke(id, svid);
        }
      const now = Date.now();
      if (this.#o.nodeName && this.issuer.issueNode && (!this.#node || now >= this.#node.renewAt))
        await this.nodeSvid().catch(() => undefined);
      const renewed = new Set<number>();
      for (const id of inUse) {
        const have = this.#svids.get(id);
        if (!have) await this.#ensure(id);
        else if (now >= have.renewAt) {
          await this.#renew(id);
          renewed.add(id);
        }
      }
      // Pairs of renewed identities are authenticated again with the new certificates before the
      // old expiry is reached: no gap for new connections. Once per pair, after every renewal of
      // this tick (both sides of a pair are often renewed together), and after any handshake
      // already in flight (it may have been shown an old certificate).
      if (renewed.size > 0)
        for (const e of this.#o.map.list())
          if (renewed.has(e.srcIdentity) || renewed.has(e.dstIdentity)) void this.#afterPending(e);
      for (const e of this.#o.map.list()) {
        const gone = !all.has(e.srcIdentity) || !all.has(e.dstIdentity);
        // This node's side of the pair must hold an SVID (both sides for node 0).
        const mine =
          e.remoteNodeId === 0
            ? this.#svids.has(e.srcIdentity) && this.#svids.has(e.dstIdentity)
            : this.#svids.has(e.srcIdentity) || this.#svids.has(e.dstIdentity);
        if (!e.valid || gone || !mine) this.#o.map.delete(e);
      }
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
    const svid = await this.issuer.issue(this.#o.trustDomain, id, this.#o.svidTtl);
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
  }

  /** A fresh handshake of `pair`, started once the one in flight (if any) has ended. */
  async #afterPending(pair: AuthPair): Promise<boolean> {
    await this.#pending.get(pairKey(pair))?.catch(() => false);
    return this.required(pair);
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
    const local = this.#localSet();
    let host = this.#o.listen.host;
    let side: 'src' | 'dst' = 'src';
    if (pair.remoteNodeId !== 0) {
      const node = this.#nodes().get(pair.remoteNodeId);
      if (!node) {
        this.handshakes.failed++;
        this.#o.log.warn({ pair }, 'auth: no single node record has this node id: not authenticated');
        return false;
      }
      host = node.address;
      if (local.has(pair.srcIdentity)) side = 'src';
      else if (local.has(pair.dstIdentity)) side = 'dst';
      else return false;
    } else if (!local.has(pair.srcIdentity) || !local.has(pair.dstIdentity)) return false;
    try {
      const mine = await this.#ensure(side === 'src' ? pair.srcIdentity : pair.dstIdentity);
      if (pair.remoteNodeId === 0) await this.#ensure(pair.dstIdentity);
      const res = await authenticate({
        host,
        port: this.#o.listen.port,
        trustDomain: this.#o.trustDomain,
        caPem: this.issuer.bundle(),
        src: mine,
        dst: side === 'src' ? pair.dstIdentity : pair.srcIdentity,
        side,
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

  /**
   * This node's node SVID (issued now when it has none or it is due for renewal), for the node
   * proxy's own upstreams in the tunnels; undefined when no node name or issuer for it. Right
   * after a CA rotation, the retiring CA's one for a few seconds (as svidsOf).
   */
  async nodeSvid(): Promise<Svid | undefined> {
    const name = this.#o.nodeName;
    const issueNode = this.issuer.issueNode?.bind(this.issuer);
    if (!name || !issueNode) return undefined;
    const now = Date.now();
    const old = this.#previous && now < this.#previous.until ? this.#previous.node : undefined;
    if (old && old.notAfter.getTime() > now) return old;
    if (this.#node && now < this.#node.renewAt) return this.#node.svid;
    this.#nodeIssuing ??= (async () => {
      try {
        const svid = await issueNode(this.#o.trustDomain, name, this.#o.svidTtl);
        const life = svid.notAfter.getTime() - Date.now();
        const jitter = (Math.random() * 2 - 1) * 0.01 * life;
        const renewal = this.#node !== undefined;
        this.#node = { svid, renewAt: Date.now() + life / 2 + jitter };
        this.#nodeFailed = false;
        this.#o.log.info(
          { node: name, serial: svid.serial, notAfter: svid.notAfter },
          renewal ? 'auth: node SVID renewed' : 'auth: node SVID issued',
        );
        return svid;
      } catch (err) {
        if (!this.#nodeFailed)
          this.#o.log.warn({ err, node: name }, 'auth: no node SVID (retrying every second)');
        this.#nodeFailed = true;
        throw err;
      } finally {
        this.#nodeIssuing = undefined;
      }
    })();
    try {
      return await this.#nodeIssuing;
    } catch {
      // An SVID not yet expired still serves while its renewal fails.
      return this.#node && this.#node.svid.notAfter.getTime() > Date.now() ? this.#node.svid : undefined;
    }
  }

  /** `weir identity cert get --node <name>`: this node's node SVID. */
  async nodeCert(name: string): Promise<NodeCert> {
    if (name !== this.#o.nodeName)
      throw new WeirError(
        'ERR_AUTH_NO_SVID',
        this.#o.nodeName
          ? `this agent is node '${this.#o.nodeName}'s: ask node '${name}'s agent for its node SVID`
          : 'this node holds no node SVID: node SVIDs are issued with --encryption mtls',
        { location: { object: `node ${name}` } },
      );
    const svid = await this.nodeSvid();
    if (!svid)
      throw new WeirError(
        'ERR_AUTH_NO_SVID',
        `node '${name}' has no node SVID yet (the CA node does not answer)`,
        {
          location: { object: `node ${name}` },
        },
      );
    return {
      node: name,
      spiffeId: svid.spiffeId,
      summary: summarize(svid.certPem),
      renewAt: new Date(this.#node?.renewAt ?? svid.notAfter.getTime()).toISOString(),
      certPem: svid.certPem,
      caPem: this.issuer.bundle(),
    };
  }

  /** The trust bundle (both CAs during a rotation's overlap): the nodes' mTLS tunnels trust it. */
  get caPem(): string {
    return this.issuer.bundle();
  }

  /**
   * The current SVIDs of `ids` (issued now for those in use without one), for the node proxy's
   * mTLS tunnels (--encryption mtls); identities that get none are left out.
   */
  async svidsOf(ids: Iterable<number>): Promise<Svid[]> {
    const inUse = new Set(this.#o.identities().map((i) => i.id));
    const out: Svid[] = [];
    // Right after a CA rotation the tunnels keep the retiring CA's SVIDs for a few seconds: the
    // other nodes' proxies trust the new CA only once their agent polled the bundle, and a tunnel
    // opened meanwhile with a new SVID would be refused (the pairs' handshakes wait as long).
    const now = Date.now();
    const previous = this.#previous && now < this.#previous.until ? this.#previous.svids : undefined;
    if (!previous) this.#previous = undefined;
    for (const id of new Set(ids))
      if (isWorkload(id) && inUse.has(id)) {
        const old = previous?.get(id);
        if (old && old.notAfter.getTime() > now) {
          out.push(old);
          continue;
        }
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
    const nodes = this.#nodes();
    const ca = this.issuer.caStatus?.();
    return {
      signer: this.issuer.signer(),
      trusted: (this.issuer.bundle().match(/BEGIN CERTIFICATE/g) ?? []).length,
      ...(ca ? { ca } : {}),
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
          node: e.remoteNodeId === 0 ? 'local' : (nodes.get(e.remoteNodeId)?.name ?? String(e.remoteNodeId)),
        })),
    };
  }

  /** The SVID of an identity in use (issued now if it has none yet). */
  async cert(identity: number): Promise<IdentityCert> {
    const ident = this.#o.identities().find((i) => i.id === identity);
    if (!ident || !isWorkload(identity) || !this.#localSet().has(identity))
      throw new WeirError(
        'ERR_AUTH_NO_SVID',
        `identity ${identity} has no SVID on this node: SVIDs are issued for the identities of the node's pods in use (256..65535)`,
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
      caPem: this.issuer.bundle(),
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
