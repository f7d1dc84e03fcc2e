// weir's certificate authority and the X.509-SVIDs it issues (SPIFFE X509-SVID.md): P-256 ECDSA,
// built with @peculiar/x509 over Node's webcrypto.
//
// The CA: one self-signed P-256 certificate per lab (cA=true, keyCertSign|cRLSign, critical), its
// key a PKCS#8 PEM file of mode 0600 in a 0700 directory of the node that runs the API and the CA
// (the lab's state, /run/weir/labs/<lab>/agent/ca/): the key never leaves that node. In a cluster
// the other nodes' agents would ask that node's API for their identities' SVIDs (a CSR per
// identity, like ztunnel asking istiod), never for the key; keeping it encrypted in etcd instead
// would hand every node the means to mint any identity.
//
// An SVID: exactly one URI SAN (spiffe://<td>/identity/<id>), cA=false (critical), keyUsage
// digitalSignature only (critical), EKU serverAuth + clientAuth, a random serial, notBefore a
// minute in the past (clock skew), notAfter = now + TTL. Its key is generated here and kept in
// memory only.
import 'reflect-metadata';
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { WeirError } from '../shared/errors.js';
import { privateDirMode, privateDirSync, privateFileMode } from '../shared/private-fs.js';
import { identitySpiffeId, nodeSpiffeId } from './spiffe.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as ReturnType<typeof x509.cryptoProvider.get>);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** The CA's own lifetime (a lab's; rotating the CA is a later step). */
export const CA_TTL_DAYS = 365;
/** notBefore is set this far back: peers whose clocks lag a little still accept a fresh SVID. */
const SKEW_MS = 60_000;

export interface Svid {
  /** The identity it names (0 for a node SVID). */
  identity: number;
  /** A node SVID: the node it names (spiffe://<td>/node/<name>). */
  node?: string;
  spiffeId: string;
  /** PEM of the leaf. */
  certPem: string;
  /** PEM (PKCS#8) of its private key. */
  keyPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

const pem = (der: ArrayBuffer, label: string) => x509.PemConverter.encode(der, label);

function randomSerial(): string {
  const b = webcrypto.getRandomValues(new Uint8Array(16));
  b[0] = ((b[0] ?? 0) & 0x3f) | 0x40; // positive, and no leading zero byte to lose in print
  return Buffer.from(b).toString('hex');
}

export class CertificateAuthority {
  private constructor(
    readonly cert: x509.X509Certificate,
    readonly certPem: string,
    private readonly key: CryptoKey,
  ) {}

  /** A new CA in memory (tests, and `open` when none exists yet). */
  static async create(name = 'weir CA'): Promise<{ ca: CertificateAuthority; keyPem: string }> {
    const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=${name}, O=weir`,
      notBefore: new Date(now - SKEW_MS),
      notAfter: new Date(now + CA_TTL_DAYS * 86_400_000),
      signingAlgorithm: SIGN,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const keyPem = pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
    return { ca: new CertificateAuthority(cert, cert.toString('pem'), keys.privateKey), keyPem };
  }

  /**
   * The CA kept in `dir` (ca.crt, ca.key), created there on first use: the directory 0700, the
   * key 0600. A CA that has expired, or a key that does not match the certificate, is an error.
   */
  static async open(dir: string): Promise<CertificateAuthority> {
    const certFile = join(dir, 'ca.crt');
    const keyFile = join(dir, 'ca.key');
    privateDirSync(dir);
    if (!existsSync(certFile) || !existsSync(keyFile)) {
      // Agents of several nodes of one lab may start together: one creates (the lock directory
      // is made atomically), the others wait for its files.
      const lock = join(dir, '.creating');
      let mine = false;
      try {
        mkdirSync(lock, { mode: privateDirMode });
        mine = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      if (mine) {
        try {
          const { ca, keyPem } = await CertificateAuthority.create();
          writeFileSync(keyFile, keyPem, { mode: privateFileMode });
          writeFileSync(certFile, ca.certPem, { mode: privateFileMode });
          return ca;
        } finally {
          rmSync(lock, { recursive: true, force: true });
        }
      }
      for (let i = 0; i < 200 && existsSync(lock); i++) await new Promise((r) => setTimeout(r, 50));
      if (!existsSync(certFile) || !existsSync(keyFile))
        throw new WeirError(
          'ERR_AUTH_CA',
          `no CA in ${dir}: another agent was creating it and did not finish`,
          {
            location: { file: dir },
          },
        );
    }
    const certPem = readFileSync(certFile, 'utf8');
    const cert = new x509.X509Certificate(certPem);
    const der = x509.PemConverter.decodeFirst(readFileSync(keyFile, 'utf8'));
    const key = await webcrypto.subtle.importKey('pkcs8', der, EC, false, ['sign']);
    const ca = new CertificateAuthority(cert, certPem, key);
    if (cert.notAfter.getTime() <= Date.now())
      throw new WeirError('ERR_AUTH_CA', `the CA in ${certFile} expired at ${cert.notAfter.toISOString()}`, {
        location: { file: certFile },
      });
    // The key must be the certificate's: sign something and verify it with the certificate.
    const probe = await ca.issue('check.invalid', 1, 60);
    if (!new NodeX509(probe.certPem).verify(new NodeX509(certPem).publicKey))
      throw new WeirError('ERR_AUTH_CA', `${keyFile} is not the key of ${certFile}`, {
        location: { file: keyFile },
      });
    return ca;
  }

  /** An X.509-SVID for `identity` in trust domain `td`, valid for `ttlSeconds`. */
  async issue(td: string, identity: number, ttlSeconds: number): Promise<Svid> {
    const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await this.#sign(td, { identity }, ttlSeconds, keys.publicKey);
    return {
      ...cert,
      keyPem: pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
    };
  }

  /** A node SVID (spiffe://<td>/node/<node>), valid for `ttlSeconds`, with its key (the CA node's own). */
  async issueNode(td: string, node: string, ttlSeconds: number): Promise<Svid> {
    const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await this.#sign(td, { node }, ttlSeconds, keys.publicKey);
    return {
      ...cert,
      keyPem: pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
    };
  }

  /**
   * The SVID of a certificate signing request (PKCS#10) another node made for `identity`, as
   * istiod signs ztunnel's: the request's signature must verify (its maker holds the key) and its
   * key must be P-256; what the request names is ignored — the CA puts `identity`'s SPIFFE ID in
   * the certificate. The key never reaches this node: the answer has no keyPem.
   */
  async signCsr(
    td: string,
    identity: number,
    ttlSeconds: number,
    csrPem: string,
  ): Promise<Omit<Svid, 'keyPem'>> {
    return this.#sign(td, { identity }, ttlSeconds, await csrKey(csrPem));
  }

  /** The node SVID of another node's request (as signCsr; the caller checked the node's record). */
  async signNodeCsr(
    td: string,
    node: string,
    ttlSeconds: number,
    csrPem: string,
  ): Promise<Omit<Svid, 'keyPem'>> {
    return this.#sign(td, { node }, ttlSeconds, await csrKey(csrPem));
  }

  async #sign(
    td: string,
    subject: { identity: number } | { node: string },
    ttlSeconds: number,
    publicKey: CryptoKey,
  ): Promise<Omit<Svid, 'keyPem'>> {
    const now = Date.now();
    const identity = 'identity' in subject ? subject.identity : 0;
    const spiffeId = 'node' in subject ? nodeSpiffeId(td, subject.node) : identitySpiffeId(td, identity);
    const serial = randomSerial();
    const notBefore = new Date(Math.floor((now - SKEW_MS) / 1000) * 1000);
    const notAfter = new Date(Math.floor((now + ttlSeconds * 1000) / 1000) * 1000);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: 'node' in subject ? `O=weir, OU=node ${subject.node}` : `O=weir, OU=identity ${identity}`,
      issuer: this.cert.subject,
      notBefore,
      notAfter,
      signingAlgorithm: SIGN,
      publicKey,
      signingKey: this.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    return {
      identity,
      ...('node' in subject ? { node: subject.node } : {}),
      spiffeId,
      certPem: cert.toString('pem'),
      serial,
      notBefore,
      notAfter,
    };
  }

  /** SHA-256 fingerprint of the CA certificate (names a CA in a bundle). */
  get fingerprint(): string {
    return new NodeX509(this.certPem).fingerprint256;
  }
}

/**
 * The public key of a PKCS#10 request: its signature must verify (its maker holds the key) and
 * the key be P-256; what the request names is ignored.
 */
async function csrKey(csrPem: string): Promise<CryptoKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new WeirError(
      'ERR_AUTH_CSR',
      `the certificate request is not PKCS#10 PEM: ${(err as Error).message}`,
      {
        location: { field: 'csr' },
      },
    );
  }
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256')
    throw new WeirError(
      'ERR_AUTH_CSR',
      `the certificate request's key is ${alg.name} ${alg.namedCurve ?? ''}, not ECDSA P-256`,
      {
        location: { field: 'csr' },
      },
    );
  if (!(await csr.verify()))
    throw new WeirError('ERR_AUTH_CSR', "the certificate request's signature does not verify", {
      location: { field: 'csr' },
    });
  return csr.publicKey.export(EC, ['verify']);
}

/**
 * A key pair and a PKCS#10 request for an SVID, made on the node that will hold the key (the
 * request names the SPIFFE ID it asks for; the CA decides). The key stays with the caller.
 */
export async function makeCsr(
  td: string,
  subject: number | { node: string },
): Promise<{ csrPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
  const node = typeof subject === 'number' ? undefined : subject.node;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: node === undefined ? `O=weir, OU=identity ${String(subject)}` : `O=weir, OU=node ${node}`,
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        {
          type: 'url',
          value: node === undefined ? identitySpiffeId(td, subject as number) : nodeSpiffeId(td, node),
        },
      ]),
    ],
  });
  return {
    csrPem: csr.toString('pem'),
    keyPem: pem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
  };
}

/** The Svid of a certificate the CA signed for a key made here (makeCsr). */
export function svidOf(identity: number, certPem: string, keyPem: string): Svid {
  const cert = new x509.X509Certificate(certPem);
  return {
    identity,
    spiffeId: uriSans(cert)[0] ?? '',
    certPem,
    keyPem,
    serial: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  };
}

/** The certificates of a PEM bundle, one PEM each. */
export function splitBundle(bundlePem: string): string[] {
  return bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
}

export interface SvidSummary {
  spiffeId: string;
  uriSans: string[];
  serial: string;
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  keyAlgorithm: string;
  /** SHA-256 of the DER. */
  fingerprint: string;
}

/** What a certificate says, for people (`weir identity cert get`). */
export function summarize(certPem: string): SvidSummary {
  const cert = new x509.X509Certificate(certPem);
  const uris = uriSans(cert);
  const nodeCert = new NodeX509(certPem);
  const alg = cert.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  return {
    spiffeId: uris[0] ?? '',
    uriSans: uris,
    serial: cert.serialNumber,
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    keyAlgorithm: alg.namedCurve ? `${alg.name} ${alg.namedCurve}` : alg.name,
    fingerprint: nodeCert.fingerprint256,
  };
}

function uriSans(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return (san?.names.items ?? []).filter((n) => n.type === 'url').map((n) => n.value);
}

/**
 * SPIFFE's leaf checks on a certificate whose chain TLS verified already (X509-SVID.md §5): not a
 * CA, keyUsage present with digitalSignature and without keyCertSign/cRLSign, exactly one URI SAN,
 * a spiffe:// ID with a path. Returns that ID, or why it is not an SVID.
 */
export function svidId(der: Buffer | string): { id: string } | { error: string } {
  const cert = new x509.X509Certificate(der);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca) return { error: 'a CA certificate is not an SVID' };
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku) return { error: 'no keyUsage extension' };
  if (!(ku.usages & x509.KeyUsageFlags.digitalSignature)) return { error: 'keyUsage lacks digitalSignature' };
  if (ku.usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign))
    return { error: 'keyUsage has keyCertSign or cRLSign' };
  const uris = uriSans(cert);
  if (uris.length !== 1) return { error: `${uris.length} URI SANs (an SVID has exactly one)` };
  const id = uris[0] as string;
  const m = /^spiffe:\/\/[^/]+(\/.+)$/.exec(id);
  if (!m) return { error: `'${id}' is not a SPIFFE ID with a path` };
  return { id };
}
