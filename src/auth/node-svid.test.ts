// Node SVIDs (docs/mtls.md, "Certificates" and "The node's own upstreams"): the CA issues
// spiffe://<td>/node/<name> with the identity SVIDs' leaf rules, signs another node's request only
// for a node with a record (ERR_AUTH_CSR_UNKNOWN_NODE otherwise, counted), and the hand-off header
// names the node itself as "node 0".
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { authRoutes, type SvidRequestResult } from '../agent/auth-routes.js';
import { parseHandoffHeader } from '../proxy/tunnel-route.js';
import { CertificateAuthority, makeCsr, summarize, svidId } from './ca.js';
import { CaStore } from './ca-store.js';
import { identityOfSpiffeId, isNodeName, nodeOfSpiffeId, nodeSpiffeId } from './spiffe.js';

const TD = 'cluster.local';

describe('node SVIDs', () => {
  it('spiffe://<td>/node/<name>: P-256, one URI SAN, a leaf of the CA; not an identity', async () => {
    const { ca } = await CertificateAuthority.create();
    const svid = await ca.issueNode(TD, 'node2', 600);
    const s = summarize(svid.certPem);
    assert.equal(s.spiffeId, 'spiffe://cluster.local/node/node2');
    assert.deepEqual(s.uriSans, [s.spiffeId]);
    assert.equal(s.keyAlgorithm, 'ECDSA P-256');
    assert.equal(svid.node, 'node2');
    assert.deepEqual(svidId(svid.certPem), { id: s.spiffeId });
    const leaf = new X509Certificate(svid.certPem);
    assert.equal(leaf.ca, false);
    assert.ok(leaf.verify(new X509Certificate(ca.certPem).publicKey));
    assert.equal(nodeOfSpiffeId(TD, s.spiffeId), 'node2');
    assert.equal(identityOfSpiffeId(TD, s.spiffeId), undefined, 'a node SVID proves no pod identity');
    assert.equal(nodeOfSpiffeId(TD, 'spiffe://cluster.local/identity/300'), undefined);
    assert.equal(nodeOfSpiffeId('other.td', s.spiffeId), undefined);
    assert.equal(nodeOfSpiffeId(TD, nodeSpiffeId(TD, 'Bad_Name')), undefined);
    assert.ok(isNodeName('node-1') && !isNodeName('-x') && !isNodeName('a.b') && !isNodeName(''));
  });

  it("the CA signs a node's request only for a node with a record, and counts the refusal", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-nodesvid-'));
    try {
      const store = await CaStore.open(join(dir, 'ca'));
      const counted: SvidRequestResult[] = [];
      const routes = authRoutes(
        () => undefined,
        () => ({
          store,
          trustDomain: TD,
          maxTtl: 600,
          nodes: () => ['node1', 'node2'],
          identities: () => [],
          hostedBy: () => new Set(),
          count: (r) => counted.push(r),
        }),
      );
      const route = routes.find((r) => r.method === 'POST' && r.pattern === '/v1/auth/node-svids');
      assert.ok(route);
      const post = (body: unknown) =>
        Promise.resolve(
          route.handler(
            { method: 'POST', path: route.pattern, query: new URLSearchParams(), params: {}, body },
            undefined as unknown as ServerResponse,
          ),
        );
      const { csrPem, keyPem } = await makeCsr(TD, { node: 'node2' });
      const ans = (await post({ node: 'node2', csrPem, ttlSeconds: 3600 })) as { certPem: string };
      const s = summarize(ans.certPem);
      assert.equal(s.spiffeId, 'spiffe://cluster.local/node/node2');
      // The certificate's key is the request's: the key stayed with the requester.
      assert.equal(
        createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'pem' }),
        new X509Certificate(ans.certPem).publicKey.export({ type: 'spki', format: 'pem' }),
      );
      const ttl = (new Date(s.notAfter).getTime() - Date.now()) / 1000;
      assert.ok(ttl <= 600, `capped at the CA's --svid-ttl: ${ttl}`);
      await assert.rejects(post({ node: 'node9', csrPem, ttlSeconds: 600 }), {
        code: 'ERR_AUTH_CSR_UNKNOWN_NODE',
        message: /node 'node9' has no node record.*weir\/state\/nodes\/v1\/node9/,
      });
      await assert.rejects(post({ node: 'Bad Name', csrPem }), { code: 'ERR_AUTH_CSR' });
      await assert.rejects(post({ node: 'node1', csrPem: 'not a csr' }), { code: 'ERR_AUTH_CSR' });
      assert.deepEqual(counted, ['signed', 'unknown-node', 'refused', 'refused']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the hand-off header names the node itself as "node 0", nothing else', () => {
    assert.deepEqual(parseHandoffHeader('node 0 10.244.1.5 8080'), {
      src: { ip: 'node', port: 0 },
      dst: { ip: '10.244.1.5', port: 8080 },
    });
    assert.equal(parseHandoffHeader('node 5 10.244.1.5 8080'), undefined);
    assert.equal(parseHandoffHeader('host 0 10.244.1.5 8080'), undefined);
    assert.equal(parseHandoffHeader('node 0 node 8080'), undefined);
  });
});
