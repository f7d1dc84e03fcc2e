// The CA, its SVIDs and the mTLS handshake, over real TLS 1.3 sockets on the loopback: what the
// auth listener accepts, what it refuses (a rogue CA, another identity, a revoked certificate, an
// identity it has no SVID for) and that it counts each refusal.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateAuthority, makeCsr, splitBundle, summarize, svidId, svidOf, type Svid } from './ca.js';
import { CaStore } from './ca-store.js';
import { authNodeId, authNodes } from './node-id.js';
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

describe('several nodes: CSRs, the destination side dialling, expiry, CA rotation', () => {
  it('signs a CSR for the identity the CA decides; the key stays with the requester', async () => {
    const { ca } = await CertificateAuthority.create();
    const { csrPem, keyPem } = await makeCsr(TD, 777);
    const signed = await ca.signCsr(TD, 777, 600, csrPem);
    assert.equal('keyPem' in signed, false);
    const svid = svidOf(777, signed.certPem, keyPem);
    assert.equal(svid.spiffeId, identitySpiffeId(TD, 777));
    assert.equal(svid.serial, signed.serial);
    // The certificate's key is the CSR's.
    const pub = new X509Certificate(svid.certPem).publicKey;
    const { createPrivateKey, createPublicKey } = await import('node:crypto');
    assert.equal(
      createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }),
      pub.export({ type: 'spki', format: 'pem' }),
    );
    await assert.rejects(ca.signCsr(TD, 777, 600, 'not a csr'), /ERR_AUTH_CSR|PKCS#10/);
    // One byte of the request's subject changed: its signature no longer verifies.
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('weir'));
    der[at + 3] = 0x73; // weir -> weis
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(ca.signCsr(TD, 777, 600, tampered), /does not verify/);
  });

  it('the destination side dials (as-dst), an expired SVID is refused as expired, the listener reports the pair', async () => {
    const { ca } = await CertificateAuthority.create();
    const client = await ca.issue(TD, 500, 600);
    const server = await ca.issue(TD, 600, 600);
    const seen: { src: number; dst: number }[] = [];
    const l = new AuthListener({
      trustDomain: () => TD,
      caPem: ca.certPem,
      svid: (id) => (id === 500 ? client : undefined),
      accepted: (a) => seen.push({ src: a.src, dst: a.dst }),
    });
    const { port } = await l.listen('127.0.0.1', 0);
    try {
      // The pair 500 → 600, dialled by 600's node: it presents 600's SVID, the listener 500's.
      await authenticate({
        host: '127.0.0.1',
        port,
        trustDomain: TD,
        caPem: ca.certPem,
        src: server,
        dst: 500,
        side: 'dst',
      });
      assert.deepEqual(seen, [{ src: 500, dst: 600 }]);
      const expired = await ca.issue(TD, 600, -5);
      await assert.rejects(
        authenticate({
          host: '127.0.0.1',
          port,
          trustDomain: TD,
          caPem: ca.certPem,
          src: expired,
          dst: 500,
          side: 'dst',
        }),
        /refused: expired/,
      );
      assert.equal(l.counters.refused.expired, 1);
    } finally {
      await l.close();
    }
  });

  it('CA rotation: both CAs trusted during the overlap, the old one retired after it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-ca-'));
    try {
      const store = await CaStore.open(join(dir, 'ca'));
      const old = store.current;
      const oldSvid = await old.issue(TD, 500, 600);
      let bundle = store.bundlePem();
      const l = new AuthListener({
        trustDomain: () => TD,
        caPem: bundle,
        bundle: () => bundle,
        svid: (id) => (id === 600 ? serverSvid : undefined),
      });
      let serverSvid = await old.issue(TD, 600, 600);
      const { port } = await l.listen('127.0.0.1', 0);
      try {
        const hs = (src: Svid) =>
          authenticate({ host: '127.0.0.1', port, trustDomain: TD, caPem: bundle, src, dst: 600 });
        await hs(oldSvid);
        const s = await store.rotate(5);
        assert.deepEqual(
          s.cas.map((c) => c.role),
          ['signing', 'retiring'],
        );
        await assert.rejects(store.rotate(5), /in progress/);
        bundle = store.bundlePem();
        assert.equal(splitBundle(bundle).length, 2);
        l.refreshTrust();
        const newSvid = await store.current.issue(TD, 500, 600);
        // Overlap: an old-CA SVID and a new-CA SVID both pass, either way round.
        await hs(oldSvid);
        await hs(newSvid);
        serverSvid = await store.current.issue(TD, 600, 600);
        await hs(oldSvid);
        // Reopened, the store still has the rotation.
        assert.equal((await CaStore.open(join(dir, 'ca'))).bundlePem(), bundle);
        assert.equal(store.tick(Date.now() + 6000), true);
        bundle = store.bundlePem();
        assert.equal(splitBundle(bundle).length, 1);
        l.refreshTrust();
        await assert.rejects(hs(oldSvid), /refused: untrusted/);
        await hs(newSvid);
      } finally {
        await l.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without a trust bundle (the CA node not reached yet) the listener accepts nobody and nobody dials', async () => {
    const { ca } = await CertificateAuthority.create();
    const client = await ca.issue(TD, 500, 600);
    const server = await ca.issue(TD, 600, 600);
    const l = new AuthListener({ trustDomain: () => TD, caPem: '', bundle: () => '', svid: () => server });
    const { port } = await l.listen('127.0.0.1', 0);
    try {
      await assert.rejects(
        authenticate({ host: '127.0.0.1', port, trustDomain: TD, caPem: ca.certPem, src: client, dst: 600 }),
      );
      assert.equal(l.counters.accepted, 0);
      await assert.rejects(
        authenticate({ host: '127.0.0.1', port, trustDomain: TD, caPem: '', src: client, dst: 600 }),
        /no trust bundle/,
      );
    } finally {
      await l.close();
    }
  });

  it('node ids: the low 16 bits of the underlay address; shared ids are ambiguous', () => {
    assert.equal(authNodeId('198.18.0.11'), 11);
    assert.equal(authNodeId('10.1.0.0'), 0xffff);
    assert.equal(authNodeId(undefined), undefined);
    const m = authNodes([
      { name: 'a', underlayIP: '198.18.0.11' },
      { name: 'b', underlayIP: '198.18.0.12' },
      { name: 'c', underlayIP: '10.0.0.12' },
    ]);
    assert.equal(m.get(11)?.name, 'a');
    assert.equal(m.get(12), undefined);
    assert.equal(m.has(12), true);
  });
});
