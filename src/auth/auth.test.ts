// The CA, its SVIDs and the mTLS handshake, over real TLS 1.3 sockets on the loopback: what the
// auth listener accepts, what it refuses (a rogue CA, another identity, a revoked certificate, an
// identity it has no SVID for) and that it counts each refusal.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority, summarize, svidId, type Svid } from './ca.js';
import { AuthListener, authenticate } from './handshake.js';
import { checkTrustDomain, identityOfSpiffeId, identitySpiffeId } from './spiffe.js';

const TD = 'cluster.local';

describe('CA and SVIDs', () => {
  it('an SVID: P-256, exactly one URI SAN spiffe://<td>/identity/<id>, a leaf signed by the CA', async () => {
    const { ca } = await CertificateAuthority.create();
    const svid = await ca.issue(TD, 1234, 3600);
    const s = summarize(svid.certPem);
    assert.equal(s.spiffeId, 'spiffe://cluster.local/identity/1234');
    assert.deepEqual(s.uriSans, [s.spiffeId]);
    assert.equal(s.keyAlgorithm, 'ECDSA P-256');
    assert.deepEqual(svidId(svid.certPem), { id: s.spiffeId });
    assert.deepEqual(svidId(ca.certPem), { error: 'a CA certificate is not an SVID' });
    const leaf = new X509Certificate(svid.certPem);
    assert.equal(leaf.ca, false);
    assert.ok(leaf.verify(new X509Certificate(ca.certPem).publicKey));
    assert.ok(leaf.checkIssued(new X509Certificate(ca.certPem)));
    const ttl = (svid.notAfter.getTime() - Date.now()) / 1000;
    assert.ok(ttl > 3590 && ttl <= 3600, `ttl ${ttl}`);
  });

  it('the CA is kept root-only and reopened as it was', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-ca-'));
    try {
      const ca = await CertificateAuthority.open(join(dir, 'ca'));
      assert.equal(statSync(join(dir, 'ca', 'ca.key')).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'ca')).mode & 0o777, 0o700);
      const again = await CertificateAuthority.open(join(dir, 'ca'));
      assert.equal(again.certPem, ca.certPem);
      const svid = await again.issue(TD, 300, 60);
      assert.ok(new X509Certificate(svid.certPem).verify(new X509Certificate(ca.certPem).publicKey));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('agents opening the CA together get one CA', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-ca-'));
    try {
      const cas = await Promise.all([1, 2, 3, 4].map(() => CertificateAuthority.open(join(dir, 'ca'))));
      assert.equal(new Set(cas.map((c) => c.certPem)).size, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trust domains and SPIFFE IDs', () => {
    assert.equal(checkTrustDomain('weir.local'), 'weir.local');
    assert.throws(() => checkTrustDomain('Bad Domain'), { code: 'ERR_AUTH_TRUST_DOMAIN' });
    assert.throws(() => checkTrustDomain('a:80'), { code: 'ERR_AUTH_TRUST_DOMAIN' });
    assert.equal(identityOfSpiffeId(TD, identitySpiffeId(TD, 4242)), 4242);
    assert.equal(identityOfSpiffeId(TD, 'spiffe://other/identity/4242'), undefined);
    assert.equal(identityOfSpiffeId(TD, 'spiffe://cluster.local/ns/a/sa/b'), undefined);
  });
});

describe('mTLS handshake with the auth listener', () => {
  let ca: CertificateAuthority;
  let rogue: CertificateAuthority;
  const svids = new Map<number, Svid>();
  const revoked = new Set<string>();
  let listener: AuthListener;
  let port = 0;

  before(async () => {
    ca = (await CertificateAuthority.create()).ca;
    rogue = (await CertificateAuthority.create('rogue CA')).ca;
    for (const id of [1001, 1002, 1003]) svids.set(id, await ca.issue(TD, id, 3600));
    listener = new AuthListener({
      trustDomain: () => TD,
      caPem: ca.certPem,
      svid: (id) => svids.get(id),
      revoked: (serial) => revoked.has(serial),
    });
    port = (await listener.listen('127.0.0.1', 0)).port;
  });
  after(() => listener?.close());

  const hs = (src: Svid, dst: number, caPem = ca.certPem) =>
    authenticate({ host: '127.0.0.1', port, trustDomain: TD, caPem, src, dst });

  it('accepts the pair: both SVIDs verified, expiry = the earlier notAfter', async () => {
    const short = await ca.issue(TD, 1001, 120);
    const before = listener.counters.accepted;
    const res = await hs(short, 1002);
    assert.equal(res.notAfter.getTime(), short.notAfter.getTime());
    assert.equal(res.peerSerial, svids.get(1002)?.serial);
    const res2 = await hs(svids.get(1001) as Svid, 1002);
    assert.equal(
      res2.notAfter.getTime(),
      Math.min(svids.get(1001)!.notAfter.getTime(), svids.get(1002)!.notAfter.getTime()),
    );
    assert.equal(listener.counters.accepted, before + 2);
  });

  it('refuses a certificate of another CA (rogue), and counts it', async () => {
    const fake = await rogue.issue(TD, 1001, 3600);
    const n = listener.counters.refused.untrusted;
    await assert.rejects(hs(fake, 1002), /refused: untrusted/);
    assert.equal(listener.counters.refused.untrusted, n + 1);
  });

  it('refuses a valid SVID of another identity claiming the pair, and counts it', async () => {
    const n = listener.counters.refused['wrong-identity'];
    const other = { ...(svids.get(1003) as Svid), identity: 1001 }; // 1003's certificate, pair 1001→1002
    await assert.rejects(hs(other, 1002), /refused: wrong-identity/);
    assert.equal(listener.counters.refused['wrong-identity'], n + 1);
  });

  it('refuses a revoked SVID, and a destination it has no SVID for', async () => {
    const old = await ca.issue(TD, 1001, 3600);
    revoked.add(old.serial);
    await assert.rejects(hs(old, 1002), /refused: revoked/);
    assert.equal(listener.counters.refused.revoked, 1);
    const n = listener.counters.refused['unknown-identity'];
    await assert.rejects(hs(svids.get(1001) as Svid, 9999));
    assert.equal(listener.counters.refused['unknown-identity'], n + 1);
  });

  it('the client refuses a listener that proves another identity or another CA', async () => {
    const saved = svids.get(1002) as Svid;
    svids.set(1002, svids.get(1003) as Svid);
    try {
      await assert.rejects(
        hs(svids.get(1001) as Svid, 1002),
        /presented spiffe:\/\/cluster.local\/identity\/1003/,
      );
    } finally {
      svids.set(1002, saved);
    }
    await assert.rejects(hs(svids.get(1001) as Svid, 1002, rogue.certPem));
  });

  it('a rotated SVID is used by the next handshake; the old one keeps working until it expires', async () => {
    const old = svids.get(1002) as Svid;
    const fresh = await ca.issue(TD, 1002, 3600);
    svids.set(1002, fresh);
    const res = await hs(svids.get(1001) as Svid, 1002);
    assert.equal(res.peerSerial, fresh.serial);
    assert.notEqual(fresh.serial, old.serial);
    // The old client certificate (not revoked, not expired) is still accepted.
    const a = svids.get(1001) as Svid;
    svids.set(1001, await ca.issue(TD, 1001, 3600));
    await hs(a, 1002);
  });
});
