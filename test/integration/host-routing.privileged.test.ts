// eBPF host routing in a lab: with --host-routing bpf the node namespace's IP stack does not forward
// what the pods send (not to another pod of the node, not to an external host), and policy still
// decides; with --host-routing legacy the stack forwards it. Counted by iptables rules in the node
// namespace that only count (no target): their packet counters move only for what the stack
// forwards. The agent is restarted between modes: its programs are replaced in place.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startAgent, stopAgent } from '../../src/agent/spawn.js';
import type { HostRouting } from '../../src/datapath/loader.js';
import { Lab } from '../../src/lab/index.js';
import { run } from '../../src/shared/exec.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';

const LAB = testLab('t-hostroute');
const EXT = '192.0.2.30';

const labSpec = `
name: ${LAB}
externals:
  - { name: web, ip: ${EXT}, serves: [{ port: 80 }] }
`;

const manifests = `
apiVersion: v1
kind: Pod
metadata: { name: client, labels: { role: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, labels: { role: server } }
spec: { containers: [{ name: s, ports: [{ containerPort: 80 }, { containerPort: 8080 }] }] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: server-ingress }
spec:
  podSelector: { matchLabels: { role: server } }
  policyTypes: [Ingress]
  ingress:
    - from: [{ podSelector: { matchLabels: { role: client } } }]
      ports: [{ port: 80, protocol: TCP }]
`;

describe('eBPF host routing in a lab', { timeout: 240_000 }, () => {
  let dir = '';
  let netns = '';
  let ips: Record<string, string> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-hostroute-'));
    await writeFile(join(dir, 'lab.yaml'), labSpec);
    await writeFile(join(dir, 'app.yaml'), manifests);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '-f', join(dir, 'lab.yaml'), '--no-agent'], LAB);
    const lab = await Lab.open(LAB);
    netns = (await lab.node()).netns;
    await startAgent({ lab: LAB, nodeNetns: netns, settings: { hostRouting: 'bpf' } });
    await ok(['apply', '-f', join(dir, 'app.yaml')], LAB);
    ips = Object.fromEntries((await lab.pods()).map((p) => [p.name, p.ip]));
    // Counting rules: no target, so they change nothing but their counters.
    for (const [src = '', dst = ''] of pairs()) await iptables(['-A', 'FORWARD', '-s', src, '-d', dst]);
  });

  after(async () => {
    await stopAgent(LAB);
    await cli(['lab', 'down'], LAB);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const ip = (pod: string): string => ips[pod] ?? assert.fail(`pod ${pod} has no address`);
  const pairs = () => [
    [ip('client'), ip('server')],
    [ip('server'), ip('client')],
    [ip('client'), EXT],
    [EXT, ip('client')],
  ];
  const iptables = (args: string[]) => run(['ip', 'netns', 'exec', netns, 'iptables', '-w', ...args]);
  /** Packets the node's stack forwarded, per counting rule ("src>dst"). */
  const forwarded = async (): Promise<Record<string, number>> => {
    const out = (await iptables(['-L', 'FORWARD', '-v', '-n', '-x'])).stdout;
    const counts: Record<string, number> = {};
    for (const line of out.split('\n')) {
      const f = line.trim().split(/\s+/);
      // pkts bytes [target] prot opt in out source destination: the counting rules have no target
      if (f.length === 8 && /^\d+$/.test(f[0] ?? '')) counts[`${f[6]}>${f[7]}`] = Number(f[0]);
    }
    return counts;
  };
  const probe = async (to: string, port: string, want: boolean) => {
    const r = await cli(
      ['lab', 'probe', '--from', 'default/client', '--to', to, '--port', port, '--timeout', '800'],
      LAB,
    );
    assert.equal(r.code === 0, want, `client -> ${to} ${port}: ${r.stdout}${r.stderr}`);
  };
  const traffic = async () => {
    for (let i = 0; i < 3; i++) await probe('default/server', '80/TCP', true);
    await probe('default/server', '8080/TCP', false); // the server's ingress policy
    for (let i = 0; i < 2; i++) await probe('ext:web', '80/TCP', true);
  };
  const delta = (a: Record<string, number>, b: Record<string, number>) =>
    Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
  const restart = async (mode: HostRouting) => {
    await stopAgent(LAB);
    await startAgent({ lab: LAB, nodeNetns: netns, settings: { hostRouting: mode } });
  };

  it("bpf: pod traffic never passes the node's forwarding; policy still decides", async () => {
    const before = await forwarded();
    await traffic();
    const d = delta(before, await forwarded());
    assert.equal(
      d[`${ips.client}>${ips.server}`],
      0,
      `client -> server through the stack: ${JSON.stringify(d)}`,
    );
    assert.equal(d[`${ips.server}>${ips.client}`], 0, 'server -> client through the stack');
    assert.equal(d[`${ips.client}>${EXT}`], 0, 'client -> external through the stack');
    // What comes from outside still enters through the stack (host routing is about what pods send).
    assert.ok((d[`${EXT}>${ips.client}`] ?? 0) > 0, `external -> client: ${JSON.stringify(d)}`);
  });

  it("legacy: the node's stack forwards the same traffic", async () => {
    await restart('legacy');
    const before = await forwarded();
    await traffic();
    const d = delta(before, await forwarded());
    // At least SYN, ACK and FIN from each of 3 connections (the denied one is dropped before).
    assert.ok((d[`${ips.client}>${ips.server}`] ?? 0) >= 9, `client -> server: ${JSON.stringify(d)}`);
    assert.ok((d[`${ips.server}>${ips.client}`] ?? 0) >= 6, 'server -> client');
    assert.ok((d[`${ips.client}>${EXT}`] ?? 0) >= 6, 'client -> external');
  });

  it('bpf again after a restart: the replaced programs route past the stack', async () => {
    await restart('bpf');
    const before = await forwarded();
    await traffic();
    const d = delta(before, await forwarded());
    assert.equal(d[`${ips.client}>${ips.server}`], 0, JSON.stringify(d));
    assert.equal(d[`${ips.server}>${ips.client}`], 0, JSON.stringify(d));
  });
});
