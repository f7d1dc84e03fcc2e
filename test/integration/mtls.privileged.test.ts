// Mutual authentication in a lab, with real TCP connections and the real CLI:
//   - a CiliumNetworkPolicy with `authentication: {mode: required}` drops the first connection
//     (189 "Authentication required", counted, a flow naming the rule); the agent's mTLS handshake
//     with its own auth listener follows, and a retry within a bound connects;
//   - `weir auth list` shows the pair with its expiry; `weir identity cert get` shows the SVID;
//   - the node's auth listener, dialled from inside a pod, refuses a certificate of another CA and
//     a valid SVID of another identity, and counts both;
//   - an SVID is renewed at half its life and the pair's expiry moves with it (new connections
//     pass without a gap; established ones are never judged again, see lxc-auth's test);
//   - a released identity's pair and SVID are removed.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuthStatus, IdentityCert } from '../../src/agent/auth.js';
import { agentDir } from '../../src/agent/paths.js';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import { Lab } from '../../src/lab/index.js';
import type { Flow } from '../../src/observe/flow.js';
import { repoRoot } from '../../src/shared/paths.js';
import { hostRoutingAgent } from '../support/host-routing.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-mtls');
const TTL = 30; // seconds: renewed after ~15 s

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: other, namespace: app, labels: { role: other } }
spec: { containers: [{ name: o }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: app, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }, { containerPort: 81 }] }] }
`;

const policy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: server-auth, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: server } }
  ingress:
    - fromEndpoints: [{ matchLabels: { role: client } }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
      authentication: { mode: required }
    - fromEndpoints: [{ matchLabels: { role: other } }]
      toPorts: [{ ports: [{ port: "81", protocol: TCP }] }]
`;

// Run inside a pod (`weir lab exec`): handshakes with the node's auth listener as a rogue would.
const rogueScript = (
  node: { ip: string; port: number },
  ids: { client: number; server: number; other: number },
) => `
import { readFileSync } from 'node:fs';
import { CertificateAuthority } from '${repoRoot}/dist/src/auth/ca.js';
import { authenticate } from '${repoRoot}/dist/src/auth/handshake.js';
const caPem = readFileSync('${join(agentDir(LAB), 'ca', 'ca.crt')}', 'utf8');
const real = await CertificateAuthority.open('${join(agentDir(LAB), 'ca')}');
const rogue = (await CertificateAuthority.create('rogue')).ca;
const out = {};
const hs = (src) => authenticate({ host: '${node.ip}', port: ${node.port}, trustDomain: 'cluster.local', caPem, src, dst: ${ids.server} })
  .then(() => 'accepted', (e) => e.message);
// A certificate of another CA that claims the client's identity.
out.rogueCa = await hs(await rogue.issue('cluster.local', ${ids.client}, 600));
// A valid SVID of "other" presented for the pair client -> server.
out.otherIdentity = await hs({ ...(await real.issue('cluster.local', ${ids.other}, 600)), identity: ${ids.client} });
console.log(JSON.stringify(out));
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function probe(from: string, to: string, port: string): Promise<boolean> {
  const r = await cli(['lab', 'probe', '--from', from, '--to', to, '--port', port, '--timeout', '800'], LAB);
  return r.code === 0;
}

const authStatus = async () => JSON.parse(await ok(['auth', 'list', '-o', 'json'], LAB)) as AuthStatus;

describe('mutual authentication (authentication.mode: required)', { timeout: 300_000 }, () => {
  let dir = '';
  let ids: Record<string, number> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-mtls-'));
    await writeFile(join(dir, 'pods.yaml'), pods);
    await writeFile(join(dir, 'policy.yaml'), policy);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '--no-agent'], LAB);
    const node = await (await Lab.open(LAB)).node();
    await startAgent({
      ...hostRoutingAgent(),
      lab: LAB,
      nodeNetns: node.netns,
      agentArgs: ['--svid-ttl', String(TTL)],
    });
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    await ok(['apply', '-f', join(dir, 'policy.yaml')], LAB);
    const eps = JSON.parse(await ok(['endpoint', 'list', '-o', 'json'], LAB)) as {
      pod: string;
      identity: number;
    }[];
    ids = Object.fromEntries(eps.map((e) => [e.pod, e.identity]));
  });

  after(async () => {
    await stopAgent(LAB);
    await cli(['lab', 'down'], LAB);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the policy map entry carries the auth flag', async () => {
    const rows = JSON.parse(await ok(['bpf', 'policy', 'get', 'app/server', '-o', 'json'], LAB)) as {
      entries: { identity: number; port?: number; authType: string }[];
    };
    const e = rows.entries.find((r) => r.identity === ids.client && r.port === 80);
    assert.equal(e?.authType, 'mtls');
    assert.equal(rows.entries.find((r) => r.identity === ids.other)?.authType, 'disabled');
  });

  it('drops the first connection (189, counted, a flow naming the rule), allows after the handshake', async (t) => {
    const since = new Date(Date.now() - 100).toISOString();
    const t0 = Date.now();
    assert.equal(await probe('app/client', 'app/server', '80/TCP'), false, 'the first attempt is dropped');
    let tries = 1;
    let connected = false;
    while (!connected && tries < 20) {
      await sleep(250);
      tries++;
      connected = await probe('app/client', 'app/server', '80/TCP');
    }
    assert.ok(connected, `connected after ${tries} attempts`);
    t.diagnostic(`connected at attempt ${tries}, ${Date.now() - t0} ms after the first SYN`);
    // Traffic without the requirement is unaffected.
    assert.equal(await probe('app/other', 'app/server', '81/TCP'), true);

    const s = await authStatus();
    const pair = s.pairs.find((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server);
    assert.ok(pair, JSON.stringify(s.pairs));
    assert.equal(pair.remoteNodeId, 0);
    assert.equal(pair.valid, true);
    const left = (new Date(pair.expires).getTime() - Date.now()) / 1000;
    assert.ok(left > 0 && left <= TTL, `expires in ${left} s`);
    assert.ok(s.handshakes.ok >= 1);
    assert.ok(s.counters.accepted >= 1);
    const table = await ok(['auth', 'list'], LAB);
    assert.match(table, new RegExp(`${ids.client}\\s+${ids.server}\\s+local`));

    const metrics = JSON.parse(await ok(['bpf', 'metrics', 'list', '-o', 'json'], LAB)) as {
      reason: number;
      description: string;
      packets: number;
    }[];
    const m = metrics.find((r) => r.reason === 189);
    assert.equal(m?.description, 'Authentication required');
    assert.ok((m?.packets ?? 0) >= 1);

    const r = await cli(
      ['observe', '-o', 'json', '--since', since, '--verdict', 'DROPPED', '--pod', 'app/server'],
      LAB,
    );
    assert.equal(r.code, 0, r.stderr);
    const flows = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Flow);
    const drop = flows.find((f) => f.weir.type === 'drop' && f.drop_reason === 189);
    assert.ok(drop, `a drop flow: ${r.stdout}`);
    assert.equal(drop.drop_reason_desc, 'AUTH_REQUIRED');
    assert.equal(drop.auth_type, 'SPIRE');
    assert.equal(drop.source.pod_name, 'client');
    assert.equal(drop.destination.pod_name, 'server');
    assert.equal(drop.ingress_denied_by?.[0]?.rule, 'CiliumNetworkPolicy app/server-auth ingress[0]');
    const text = await ok(['observe', '--since', since, '--verdict', 'DROPPED', '--pod', 'app/server'], LAB);
    assert.match(text, /Authentication required/);
  });

  it('weir identity cert get: the SVID of an identity (one URI SAN, P-256, the TTL)', async () => {
    const c = JSON.parse(
      await ok(['identity', 'cert', 'get', String(ids.server), '-o', 'json'], LAB),
    ) as IdentityCert;
    assert.equal(c.spiffeId, `spiffe://cluster.local/identity/${ids.server}`);
    assert.deepEqual(c.summary.uriSans, [c.spiffeId]);
    assert.equal(c.summary.keyAlgorithm, 'ECDSA P-256');
    assert.deepEqual(c.serviceAccountIds, ['spiffe://cluster.local/ns/app/sa/default']);
    const life = (new Date(c.summary.notAfter).getTime() - new Date(c.summary.notBefore).getTime()) / 1000;
    assert.ok(life >= TTL && life <= TTL + 61, `life ${life}`);
    const text = await ok(['identity', 'cert', 'get', String(ids.server)], LAB);
    assert.match(text, /SPIFFE ID: +spiffe:\/\/cluster\.local\/identity\/\d+/);
    assert.match(text, /-----BEGIN CERTIFICATE-----/);
    const r = await cli(['identity', 'cert', 'get', '2'], LAB);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ERR_AUTH_NO_SVID/);
  });

  it('the auth listener refuses a rogue CA and another identity, and counts them', async () => {
    const node = await (await Lab.open(LAB)).node();
    const script = join(dir, 'rogue.mjs');
    await writeFile(script, rogueScript({ ip: node.ip, port: 4250 }, ids as never));
    const before = (await authStatus()).counters.refused;
    const out = await ok(['lab', 'exec', 'app/other', '--', process.execPath, script], LAB);
    const res = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
      rogueCa: string;
      otherIdentity: string;
    };
    assert.match(res.rogueCa, /refused: untrusted/);
    assert.match(res.otherIdentity, /refused: wrong-identity/);
    const s = await authStatus();
    assert.equal(s.counters.refused.untrusted, before.untrusted + 1);
    assert.equal(s.counters.refused['wrong-identity'], before['wrong-identity'] + 1);
    const prom = await ok(['agent', 'metrics'], LAB);
    assert.match(
      prom,
      new RegExp(
        `weir_auth_listener_connections_total\\{result="untrusted"\\} ${s.counters.refused.untrusted}`,
      ),
    );
    assert.match(
      prom,
      new RegExp(
        `weir_auth_listener_connections_total\\{result="wrong-identity"\\} ${s.counters.refused['wrong-identity']}`,
      ),
    );
    assert.match(prom, /weir_auth_handshakes_total\{outcome="ok"\} [1-9]/);
  });

  it('renews SVIDs at half life: the pair is re-authenticated before it lapses, new connections pass', async () => {
    const first = JSON.parse(
      await ok(['identity', 'cert', 'get', String(ids.client), '-o', 'json'], LAB),
    ) as IdentityCert;
    const pairExpiry = async () =>
      (await authStatus()).pairs.find((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server)
        ?.expires;
    const e0 = await pairExpiry();
    assert.ok(e0);
    const until = new Date(first.renewAt).getTime() + 5000;
    let renewed = first;
    while (Date.now() < until + 10_000 && renewed.summary.serial === first.summary.serial) {
      await sleep(1000);
      renewed = JSON.parse(
        await ok(['identity', 'cert', 'get', String(ids.client), '-o', 'json'], LAB),
      ) as IdentityCert;
    }
    assert.notEqual(renewed.summary.serial, first.summary.serial, 'renewed');
    // The pair lasts until the earlier of its two certificates: it moves once both were renewed
    // (the server's SVID was issued with the client's, so within a second or so of it).
    const moved = (e: string | undefined) =>
      e !== undefined && new Date(e).getTime() > new Date(e0).getTime() + 1000;
    let e1 = await pairExpiry();
    for (let i = 0; i < 40 && !moved(e1); i++) {
      await sleep(500);
      e1 = await pairExpiry();
    }
    assert.ok(moved(e1), `expiry moved: ${e0} -> ${e1}`);
    // New connections pass without a gap.
    assert.equal(await probe('app/client', 'app/server', '80/TCP'), true);
  });

  it('releasing an identity removes its pair and revokes its SVID', async () => {
    await ok(['delete', '-f', join(dir, 'pods.yaml')], LAB);
    let s = await authStatus();
    for (let i = 0; i < 20 && s.pairs.some((p) => p.srcIdentity === ids.client); i++) {
      await sleep(500);
      s = await authStatus();
    }
    assert.deepEqual(
      s.pairs.filter((p) => p.srcIdentity === ids.client),
      [],
    );
    const r = await cli(['identity', 'cert', 'get', String(ids.client)], LAB);
    assert.match(r.stderr, /ERR_AUTH_NO_SVID/);
  });

  it('an agent restart keeps the pair (pinned) and authenticates it again with new SVIDs', async () => {
    // The pods again (the previous test deleted them), and their pair authenticated.
    await ok(['apply', '-f', join(dir, 'pods.yaml')], LAB);
    const eps = JSON.parse(await ok(['endpoint', 'list', '-o', 'json'], LAB)) as {
      pod: string;
      identity: number;
    }[];
    ids = Object.fromEntries(eps.map((e) => [e.pod, e.identity]));
    let connected = false;
    for (let i = 0; i < 20 && !connected; i++) connected = await probe('app/client', 'app/server', '80/TCP');
    assert.ok(connected);
    const node = await (await Lab.open(LAB)).node();
    await stopAgent(LAB);
    await startAgent({
      ...hostRoutingAgent(),
      lab: LAB,
      nodeNetns: node.netns,
      agentArgs: ['--svid-ttl', String(TTL)],
    });
    let s = await authStatus();
    for (let i = 0; i < 20 && s.handshakes.ok < 1; i++) {
      await sleep(250);
      s = await authStatus();
    }
    assert.ok(s.pairs.some((p) => p.srcIdentity === ids.client && p.dstIdentity === ids.server && p.valid));
    assert.ok(s.handshakes.ok >= 1, 'handshaken again by the new agent');
    assert.equal(await probe('app/client', 'app/server', '80/TCP'), true);
  });
});
