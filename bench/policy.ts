// The L3/L4 policy scenarios: pod bench/server's ingress allows bench/client on the measured ports
// plus N−1 other peers, enforced either by weir (a CiliumNetworkPolicy: the peers are /32 CIDR
// identities) or, with no weir program attached, by an iptables FORWARD chain in the node netns
// (conntrack first, the client's rules last, a final DROP: how iptables-based policy enforces).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentClient } from '../src/agent/client.js';
import { nodePinDir } from '../src/agent/paths.js';
import { BpfProgram, attachTc, detachCgroup, detachTc, queryCgroup } from '../src/bpf/index.js';
import { PROGRAMS, SOCK_PROGRAMS } from '../src/datapath/loader.js';
import type { DesiredObject } from '../src/cluster/objects.js';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';
import { repoRoot } from '../src/shared/paths.js';
import { iperfPort, sockperfPort } from './measurements.js';

/** nginx of the connection-rate section (bench/connrate.ts) in bench/server (+1: its h2c port). */
export const connPort = 11120;

/** A number reported beside a scenario's measurements (what it really set up, what it cost). */
export interface Fact {
  metric: string;
  value: number;
  unit: string;
  note?: string;
}

/** The i-th peer address: 100.64.0.0/10 (shared address space), never inside the lab's CIDRs. */
export function peerIP(i: number): string {
  if (i < 0 || i >= 1 << 22) throw new WeirError('ERR_BENCH_PEERS', `peer ${i} outside 100.64.0.0/10`);
  const n = (100 << 24) + (64 << 16) + i;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Runs the weir CLI of this checkout, e.g. `bpf policy get bench/server -o json`. */
export async function weirJson<T>(lab: string, args: string[]): Promise<T> {
  const main = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  const r = await run([process.execPath, main, ...args, '--lab', lab, '-o', 'json'], { timeoutMs: 60_000 });
  return JSON.parse(r.stdout) as T;
}

/** VmRSS of a process, in MiB. */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new WeirError('ERR_BENCH_RSS', `no VmRSS for pid ${pid}`);
  return Math.round((Number(m[1]) / 1024) * 10) / 10;
}

export interface AgentStatus {
  pid: number;
  endpoints: number;
  identities: number;
  regenerations: { count: number; lastMs: number; lastUpserts: number; lastDeletes: number };
}

export const agentStatus = (lab: string) => agentClient(lab).call<AgentStatus>('GET', '/v1/status');

const policyName = 'bench-server-ingress';

/** The server's ingress: the client on both measured ports, N−1 CIDR peers on the iperf3 port. */
export function serverPolicy(peers: number): DesiredObject {
  const ingress: unknown[] = [
    {
      fromEndpoints: [{ matchLabels: { app: 'client' } }],
      toPorts: [
        {
          ports: [
            { port: String(iperfPort), protocol: 'TCP' },
            { port: String(sockperfPort), protocol: 'UDP' },
            { port: String(connPort), protocol: 'TCP' },
          ],
        },
      ],
    },
  ];
  if (peers > 0)
    ingress.push({
      fromCIDR: Array.from({ length: peers }, (_, i) => `${peerIP(i)}/32`),
      toPorts: [{ ports: [{ port: String(iperfPort), protocol: 'TCP' }] }],
    });
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    name: policyName,
    namespace: 'bench',
    file: '<bench>',
    object: {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNetworkPolicy',
      metadata: { name: policyName, namespace: 'bench' },
      spec: { endpointSelector: { matchLabels: { app: 'server' } }, ingress },
    },
  };
}

interface PolicyGet {
  endpointId: number;
  entries: { direction: string; identity: number; protocol: string; port?: number }[];
}

/**
 * weir enforcing `n` peers (the client + n−1 CIDR identities). Facts: entries in the server's
 * policy map and CIDR prefixes in the ipcache as `weir bpf` reads them from the kernel, apply
 * time, the agent's regeneration time and resident memory.
 */
export function weirPolicy(lab: string, n: number) {
  return {
    async setup(): Promise<Fact[]> {
      const t0 = performance.now();
      await agentClient(lab).call('POST', '/v1/apply', { objects: [serverPolicy(n - 1)] });
      const applyMs = performance.now() - t0;
      const pol = await weirJson<PolicyGet>(lab, ['bpf', 'policy', 'get', 'bench/server']);
      const ingress = pol.entries.filter((e) => e.direction === 'ingress');
      const ipcache = await weirJson<{ prefix: string }[]>(lab, ['bpf', 'ipcache', 'list']);
      const cidrs = ipcache.filter((e) => e.prefix.startsWith('100.')).length;
      // The measured flow must hit a real entry: the client's identity on the iperf3 port.
      const clientEntry = ingress.some((e) => e.identity !== 0 && e.port === iperfPort);
      if (ingress.length < n || cidrs !== n - 1 || !clientEntry)
        throw new WeirError(
          'ERR_BENCH_POLICY',
          `expected ≥ ${n} ingress entries and ${n - 1} CIDR identities, the kernel holds ${ingress.length} and ${cidrs}`,
        );
      const st = await agentStatus(lab);
      return [
        { metric: 'policy entries (server, ingress)', value: ingress.length, unit: 'entries' },
        { metric: 'CIDR identities in ipcache', value: cidrs, unit: 'prefixes' },
        { metric: 'apply (API call until maps written)', value: Math.round(applyMs), unit: 'ms' },
        { metric: 'agent regeneration', value: Math.round(st.regenerations.lastMs), unit: 'ms' },
        { metric: 'agent VmRSS', value: rssMiB(st.pid), unit: 'MiB' },
      ];
    },
    async teardown(): Promise<void> {
      await agentClient(lab).call('POST', '/v1/delete', {
        objects: [{ kind: 'CiliumNetworkPolicy', namespace: 'bench', name: policyName }],
      });
    },
  };
}

const iptablesIn = (netns: string, args: string[], input?: string) =>
  run(['ip', 'netns', 'exec', netns, ...args], { timeoutMs: 120_000, ...(input ? { input } : {}) });

/** Rules of the node netns's FORWARD chain (`iptables -S` lists the policy line first). */
export async function forwardRules(netns: string): Promise<number> {
  const out = (await iptablesIn(netns, ['iptables', '-S', 'FORWARD'])).stdout;
  return out.split('\n').filter((l) => l.startsWith('-A ')).length;
}

/** iptables enforcing `n` peers in the node netns (never the root netns): n+1 ACCEPT rules. */
export function iptablesPolicy(lab: Lab, n: number) {
  return {
    async setup(): Promise<Fact[]> {
      const { netns } = await lab.node();
      const server = (await lab.pod('bench/server')).ip;
      const client = (await lab.pod('bench/client')).ip;
      const rules = ['*filter', ':FORWARD ACCEPT [0:0]'];
      rules.push('-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT');
      for (let i = 0; i < n - 1; i++)
        rules.push(`-A FORWARD -s ${peerIP(i)}/32 -d ${server}/32 -p tcp --dport ${iperfPort} -j ACCEPT`);
      rules.push(`-A FORWARD -s ${client}/32 -d ${server}/32 -p tcp --dport ${iperfPort} -j ACCEPT`);
      rules.push(`-A FORWARD -s ${client}/32 -d ${server}/32 -p udp --dport ${sockperfPort} -j ACCEPT`);
      rules.push(`-A FORWARD -s ${client}/32 -d ${server}/32 -p tcp --dport ${connPort} -j ACCEPT`);
      rules.push('-A FORWARD -j DROP', 'COMMIT', '');
      const t0 = performance.now();
      await iptablesIn(netns, ['iptables-restore'], rules.join('\n'));
      const loadMs = performance.now() - t0;
      const count = await forwardRules(netns);
      if (count !== n + 4)
        throw new WeirError('ERR_BENCH_IPTABLES', `expected ${n + 4} FORWARD rules, found ${count}`);
      return [
        {
          metric: 'iptables FORWARD rules',
          value: count,
          unit: 'rules',
          note: 'ct + peers + client×3 + DROP',
        },
        { metric: 'iptables-restore', value: Math.round(loadMs), unit: 'ms' },
      ];
    },
    async teardown(): Promise<void> {
      const { netns } = await lab.node();
      await iptablesIn(netns, ['iptables-restore'], '*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n');
      // Also drop the (now empty) table: its hooks would otherwise stay in later scenarios' path.
      await iptablesIn(netns, ['nft', 'delete', 'table', 'ip', 'filter']);
    },
  };
}

/** tc filters on the pods' host veths in the node netns (0 = nothing of weir attached). */
export async function tcFilters(lab: Lab): Promise<number> {
  const { netns } = await lab.node();
  let count = 0;
  for (const p of await lab.pods())
    for (const dir of ['ingress', 'egress']) {
      const out = await run(['ip', '-n', netns, 'tc', 'filter', 'show', 'dev', p.hostIfname, dir], {
        check: false,
      });
      count += out.stdout.split('\n').filter((l) => l.startsWith('filter')).length;
    }
  return count;
}

/**
 * Detaches everything weir's agent attached to the lab (with the agent stopped): the tc programs
 * of every pod's host veth and the socket hooks of the pods' and the node's cgroups. Maps stay.
 */
export async function detachWeir(lab: Lab): Promise<void> {
  const node = await lab.node();
  const pods = await lab.pods();
  for (const p of pods)
    for (const direction of ['ingress', 'egress'] as const)
      detachTc({ netns: node.netns, ifindex: p.hostIfindex, direction });
  for (const cgroupPath of [node.cgroupPath, ...pods.map((p) => p.cgroupPath)])
    for (const attachType of Object.keys(SOCK_PROGRAMS) as (keyof typeof SOCK_PROGRAMS)[])
      for (const id of queryCgroup({ cgroupPath, attachType }).progIds) {
        const program = BpfProgram.fromId(id);
        try {
          detachCgroup({ cgroupPath, attachType, program });
        } finally {
          program.close();
        }
      }
}

/** Switches between the raw path and the enforced one, for runs paired in time. */
export interface PairedSwitch {
  raw(): Promise<void>;
  enforce(): Promise<void>;
}

/**
 * weir on/off for the bench pods: raw = both programs detached from their host veths (plain veth
 * and routing, as the baseline); enforce = the agent's pinned programs attached again (tc
 * replace). Maps, entries and the agent stay as they are.
 */
export function weirSwitch(lab: Lab, labName: string): PairedSwitch {
  const each = async (fn: (netns: string, ifindex: number, pinDir: string) => void) => {
    const node = await lab.node();
    const pinDir = nodePinDir(labName, node.name);
    for (const p of ['bench/server', 'bench/client']) fn(node.netns, (await lab.pod(p)).hostIfindex, pinDir);
  };
  return {
    raw: () =>
      each((netns, ifindex) => {
        for (const direction of ['ingress', 'egress'] as const) detachTc({ netns, ifindex, direction });
      }),
    enforce: () =>
      each((netns, ifindex, pinDir) => {
        for (const [direction, name] of [
          ['ingress', PROGRAMS.fromContainer],
          ['egress', PROGRAMS.toContainer],
        ] as const) {
          const program = BpfProgram.fromPin(join(pinDir, name));
          try {
            attachTc({ netns, ifindex, direction, program });
          } finally {
            program.close();
          }
        }
      }),
  };
}

/** iptables on/off in the node netns: raw = an empty ruleset, enforce = the scenario's chain again. */
export function iptablesSwitch(lab: Lab, n: number): PairedSwitch {
  const pol = iptablesPolicy(lab, n);
  return { raw: () => pol.teardown(), enforce: async () => void (await pol.setup()) };
}
