// Encryption between nodes (`weir lab up --nodes 2 --encryption mtls`, docs/mtls.md): pod TCP to
// another node's pod travels inside HTTP/2 CONNECT tunnels over mutual TLS 1.3 between the two
// nodes' proxies (Istio ambient's HBONE), never as plaintext on the underlay; the receiving node's
// ingress policy judges the identity the tunnel's certificate proved; a tunnel with a certificate
// of another CA (or of another identity, or for a source it does not own) is refused and counted;
// a proxy restart lets nothing through unauthenticated and the tunnels come back.
//
// The underlay is watched with a raw AF_PACKET socket in its namespace (test/support/capture.ts):
// a marker in an HTTP request path and in a 4 MiB echoed stream must never appear in a frame,
// while a UDP datagram carrying it (UDP keeps plain VXLAN) shows the capture would see it.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { proxyPid } from '../../src/agent/proxy-manager.js';
import { lastJson, ok } from '../support/cli.js';
import { inNode } from '../support/cluster-nodes.js';
import { assertPortReuse, portReuseScript, timeWaitSockets } from '../support/port-reuse.js';
import { testLab } from '../support/lab-name.js';
import {
  EncryptedLab,
  NODE2_UL,
  encryptedToServer,
  labCa,
  sleep,
  tunnelDialer,
  type Ids,
  type StreamResult,
} from '../support/mtls-cluster.js';
import { lastOf } from '../support/poll.js';

const LAB = testLab('t-mtls2');
const MARKER = 'weir-secret-marker-7f3a9c';

const lab = new EncryptedLab(LAB, {
  marker: MARKER,
  files: { 'reuse.mjs': portReuseScript },
});
const { onNode, tunnelStatus, flows, get, capture } = lab;

// Run in node1's namespace (its underlay address is the client's tunnel endpoint): dials node2's
// tunnel listener (NODE2_UL) as a rogue on node1 would.
const rogueScript = (o: { server: string; client: string; other: string; ids: Ids }) => `
${tunnelDialer}
${labCa(LAB)}
const rogue = (await CertificateAuthority.create('rogue')).ca;
const dialAs = (svid, sniSrc, fwd) =>
  dial(svid, 'dst-${o.ids.server}.src-' + sniSrc + '.weir-hbone', '${o.server}:8080', fwd + ':40000', trustLab);
const out = {};
out.genuine = await dialAs(await real.issue('cluster.local', ${o.ids.client}, 600), ${o.ids.client}, '${o.client}');
out.rogueCa = await dialAs(await rogue.issue('cluster.local', ${o.ids.client}, 600), ${o.ids.client}, '${o.client}');
out.otherIdentity = await dialAs(await real.issue('cluster.local', ${o.ids.other}, 600), ${o.ids.client}, '${o.client}');
out.spoofed = await dialAs(await real.issue('cluster.local', ${o.ids.client}, 600), ${o.ids.client}, '${o.other}');
console.log(JSON.stringify(out));
`;

describe('encryption between nodes (--encryption mtls)', { timeout: 600_000 }, () => {
  before(lab.up);
  after(lab.down);

  it('carries pod TCP between the nodes in the mTLS tunnel: no plaintext on the underlay', async () => {
    const cap = await capture();
    let answer = '';
    let stream: StreamResult = { sent: 0, got: 0 };
    try {
      answer = await get('default/client', lab.ips.server ?? '');
      stream = await lab.stream('default/client', lab.ips.server ?? '', 4 << 20);
      // The control: UDP keeps plain VXLAN, so a datagram with the marker is seen.
      await ok(
        [
          'lab',
          'exec',
          'default/client',
          '--',
          'bash',
          '-c',
          `echo ${MARKER} > /dev/udp/${lab.ips.server}/9999`,
        ],
        LAB,
      );
      await sleep(500);
    } finally {
      const seen = await cap.stop();
      assert.ok(answer.startsWith('default/server') && answer.endsWith(' 200'), `curl: ${answer}`);
      assert.equal(stream.error, undefined, `stream: ${JSON.stringify(stream)}`);
      assert.equal(stream.got, stream.sent, 'every byte came back through the tunnel');
      assert.ok(stream.sent >= 4 << 20);
      assert.ok(
        seen.tunnelFrames > 50,
        `frames of the tunnel (TCP 15008) on the underlay: ${JSON.stringify(seen)}`,
      );
      assert.ok(
        seen.markerFrames > 0 && seen.vxlanFrames > 0,
        `the UDP control was seen: ${JSON.stringify(seen)}`,
      );
      // Only the UDP datagram's frames carry the marker (it crosses the bridge: seen on both ports).
      assert.ok(seen.markerFrames <= seen.vxlanFrames, `marker frames ${JSON.stringify(seen)}`);
    }
    const t1 = await tunnelStatus('node1');
    assert.ok(
      t1?.tunnels.some((t) => t.src === lab.ids.client && t.dst === lab.ids.server && t.peer === NODE2_UL),
      `node1 holds the tunnel client -> server: ${JSON.stringify(t1?.tunnels)}`,
    );
    const t2 = await tunnelStatus('node2');
    assert.ok((t2?.accepted ?? 0) >= 1, 'node2 accepted the tunnel');
    // Flows say so, on both nodes.
    const f1 = await flows('node1');
    assert.ok(
      f1.some((f) => encryptedToServer(f, 'client') && f.verdict === 'FORWARDED'),
      "node1's egress verdict of client -> server is encrypted",
    );
    const f2 = await flows('node2');
    assert.ok(
      f2.some((f) => encryptedToServer(f, lab.ids.client) && f.verdict === 'FORWARDED'),
      "node2's ingress verdict judged the client's identity, encrypted",
    );
    const line = await onNode('node2', ['observe', '--last', '50', '--to-pod', 'default/server']);
    assert.match(line, /\[mTLS encrypted\]/, 'weir observe marks it');
  });

  it("node2's ingress policy judges the identity the certificate proved: other is denied", async () => {
    const denied = await get('default/other', lab.ips.server ?? '', 12);
    assert.ok(!denied.endsWith('200'), `other -> server gets no answer: ${denied}`);
    const drops = (await flows('node2')).filter(
      (f) =>
        f.verdict === 'DROPPED' && f.source.identity === lab.ids.other && f.destination.pod_name === 'server',
    );
    assert.ok(drops.length > 0, 'node2 dropped other -> server');
    assert.ok(
      drops.every((f) => f.drop_reason_desc === 'POLICY_DENIED' && f.IP?.encrypted === true),
      JSON.stringify(drops[0]),
    );
    assert.ok(
      (await get('default/client', lab.ips.server ?? '')).endsWith('200'),
      'client -> server still answers',
    );
  });

  it('refuses a certificate of another CA, of another identity and a spoofed source, and counts them', async () => {
    const before = (await tunnelStatus('node2'))?.refused;
    const script = join(lab.dir, 'rogue.mjs');
    await writeFile(
      script,
      rogueScript({
        server: lab.ips.server ?? '',
        client: lab.ips.client ?? '',
        other: lab.ips.other ?? '',
        ids: lab.ids,
      }),
    );
    const res = lastJson<Record<string, string>>(
      (await inNode(LAB, 'node1', [process.execPath, script])).stdout,
    );
    assert.equal(
      res.genuine,
      'status 200',
      `a genuine SVID is served (the dialer works): ${JSON.stringify(res)}`,
    );
    assert.notEqual(res.rogueCa, 'status 200', JSON.stringify(res));
    assert.notEqual(res.otherIdentity, 'status 200', JSON.stringify(res));
    assert.equal(res.spoofed, 'status 403', JSON.stringify(res));
    const after = (await tunnelStatus('node2'))?.refused;
    assert.ok(before && after);
    assert.ok(after.untrusted > before.untrusted, `rogue CA counted untrusted: ${JSON.stringify(after)}`);
    assert.ok(after['wrong-identity'] > before['wrong-identity'], 'another identity counted');
    assert.ok(after['spoofed-source'] > before['spoofed-source'], 'a spoofed source counted');
  });

  it("a pod reusing its port after the server closed first is not stalled by node1's TIME_WAIT", async () => {
    // node1's proxy closes first towards the pod (it relays the server's FIN): without the reaper
    // (src/proxy/time-wait.ts) a TIME_WAIT socket of the tuple stays in node1's namespace and the
    // kernel drops every SYN of the pod's next connection from that port for 60 s.
    const before = (await tunnelStatus('node1'))?.timeWait.reaped ?? 0;
    await assertPortReuse(LAB, join(lab.dir, 'reuse.mjs'), lab.ips.server ?? '');
    assert.doesNotMatch(
      await timeWaitSockets(LAB, 'node1'),
      new RegExp(`${lab.ips.client}:23456\\b`),
      'no TIME_WAIT of the tuple left',
    );
    const reaped = (await tunnelStatus('node1'))?.timeWait.reaped ?? 0;
    assert.ok(reaped >= before + 5, `node1's proxy removed the TIME_WAIT sockets: ${before} -> ${reaped}`);
  });

  it('a proxy restart lets nothing through unauthenticated, and the tunnels come back', async () => {
    // node1's agent is held (SIGSTOP) so that it cannot restart the proxy while the test looks.
    const cap = await capture();
    const { value: whileDown, proxy } = await lab.withProxyDown(undefined, () =>
      get('default/client', lab.ips.server ?? '', 3),
    );
    assert.ok(!whileDown.endsWith('200'), `no answer while node1's proxy is down: ${whileDown}`);
    // The agent restarts it; the tunnel is opened anew.
    const answers = (r: string) => r.endsWith('200');
    const getAgain = () => get('default/client', lab.ips.server ?? '', 5);
    const back = await lastOf(getAgain, answers, 90_000, { waitFirst: true });
    assert.ok(back.endsWith('200'), `client -> server answers again: ${back}`);
    assert.notEqual(proxyPid(LAB), proxy, 'a new proxy runs');
    // node2's proxy restarted too: node1's tunnel to it is re-established.
    const p2 = proxyPid(LAB, 'node2');
    assert.ok(p2);
    process.kill(p2, 'SIGKILL');
    const again = await lastOf(getAgain, answers, 90_000, { waitFirst: true });
    assert.ok(again.endsWith('200'), `client -> server answers after node2's proxy restarted: ${again}`);
    const seen = await cap.stop();
    assert.equal(seen.markerFrames, 0, `no plaintext while the proxies restarted: ${JSON.stringify(seen)}`);
    assert.equal(seen.vxlanFrames, 0, `no pod traffic in plain VXLAN meanwhile: ${JSON.stringify(seen)}`);
    // node1 dropped the attempt while its proxy was down (fail closed), and said why.
    const drops = (await flows('node1')).filter(
      (f) =>
        f.verdict === 'DROPPED' &&
        f.source.pod_name === 'client' &&
        f.drop_reason_desc === 'SOCKET_LOOKUP_FAILED',
    );
    assert.ok(drops.length > 0, 'node1 shows the fail-closed drop (Proxy redirection not possible)');
  });
});
