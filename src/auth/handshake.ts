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
// certificates. Every refusal is counted by reason (AuthListener.counters). The listener and the
// client are node-agnostic: on one node the agent handshakes with its own listener; with more
// nodes the client dials the peer node's listener and the same exchange applies.
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
import { svidId } from './ca.js';
import { identitySpiffeId } from './spiffe.js';

export const REFUSALS = [
  'untrusted',
  'not-svid',
  'wrong-identity',
  'revoked',
  'unknown-identity',
  'bad-request',
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
}

const SNI = /^dst-(\d{1,10})\.src-(\d{1,10})\.weir-auth$/;

export const sniOf = (src: number, dst: number) => `dst-${dst}.src-${src}.weir-auth`;

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
        ca: o.caPem,
        SNICallback: (name, cb) => {
          const m = SNI.exec(name);
          const svid = m ? o.svid(Number(m[1])) : undefined;
          if (!svid) {
            this.counters.refused[m ? 'unknown-identity' : 'bad-request']++;
            cb(new Error(`no SVID for '${name}'`));
            return;
          }
          let ctx = this.#contexts.get(svid.serial);
          if (!ctx) {
            ctx = createSecureContext({
              cert: svid.certPem,
              key: svid.keyPem,
              ca: o.caPem,
              minVersion: 'TLSv1.3',
            });
            this.#contexts.set(svid.serial, ctx);
            // Contexts of rotated SVIDs go: new handshakes use the current one.
            for (const k of this.#contexts.keys()) if (this.#contexts.size > 256) this.#contexts.delete(k);
          }
          cb(null, ctx);
        },
      },
      (sock) => this.#judge(sock),
    );
    this.#server.on('tlsClientError', () => undefined);
  }

  #judge(sock: TLSSocket): void {
    const refuse = (reason: Refusal, detail: string) => {
      this.counters.refused[reason]++;
      sock.end(`${JSON.stringify({ ok: false, reason, detail })}\n`);
    };
    sock.on('error', () => undefined);
    const m = SNI.exec((sock as TLSSocket & { servername?: string }).servername || '');
    if (!m) return refuse('bad-request', 'no SNI naming the pair');
    const src = Number(m[2]);
    if (!sock.authorized)
      return refuse('untrusted', String(sock.authorizationError ?? 'no client certificate'));
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
}

export interface HandshakeResult {
  /** The earlier notAfter of the two certificates: how long the pair stays authenticated. */
  notAfter: Date;
  peerSerial: string;
}

/** One handshake; rejects with an Error saying why it failed (refused, untrusted, timeout). */
export function authenticate(o: HandshakeOptions): Promise<HandshakeResult> {
  const want = identitySpiffeId(o.trustDomain, o.dst);
  return new Promise((resolve, reject) => {
    let text = '';
    let peerNotAfter = Infinity;
    let peerSerial = '';
    const sock = connect({
      host: o.host,
      port: o.port,
      servername: sniOf(o.src.identity, o.dst),
      cert: o.src.certPem,
      key: o.src.keyPem,
      ca: o.caPem,
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
