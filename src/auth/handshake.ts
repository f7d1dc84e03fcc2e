// The mutual-authentication handshake (Cilium's mutual auth: agents handshake out of band, the
// datapath only reads the result). TLS 1.3 only, both sides presenting X.509-SVIDs of one trust
// bundle (the lab's CA):
//
//   client (the agent whose datapath dropped with 189)            AuthListener (the peer node's
//     SNI  "dst-<dst id>.src-<src id>.weir-auth"                    agent; this node's for a
//     cert the SVID of <src>                        ─── TLS 1.3 ──► local peer)
//     verifies: chain to the CA, the server's SVID is <dst>         SNI → presents <dst>'s SVID
//                                                                   verifies: chain to the CA, an
//                                                   ◄── one line ── SVID, its ID is <src>, not revoked
//     {"ok":true,"notAfter":…} or {"ok":false,"reason":…}
//
// The client writes the weir_auth entry only on {"ok":true}, with the earlier notAfter of the two
// certificates; the listener, having verified the client, writes its own node's entry for the
// pair (AuthListenerOptions.accepted). Every refusal is counted by reason (AuthListener.counters).
// On one node the agent handshakes with its own listener; with more nodes the client dials the
// peer node's listener. The node that dials holds the SVID of its own side of the pair: the
// source's (SNI as above), or, when the drop happened at the destination's node, the
// destination's — SNI "dst-<dst>.src-<src>.as-dst.weir-auth", the client presenting <dst>'s SVID
// and the listener <src>'s.
import { once } from 'node:events';
import {
  createSecureContext,
  createServer,
  connect,
  type SecureContext,
  type Server,
  type TLSSocket,
} from 'node:tls';
import type { Svid } from './ca.js';
import { splitBundle, svidId } from './ca.js';

/** Node's `ca` takes one certificate per PEM string: a bundle as a list. */
const trust = (pem: string) => {
  const certs = splitBundle(pem);
  return certs.length ? certs : pem;
};
import { identitySpiffeId } from './spiffe.js';

export const REFUSALS = [
  'untrusted',
  'not-svid',
  'wrong-identity',
  'revoked',
  'unknown-identity',
  'bad-request',
  'expired',
] as const;
export type Refusal = (typeof REFUSALS)[number];

export interface AuthListenerCounters {
  accepted: number;
  refused: Record<Refusal, number>;
}

export interface AuthListenerOptions {
  trustDomain: () => string;
  /** The trust bundle (the CA's PEM). */
  caPem: string;
  /** The current SVID of an identity of this node; undefined when it has none. */
  svid(identity: number): Svid | undefined;
  /** A serial whose SVID was revoked (its identity released). */
  revoked?(serial: string): boolean;
  /** The trust bundle now (CA rotation: both CAs during the overlap); overrides caPem. */
  bundle?(): string;
  /** A client was accepted for the pair src → dst (the initiator and receiver identities). */
  accepted?(a: { src: number; dst: number; peerAddress: string; notAfter: Date }): void;
}

const SNI = /^dst-(\d{1,10})\.src-(\d{1,10})(\.as-dst)?\.weir-auth$/;

export const sniOf = (src: number, dst: number) => `dst-${dst}.src-${src}.weir-auth`;
/** The SNI of a pair whose destination's node dials (it presents dst's SVID, expects src's). */
export const sniAsDst = (src: number, dst: number) => `dst-${dst}.src-${src}.as-dst.weir-auth`;

/** The identity the listener presents and the one the client must present, by SNI. */
function rolesOf(m: RegExpExecArray): { src: number; dst: number; listener: number; client: number } {
  const dst = Number(m[1]);
  const src = Number(m[2]);
  return m[3] ? { src, dst, listener: src, client: dst } : { src, dst, listener: dst, client: src };
}

export class AuthListener {
  readonly counters: AuthListenerCounters = {
    accepted: 0,
    refused: Object.fromEntries(REFUSALS.map((r) => [r, 0])) as Record<Refusal, number>,
  };
  readonly #server: Server;
  readonly #contexts = new Map<string, SecureContext>();
  readonly #o: AuthListenerOptions;

  constructor(o: AuthListenerOptions) {
    this.#o = o;
    this.#server = createServer(
      {
        minVersion: 'TLSv1.3',
        requestCert: true,
        // Refusals are decided (and counted) after the handshake, each with its reason.
        rejectUnauthorized: false,
        ...(o.bundle?.() || o.caPem ? { ca: trust(o.bundle?.() || o.caPem) } : {}),
        SNICallback: (name, cb) => {
          const m = SNI.exec(name);
          // No trust bundle yet (the CA node not reached): nobody is accepted.
          const svid = m && this.#bundle() ? o.svid(rolesOf(m).listener) : undefined;
          if (!svid) {
            this.counters.refused[m ? 'unknown-identity' : 'bad-request']++;
            cb(new Error(`no SVID for '${name}'`));
            return;
          }
          const ca = this.#bundle();
          const key = `${svid.serial}/${ca.length}/${ca.slice(-64)}`;
          let ctx = this.#contexts.get(key);
          if (!ctx) {
            ctx = createSecureContext({
              cert: svid.certPem,
              key: svid.keyPem,
              ca: trust(ca),
              minVersion: 'TLSv1.3',
            });
            this.#contexts.set(key, ctx);
            // Contexts of rotated SVIDs go: new handshakes use the current one.
            for (const k of this.#contexts.keys()) if (this.#contexts.size > 256) this.#contexts.delete(k);
          }
          cb(null, ctx);
        },
      },
      (sock) => this.#judge(sock),
    );
    this.#server.on('tlsClientError', () => undefined);
    this.#trusted = this.#bundle();
  }

  #trusted = '';
  #bundle(): string {
    return this.#o.bundle?.() ?? this.#o.caPem;
  }

  /** Takes a changed trust bundle (CA rotation) into the listener's verification of clients. */
  refreshTrust(): void {
    const ca = this.#bundle();
    if (ca === this.#trusted) return;
    this.#trusted = ca;
    if (!ca) return;
    this.#server.setSecureContext({ ca: trust(ca), minVersion: 'TLSv1.3' });
    this.#contexts.clear();
  }

  #judge(sock: TLSSocket): void {
    const refuse = (reason: Refusal, detail: string) => {
      this.counters.refused[reason]++;
      sock.end(`${JSON.stringify({ ok: false, reason, detail })}\n`);
    };
    sock.on('error', () => undefined);
    const m = SNI.exec((sock as TLSSocket & { servername?: string }).servername || '');
    if (!m) return refuse('bad-request', 'no SNI naming the pair');
    const roles = rolesOf(m);
    const src = roles.client;
    if (!this.#bundle()) return refuse('untrusted', 'this node has no trust bundle yet');
    if (!sock.authorized) {
      const why = String(sock.authorizationError ?? 'no client certificate');
      return refuse(why === 'CERT_HAS_EXPIRED' ? 'expired' : 'untrusted', why);
    }
    const peer = sock.getPeerX509Certificate();
    if (!peer) return refuse('untrusted', 'no client certificate');
    const id = svidId(peer.raw);
    if ('error' in id) return refuse('not-svid', id.error);
    const want = identitySpiffeId(this.#o.trustDomain(), src);
    if (id.id !== want) return refuse('wrong-identity', `presented ${id.id}, the pair names ${want}`);
    if (this.#o.revoked?.(peer.serialNumber.toLowerCase()))
      return refuse('revoked', `serial ${peer.serialNumber}`);
    const own = sock.getX509Certificate();
    const notAfter = Math.min(
      new Date(peer.validTo).getTime(),
      own ? new Date(own.validTo).getTime() : Infinity,
    );
    this.counters.accepted++;
    try {
      this.#o.accepted?.({
        src: roles.src,
        dst: roles.dst,
        peerAddress: sock.remoteAddress ?? '',
        notAfter: new Date(notAfter),
      });
    } catch {
      // The listener's own bookkeeping: the client's answer stands.
    }
    sock.end(`${JSON.stringify({ ok: true, notAfter: new Date(notAfter).toISOString() })}\n`);
  }

  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    this.#server.listen(port, host);
    await once(this.#server, 'listening');
    const a = this.#server.address();
    return typeof a === 'object' && a ? { host: a.address, port: a.port } : { host, port };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

export interface HandshakeOptions {
  host: string;
  port: number;
  trustDomain: string;
  caPem: string;
  /** The initiator's SVID (the client certificate). */
  src: Svid;
  /** The identity the listener must prove. */
  dst: number;
  timeoutMs?: number;
  /**
   * 'dst': the dialling node holds the pair's destination — `src` is the destination's SVID and
   * `dst` the pair's source, which the listener proves (SNI sniAsDst). Default 'src'.
   */
  side?: 'src' | 'dst';
}

export interface HandshakeResult {
  /** The earlier notAfter of the two certificates: how long the pair stays authenticated. */
  notAfter: Date;
  peerSerial: string;
}

/** One handshake; rejects with an Error saying why it failed (refused, untrusted, timeout). */
export function authenticate(o: HandshakeOptions): Promise<HandshakeResult> {
  if (!o.caPem.trim())
    return Promise.reject(new Error('no trust bundle: nothing to verify the listener with'));
  const want = identitySpiffeId(o.trustDomain, o.dst);
  return new Promise((resolve, reject) => {
    let text = '';
    let peerNotAfter = Infinity;
    let peerSerial = '';
    const sock = connect({
      host: o.host,
      port: o.port,
      servername: o.side === 'dst' ? sniAsDst(o.dst, o.src.identity) : sniOf(o.src.identity, o.dst),
      cert: o.src.certPem,
      key: o.src.keyPem,
      ca: trust(o.caPem),
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      checkServerIdentity: (_host, cert) => {
        const id = svidId(cert.raw);
        if ('error' in id) return new Error(`the listener's certificate is not an SVID: ${id.error}`);
        if (id.id !== want) return new Error(`the listener presented ${id.id}, not ${want}`);
        peerNotAfter = new Date(cert.valid_to).getTime();
        peerSerial = cert.serialNumber.toLowerCase();
        return undefined;
      },
    });
    const fail = (err: Error) => {
      sock.destroy();
      reject(err);
    };
    sock.setTimeout(o.timeoutMs ?? 5000, () => fail(new Error('the handshake timed out')));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      text += d;
      if (text.length > 4096) fail(new Error('the listener answered too much'));
    });
    sock.on('error', fail);
    sock.on('end', () => {
      let ans: { ok?: boolean; notAfter?: string; reason?: string; detail?: string };
      try {
        ans = JSON.parse(text.trim()) as typeof ans;
      } catch {
        return fail(new Error('the listener closed without an answer'));
      }
      if (!ans.ok) return fail(new Error(`refused: ${ans.reason ?? '?'} (${ans.detail ?? ''})`));
      const mine = o.src.notAfter.getTime();
      const theirs = ans.notAfter ? new Date(ans.notAfter).getTime() : Infinity;
      sock.destroy();
      resolve({ notAfter: new Date(Math.min(mine, peerNotAfter, theirs)), peerSerial });
    });
  });
}
