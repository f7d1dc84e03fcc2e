// Tunnel mode's cost (bench section `vxlan`, no lab): pod-to-pod TCP throughput and UDP latency
// between two node namespaces (test/support/two-nodes.ts) through weir — each node's datapath
// attached, the receiver judging the sender's identity from the VNI — against the same two nodes
// joined by a plain point-to-point VXLAN pair and routes, nothing of weir attached. Rounds
// alternate (plain, weir, plain, weir …) so both see the same machine load; the ratio is of the
// medians. The target: weir ≥ 0.9 × plain.
import { spawn, type ChildProcess } from 'node:child_process';
import { macIn } from '../src/bpf/index.js';
import { Datapath } from '../src/datapath/loader.js';
import { vxlanDevice } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { iperfPort, measurements, reportedMetrics, sockperfPort, type BenchContext } from './measurements.js';
import { percentile } from './scale.js';
import { TwoNodes } from '../test/support/two-nodes.js';
import type { BenchRow } from './row.js';

export type VxlanRow = BenchRow;

export const vxlanLegend = (rounds: number, seconds: number) =>
  `- **pod to pod across nodes (VXLAN)**: two node namespaces on a veth underlay, one pod each; weir's ` +
  'tunnel mode (VXLAN external device, the VNI carrying the identity, the receiver judging it; eBPF host ' +
  'routing) vs a plain VXLAN pair with routes between the same nodes, nothing attached (the baseline); ' +
  `${rounds} rounds of ${seconds} s each, alternating; medians (bench/vxlan.ts)\n`;

const TCP = 6;

export async function measureVxlan(
  base: string,
  o: { rounds: number; seconds: number },
  log: (l: string) => void,
): Promise<VxlanRow[]> {
  const t = await TwoNodes.create(base);
  const servers: ChildProcess[] = [];
  const dps: Datapath[] = [];
  try {
    await t.plainVxlan();
    const [a, b] = t.pods;
    for (const cmd of [
      ['iperf3', '-s', '-p', String(iperfPort)],
      ['sockperf', 'server', '-p', String(sockperfPort)],
    ])
      servers.push(spawn('ip', ['netns', 'exec', b.ns, ...cmd], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 500));
    for (const s of servers)
      if (s.exitCode !== null)
        throw new WeirError('ERR_BENCH_SERVER', `a benchmark server exited early (${s.spawnargs.join(' ')})`);
    for (let i = 0; i < t.nodes.length; i++) dps.push(Datapath.open({ hostRouting: 'bpf' }));
    const attach = () =>
      t.nodes.forEach((n, i) => {
        const dp = dps[i] as Datapath;
        const pod = t.pods[i] as (typeof t.pods)[number];
        const peer = t.pods[1 - i] as (typeof t.pods)[number];
        const peerNode = t.nodes[1 - i] as (typeof t.nodes)[number];
        dp.ipcache.upsert(pod.ip, pod.identity);
        dp.ipcache.upsert(peer.ip, peer.identity, { tunnelEndpoint: peerNode.underlay });
        dp.attachEndpoint({
          netns: n.ns,
          ifname: pod.host,
          endpointId: pod.endpointId,
          identity: pod.identity,
          local: { ips: [pod.ip], mac: macIn(pod.ns, 'eth0'), hostMac: macIn(n.ns, pod.host) },
        });
        const policy = dp.policy(pod.endpointId);
        policy.upsert({ identity: 0, direction: 'egress', protocol: 0 }, {});
        for (const port of [iperfPort, sockperfPort])
          for (const protocol of [TCP, 17])
            policy.upsert({ identity: peer.identity, direction: 'ingress', protocol, port }, {});
        dp.attachOverlay({ netns: n.ns, ifname: vxlanDevice });
      });
    const detach = () =>
      t.nodes.forEach((n, i) => {
        const dp = dps[i] as Datapath;
        const pod = t.pods[i] as (typeof t.pods)[number];
        dp.detachOverlay({ netns: n.ns, ifname: vxlanDevice });
        dp.detachEndpoint({ netns: n.ns, ifname: pod.host, endpointId: pod.endpointId });
        dp.ct.flush();
      });
    const ctx: BenchContext = {
      serverIP: b.ip,
      seconds: o.seconds,
      clientPrefix: ['ip', 'netns', 'exec', a.ns],
    };
    const values: Record<'plain' | 'weir', Record<string, number[]>> = { plain: {}, weir: {} };
    for (let round = 0; round < o.rounds; round++)
      for (const mode of ['plain', 'weir'] as const) {
        if (mode === 'weir') attach();
        try {
          for (const m of measurements) {
            const r = await m.run(ctx);
            for (const [k, v] of Object.entries(r)) (values[mode][k] ??= []).push(v);
          }
        } finally {
          if (mode === 'weir') detach();
        }
        log(`vxlan: round ${round + 1}/${o.rounds} ${mode} done`);
      }
    const rows: VxlanRow[] = [];
    for (const { measurement, key, label } of reportedMetrics) {
      const plain = percentile(values.plain[key] ?? [], 50);
      const weir = percentile(values.weir[key] ?? [], 50);
      rows.push({
        scenario: 'pod to pod across nodes (VXLAN)',
        metric: label,
        value: weir,
        unit: measurement.unit,
        baseline: plain,
        ...(plain > 0 ? { ratio: Math.round((weir / plain) * 1000) / 1000 } : {}),
        note: `weir runs ${JSON.stringify(values.weir[key])}; plain VXLAN runs ${JSON.stringify(values.plain[key])}`,
      });
    }
    return rows;
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    for (const dp of dps) dp.close();
    await t.destroy();
  }
}
