// `make bench`: the datapath's cost, measured between two pods of a throw-away lab (weirbench).
// Each scenario changes the lab (baseline: nothing; iptables with N rules; weir enforcing N
// policy entries) and every measurement runs under every scenario in the same run, so rows compare
// like with like. Scenarios without the agent run first: once the agent has attached its programs
// they stay. Then service load balancing (bench/services.ts: pod IP vs weir ClusterIP vs kube-proxy's
// iptables mode with 10 to 10 000 services), then the node grows to 100 and 1 000 endpoints and
// policy changes are timed until they are in the kernel. Results: bench/results/<timestamp>.json,
// latest.json and latest.md (a partial run, WEIR_BENCH_SECTIONS, writes latest.<sections>.*).
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { startAgent, stopAgent } from '../src/agent/spawn.js';
import { agentClient } from '../src/agent/client.js';
import { toDesired } from '../src/cluster/objects.js';
import { parseManifests } from '../src/k8s/index.js';
import { Lab, parseLabSpec } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { repoRoot } from '../src/shared/paths.js';
import { reportedMetrics, measurements, startServers, type BenchContext } from './measurements.js';
import {
  agentStatus,
  detachWeir,
  forwardRules,
  iptablesPolicy,
  iptablesSwitch,
  rssMiB,
  tcFilters,
  weirPolicy,
  weirSwitch,
  type Fact,
  type PairedSwitch,
} from './policy.js';
import { measureL7Records, measureObserve } from './micro/observe.js';
import { measurePods } from './pods.js';
import { diffCases, measureDiff } from './micro/policy-diff.js';
import { growTo, percentile, timeEnforcement } from './scale.js';
import { measureServices } from './services.js';
import { connRateLegend, measureConnRate } from './connrate.js';
import { startRawPair } from './raw-pair.js';
import { dnsLegend, measureDns } from './dns.js';
import { cniLegend, measureCni } from './cni.js';
import { l7Legend, measureL7, parseVariants, type L7Variant } from './l7.js';
import { stopProxies } from '../src/agent/proxy-manager.js';
import { gatewayLegend, measureGateway } from './gateway.js';
import { measureVxlan, vxlanLegend } from './vxlan.js';
import { encryptionLegend, measureEncryption } from './encryption.js';
import { clusterLegend, measureCluster } from './cluster.js';
import { type BenchRow, round2 } from './row.js';

export interface Scenario {
  name: string;
  description: string;
  /** Needs the lab's agent (the datapath attached to every pod). */
  agent: boolean;
  /** Shorter runs than the baseline's keep `make bench` bounded; the table says so. */
  runs?: number;
  seconds?: number;
  /**
   * Raw/enforced switch: each run then measures the raw path and the enforced one back to back,
   * and the rows compare with those raw runs (the same minutes, the same machine load) instead of
   * the baseline measured at the start.
   */
  paired?: (lab: Lab) => PairedSwitch;
  /** Returns facts about what it set up (entries, rules, memory), reported beside its rows. */
  setup(lab: Lab): Promise<Fact[]>;
  teardown(lab: Lab): Promise<void>;
}

/** WEIR_BENCH_LAB names the lab, so benches of parallel checkouts do not remove each other's. */
const labName = process.env.WEIR_BENCH_LAB || 'weirbench';
/** WEIR_BENCH_PROXY_WORKERS=n: the agent's --proxy-workers (default: one proxy thread per CPU). */
const proxyWorkerArgs = process.env.WEIR_BENCH_PROXY_WORKERS
  ? ['--proxy-workers', process.env.WEIR_BENCH_PROXY_WORKERS]
  : [];
const seconds = Number(process.env.WEIR_BENCH_SECONDS ?? 5);
const runs = Number(process.env.WEIR_BENCH_RUNS ?? 3);
const policySeconds = Number(process.env.WEIR_BENCH_POLICY_SECONDS ?? 3);
const policySizes = (process.env.WEIR_BENCH_SIZES ?? '1,1000,10000').split(',').map(Number);
const endpointCounts = (process.env.WEIR_BENCH_ENDPOINTS ?? '100,1000').split(',').map(Number);
const podCounts = (process.env.WEIR_BENCH_PODS ?? '100,1000').split(',').map(Number);
const applies = Number(process.env.WEIR_BENCH_APPLIES ?? 30);
const serviceSizes = (process.env.WEIR_BENCH_SERVICE_SIZES ?? '10,1000,10000').split(',').map(Number);
const serviceRounds = Number(process.env.WEIR_BENCH_SERVICE_ROUNDS ?? 3);
const serviceConnects = Number(process.env.WEIR_BENCH_CONNECTS ?? 3000);
const rrSeconds = Number(process.env.WEIR_BENCH_RR_SECONDS ?? 4);
const connSeconds = Number(process.env.WEIR_BENCH_CONN_SECONDS ?? 5);
const connRounds = Number(process.env.WEIR_BENCH_CONN_ROUNDS ?? 3);
const connRules = Number(process.env.WEIR_BENCH_CONN_RULES ?? 10_000);
const dnsSeconds = Number(process.env.WEIR_BENCH_DNS_SECONDS ?? 5);
const vxlanRounds = Number(process.env.WEIR_BENCH_VXLAN_ROUNDS ?? 3);
const vxlanSeconds = Number(process.env.WEIR_BENCH_VXLAN_SECONDS ?? 3);
const encRounds = Number(process.env.WEIR_BENCH_ENC_ROUNDS ?? 3);
const encSeconds = Number(process.env.WEIR_BENCH_ENC_SECONDS ?? 3);
/** Pods in the cluster at which the cluster section times convergence (200 per node: 5 nodes for 1 000). */
const clusterPods = (process.env.WEIR_BENCH_CLUSTER_PODS ?? '100,1000').split(',').map(Number);
const dnsRounds = Number(process.env.WEIR_BENCH_DNS_ROUNDS ?? 3);
const dnsLearns = Number(process.env.WEIR_BENCH_DNS_LEARNS ?? 30);
const cniRounds = Number(process.env.WEIR_BENCH_CNI_ROUNDS ?? 10);
const l7Config = {
  rounds: Number(process.env.WEIR_BENCH_L7_ROUNDS ?? 3),
  seconds: Number(process.env.WEIR_BENCH_L7_SECONDS ?? 5),
  h2Clients: Number(process.env.WEIR_BENCH_L7_H2_CLIENTS ?? 32),
  h2Streams: Number(process.env.WEIR_BENCH_L7_H2_STREAMS ?? 10),
  idle: Number(process.env.WEIR_BENCH_L7_IDLE ?? 1000),
  // WEIR_BENCH_L7_LOADS=h1-32,h1-256 / WEIR_BENCH_L7_TARGETS=weir,nginx: only those;
  // WEIR_BENCH_L7_MEMORY=0: no memory figure; WEIR_BENCH_L7_VARIANTS: proxy settings taking
  // turns (bench/l7.ts parseVariants).
  ...(process.env.WEIR_BENCH_L7_LOADS ? { loads: process.env.WEIR_BENCH_L7_LOADS.split(',') } : {}),
  ...(process.env.WEIR_BENCH_L7_TARGETS ? { targets: process.env.WEIR_BENCH_L7_TARGETS.split(',') } : {}),
  ...(process.env.WEIR_BENCH_L7_MEMORY === '0' ? { memory: false } : {}),
  ...(process.env.WEIR_BENCH_L7_VARIANTS
    ? { variants: parseVariants(process.env.WEIR_BENCH_L7_VARIANTS) }
    : {}),
};
const gatewayConfig = {
  sizes: (process.env.WEIR_BENCH_GATEWAY_ROUTES ?? '1,100,1000').split(',').map(Number),
  rounds: Number(process.env.WEIR_BENCH_GATEWAY_ROUNDS ?? 3),
  seconds: Number(process.env.WEIR_BENCH_GATEWAY_SECONDS ?? 5),
  connections: Number(process.env.WEIR_BENCH_GATEWAY_CONNECTIONS ?? 32),
};
const allSections = [
  'policy',
  'connrate',
  'services',
  'l7',
  'gateway',
  'dns',
  'cni',
  'pods',
  'scale',
  'flow',
  'diff',
  'vxlan',
  'cluster',
  'encryption',
] as const;
/** WEIR_BENCH_SECTIONS=services,flow runs only those; a partial run writes latest.<sections>.*. */
const sections = new Set((process.env.WEIR_BENCH_SECTIONS ?? allSections.join(',')).split(','));
for (const s of sections)
  if (!(allSections as readonly string[]).includes(s))
    throw new WeirError(
      'ERR_BENCH_SECTIONS',
      `unknown section '${s}' in WEIR_BENCH_SECTIONS (${allSections.join(', ')})`,
    );
const partial = allSections.some((s) => !sections.has(s));
const resultsDir = join(repoRoot, 'bench', 'results');

/** The first scenario is the baseline the others are compared with. */
export const scenarios: Scenario[] = [
  {
    name: 'baseline',
    description: 'veth + routing in the lab, no weir program attached, no iptables rule',
    agent: false,
    // Checked, not assumed: no tc filter on any host veth, an empty FORWARD chain.
    setup: async (lab) => {
      const filters = await tcFilters(lab);
      const rules = await forwardRules((await lab.node()).netns);
      if (filters !== 0 || rules !== 0)
        throw new WeirError(
          'ERR_BENCH_BASELINE',
          `baseline is not raw: ${filters} tc filters, ${rules} rules`,
        );
      return [
        { metric: 'tc filters on host veths', value: filters, unit: 'filters' },
        { metric: 'iptables FORWARD rules', value: rules, unit: 'rules' },
      ];
    },
    teardown: async () => undefined,
  },
  ...policySizes.map((n): Scenario => ({
    name: `iptables ${n}`,
    description: `no weir program; node FORWARD chain: conntrack accept, ${n - 1} peer rules, the client's last, DROP`,
    agent: false,
    runs,
    seconds: policySeconds,
    paired: (lab) => iptablesSwitch(lab, n),
    setup: (lab) => iptablesPolicy(lab, n).setup(),
    teardown: (lab) => iptablesPolicy(lab, n).teardown(),
  })),
  ...policySizes.flatMap((n): Scenario[] => [
    {
      name: `weir ${n}`,
      description: `weir enforcing the server's ingress: the client + ${n - 1} CIDR identities (/32s of 100.64.0.0/10); observability on`,
      agent: true,
      runs,
      seconds: policySeconds,
      paired: (lab) => weirSwitch(lab, labName),
      setup: () => weirPolicy(labName, n).setup(),
      teardown: () => weirPolicy(labName, n).teardown(),
    },
    ...(n === policySizes[0]
      ? [
          {
            name: `weir ${n}, observability off`,
            description: `as weir ${n}, with the datapath writing no flow events (agent --flow-events off)`,
            agent: true,
            runs,
            seconds: policySeconds,
            paired: (lab: Lab) => weirSwitch(lab, labName),
            setup: async (lab: Lab) => {
              await restartAgent(lab, 'off');
              return weirPolicy(labName, n).setup();
            },
            teardown: async (lab: Lab) => {
              await weirPolicy(labName, n).teardown();
              await restartAgent(lab, 'on');
            },
          },
        ]
      : []),
  ]),
];

/** Restarts the bench lab's agent with flow events on or off (it re-attaches every endpoint). */
async function restartAgent(lab: Lab, events: 'on' | 'off'): Promise<void> {
  await stopAgent(labName);
  await startAgent({
    lab: labName,
    nodeNetns: (await lab.node()).netns,
    agentArgs: ['--flow-events', events, ...proxyWorkerArgs],
  });
}

const podsYaml = ['server', 'client']
  .map(
    (name) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: bench, labels: {app: ${name}}}
spec: {containers: [{name: bench, ports: [{containerPort: 8080}]}]}`,
  )
  .join('\n---\n');

const servicesLegend =
  `- **services N, pod IP / weir ClusterIP / iptables ClusterIP**: with N services present, from ` +
  `bench/client to bench/server: TCP connect (+ RST close) times of a node client run in the client ` +
  `pod's netns and cgroup (${serviceConnects} per target and round after 200 untimed, two targets taking ` +
  `turns connect by connect), and sockperf TCP ping-pong exchanges per second over one connection ` +
  `(${rrSeconds} s per target and round); ${serviceRounds} rounds per N. Each round: pod IP and weir ClusterIP ` +
  `(no nat table in the node netns), then the same pair from a client in the pod's netns but outside ` +
  `its cgroup (no socket hook: weir's tc program translates every packet, "weir ClusterIP, tc"), then ` +
  `kube-proxy's rules loaded and iptables ClusterIP and pod IP again, then the rules removed. weir: N−1 dummy services + the measured one (2 ports), all selecting ` +
  `the server pod, ClusterIPs in 10.96.0.0/16, applied through the agent API in batches; the socket LB ` +
  `translates at connect(). iptables: kube-proxy's iptables mode in the node netns (nat PREROUTING → ` +
  `KUBE-SERVICES with N+1 service-port rules, the measured two last → KUBE-SVC → KUBE-SEP DNAT, no ` +
  `masquerade rules), loaded with iptables-restore, ClusterIPs in 10.97.0.0/16 where weir's socket hook ` +
  `finds no frontend. weir's tc programs are attached for every target.\n`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

type Row = BenchRow;

function table(rows: Row[]): string {
  const lines = [
    '| scenario | metric | value | unit | baseline | value / baseline | raw veth pair | value / raw pair | note |',
    '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |',
  ];
  const ratio = (x: number | undefined) => (x === undefined ? '—' : x.toFixed(3));
  for (const r of rows)
    lines.push(
      `| ${r.scenario} | ${r.metric} | ${r.value} | ${r.unit} | ${r.baseline ?? '—'} | ${ratio(r.ratio)} | ` +
        `${r.rawPair ?? '—'} | ${ratio(r.rawPairRatio)} | ${r.note ?? ''} |`,
    );
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const log = (l: string) => process.stderr.write(`bench: ${l}\n`);
  const lab = await Lab.open(labName);
  const rows: Row[] = [];
  const started = new Date();
  // Other work on the machine skews results; the load at the start says how much to trust them.
  const loadAvgAtStart = loadavg().map((l) => Math.round(l * 100) / 100);
  const teardown = async () => {
    await stopAgent(labName);
    await lab.down({ log });
  };
  // Ctrl-C or a kill still removes the lab and its agent (the finally below does not run on a signal).
  process.once('SIGINT', () => void teardown().finally(() => process.exit(130)));
  process.once('SIGTERM', () => void teardown().finally(() => process.exit(143)));
  await teardown();
  const fact = (scenario: string, f: Fact) => rows.push({ scenario, ...f });
  // Every section that needs the agent starts it if no earlier section did (each runs alone too).
  const ensureAgent = async () => {
    if ((await agentStatus(labName).catch(() => undefined)) === undefined)
      await startAgent({ lab: labName, nodeNetns: (await lab.node()).netns, agentArgs: proxyWorkerArgs });
  };
  try {
    // A /21: room for the 1 000 scale endpoints beside the two measured pods.
    await lab.up(parseLabSpec({ name: labName, nodes: [{ name: 'node1', podCIDR: '10.244.0.0/21' }] }), {
      log,
    });
    // Pods are created by the node's agent, through its API.
    await startAgent({ lab: labName, nodeNetns: (await lab.node()).netns, agentArgs: proxyWorkerArgs });
    await agentClient(labName).call('POST', '/v1/apply', {
      objects: [
        ...parseManifests('apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n', '<bench>'),
        ...parseManifests(podsYaml, '<bench>'),
      ].map(toDesired),
    });
    if (sections.has('policy')) {
      // The scenarios without weir come first: the agent goes and what it attached (tc programs,
      // socket hooks) is detached, so the pods are plain veths and routes. Started again for the
      // weir scenarios, it attaches every pod anew.
      await stopAgent(labName);
      await detachWeir(lab);
    }
    const servers = sections.has('policy') ? await startServers(lab) : [];
    const rawPair =
      sections.has('policy') || sections.has('connrate') ? await startRawPair(labName) : undefined;
    try {
      for (const sc of sections.has('policy') ? scenarios : []) {
        if (sc.agent && (await agentStatus(labName).catch(() => undefined)) === undefined) {
          log('starting the agent (it attaches the datapath to every pod)');
          await startAgent({ lab: labName, nodeNetns: (await lab.node()).netns, agentArgs: proxyWorkerArgs });
          fact('weir 0 (agent, no policy)', {
            metric: 'agent VmRSS',
            value: rssMiB((await agentStatus(labName)).pid),
            unit: 'MiB',
          });
        }
        log(`scenario ${sc.name}: ${sc.description}`);
        const facts = await sc.setup(lab);
        const ctx: BenchContext = {
          lab,
          serverIP: (await lab.pod('bench/server')).ip,
          seconds: sc.seconds ?? seconds,
        };
        const scRuns = sc.runs ?? runs;
        const sw = sc.paired?.(lab);
        try {
          const values: Record<string, number[]> = {};
          const rawValues: Record<string, number[]> = {};
          const pairValues: Record<string, number[]> = {};
          // The raw veth pair beside the routed baseline and every weir scenario, paired in time.
          const pairCtx =
            rawPair && (sc === scenarios[0] || sc.agent)
              ? { ...ctx, serverIP: rawPair.serverIP, clientPrefix: rawPair.clientPrefix }
              : undefined;
          for (const m of measurements)
            for (let i = 0; i < scRuns; i++) {
              if (pairCtx) {
                log(`  ${m.name}, run ${i + 1}/${scRuns}, raw veth pair`);
                for (const [k, v] of Object.entries(await m.run(pairCtx))) (pairValues[k] ??= []).push(v);
              }
              if (sw) {
                await sw.raw();
                log(`  ${m.name}, run ${i + 1}/${scRuns}, raw`);
                for (const [k, v] of Object.entries(await m.run(ctx))) (rawValues[k] ??= []).push(v);
                await sw.enforce();
              }
              log(`  ${m.name}, run ${i + 1}/${scRuns}`);
              for (const [k, v] of Object.entries(await m.run(ctx))) (values[k] ??= []).push(v);
            }
          for (const { key, label, measurement } of reportedMetrics) {
            const vs = values[key] ?? [];
            const raw = rawValues[key];
            const start = rows.find((r) => r.scenario === scenarios[0]?.name && r.metric === label);
            const base = raw ? round2(median(raw)) : start?.value;
            const value = round2(median(vs));
            const pair = pairValues[key]?.length ? round2(median(pairValues[key])) : undefined;
            rows.push({
              scenario: sc.name,
              metric: label,
              value,
              unit: measurement.unit,
              runs: vs,
              note: raw
                ? `median of ${scRuns} × ${ctx.seconds} s; baseline = raw runs paired in time (same pods, nothing enforced)`
                : `median of ${scRuns} × ${ctx.seconds} s`,
              ...(base !== undefined && sc !== scenarios[0] ? { baseline: base, ratio: value / base } : {}),
              ...(pair ? { rawPair: pair, rawPairRatio: value / pair } : {}),
            });
          }
          for (const f of facts) fact(sc.name, f);
        } finally {
          await sc.teardown(lab);
        }
      }
      if (sections.has('connrate') && rawPair) {
        await ensureAgent();
        log(
          `connection rate: short TCP connections per second, raw pair vs routed vs iptables ${connRules} vs weir ${connRules}`,
        );
        rows.push(
          ...(await measureConnRate(
            lab,
            labName,
            rawPair,
            { rounds: connRounds, seconds: connSeconds, rules: connRules },
            log,
          )),
        );
      }
    } finally {
      for (const s of servers) s.kill('SIGKILL');
      await rawPair?.stop();
    }

    if (sections.has('services')) {
      await ensureAgent();
      log('services: connect latency and request/response rate, pod IP vs weir vs iptables ClusterIP');
      rows.push(
        ...(await measureServices(
          lab,
          labName,
          { sizes: serviceSizes, rounds: serviceRounds, connects: serviceConnects, rrSeconds },
          log,
        )),
      );
    }

    if (sections.has('dns')) {
      await ensureAgent();
      log('dns: queries/s and latency through the DNS proxy vs straight to the server; answer-to-enforced');
      rows.push(
        ...(await measureDns(
          lab,
          labName,
          { seconds: dnsSeconds, rounds: dnsRounds, learns: dnsLearns },
          log,
        )),
      );
    }

    if (sections.has('cni')) {
      await ensureAgent();
      log('cni: podman run/rm on network weir (weir-cni) vs network none');
      rows.push(...(await measureCni(lab, labName, { rounds: cniRounds }, log)));
    }

    if (sections.has('l7')) {
      await ensureAgent();
      log("L7: HTTP through weir's proxy vs direct (L4 policy) vs nginx and haproxy reverse proxies");
      // A variant: the agent and a new proxy with its arguments and environment (the agent's,
      // which the proxy inherits); the pods and the policy stay.
      let variantEnv: string[] = [];
      const restart = async (v: L7Variant) => {
        await stopAgent(labName);
        await stopProxies(labName);
        for (const k of variantEnv) delete process.env[k];
        Object.assign(process.env, v.env);
        variantEnv = Object.keys(v.env);
        await startAgent({
          lab: labName,
          nodeNetns: (await lab.node()).netns,
          agentArgs: [...proxyWorkerArgs, ...v.agentArgs],
        });
        const agent = agentClient(labName);
        for (let i = 0; ; i++) {
          const s = await agent
            .call<{ running?: boolean; ackedVersion?: number; desiredVersion?: number; proxy?: unknown }>(
              'GET',
              '/v1/proxy/status',
            )
            .catch(() => undefined);
          if (s?.running && s.proxy && s.ackedVersion !== undefined && s.ackedVersion === s.desiredVersion)
            break;
          if (i > 300) throw new WeirError('ERR_BENCH_OUTPUT', `proxy of variant ${v.name} not ready`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      rows.push(...(await measureL7(lab, labName, { ...l7Config, restart }, log)));
    }

    if (sections.has('gateway')) {
      await ensureAgent();
      log(
        `gateway: HTTP through a Gateway with ${gatewayConfig.sizes.join(', ')} HTTPRoutes vs nginx with as many server blocks`,
      );
      rows.push(...(await measureGateway(lab, labName, gatewayConfig, log)));
    }

    // Pods with workloads (before the scale section's workload-less ones; removed again after).
    if (sections.has('pods')) {
      await ensureAgent();
      log(`pods with workloads: ${podCounts.join(', ')}`);
      const r = await measurePods(lab, podCounts, log);
      for (const f of r.facts) fact('lab pods with workloads', f);
    }

    if (sections.has('scale')) await ensureAgent();
    for (const total of sections.has('scale') ? endpointCounts : []) {
      log(`scale: ${total} endpoints`);
      const podsMs = await growTo(lab, total, log);
      const r = await timeEnforcement(lab, applies, podsMs);
      const sc = `weir, ${r.endpoints} endpoints`;
      const note = `${applies} applies, nearest-rank percentile`;
      fact(sc, {
        metric: 'apply → entry in pinned map p50',
        value: round2(percentile(r.applyMs, 50)),
        unit: 'ms',
        note,
      });
      fact(sc, {
        metric: 'apply → entry in pinned map p99',
        value: round2(percentile(r.applyMs, 99)),
        unit: 'ms',
        note: `${note}; target < 100 ms`,
      });
      fact(sc, {
        metric: 'agent regeneration p50',
        value: round2(percentile(r.regenMs, 50)),
        unit: 'ms',
        note: '/v1/status lastMs after each apply',
      });
      fact(sc, {
        metric: 'agent regeneration p99',
        value: round2(percentile(r.regenMs, 99)),
        unit: 'ms',
        note: '/v1/status lastMs after each apply',
      });
      fact(sc, {
        metric: 'pods added (lab + agent attach)',
        value: Math.round(r.podsCreatedMs),
        unit: 'ms',
        note: 'workload-less pods',
      });
      for (const f of r.facts) fact(sc, f);
    }
  } finally {
    await teardown();
  }

  // The flow pipeline on one core (no lab needed), both ways in the same run: the agent's raw path
  // (check, count, store the record's bytes; flows made when read) beside the earlier object path
  // (decode, parse, enrich, store and count each event).
  if (sections.has('flow')) {
    log('flow pipeline: events per second on one core (raw path and object path)');
    const obs = measureObserve(2_000_000);
    fact('flow pipeline (1 core)', {
      metric: 'events checked + counted + stored raw (agent path)',
      value: obs.rawEventsPerSecond,
      unit: 'events/s',
      note: `${obs.events} events, ${obs.endpoints} endpoints; ${obs.rawNsPerEvent.toFixed(0)} ns/event; ${(obs.rawEventsPerSecond / obs.eventsPerSecond).toFixed(0)}× the object path; same flows both ways: ${obs.sameFlows} (bench/micro/observe)`,
    });
    fact('flow pipeline (1 core)', {
      metric: 'events decoded + enriched + stored + counted (object path, before)',
      value: obs.eventsPerSecond,
      unit: 'events/s',
      note: `${obs.usPerEvent.toFixed(2)} µs/event`,
    });
    fact('flow pipeline (1 core)', {
      metric: 'stored flows decoded + enriched when read',
      value: obs.readFlowsPerSecond,
      unit: 'flows/s',
      note: 'a full ring of 4095 read at once',
    });
    const l7 = await measureL7Records(1_000_000);
    fact('flow pipeline (1 core)', {
      metric: "the proxy's L7 records counted + stored as lines (agent path)",
      value: Math.round(1e9 / l7.linesNsPerRecord),
      unit: 'records/s',
      note: `${l7.records} records (2 per HTTP request), CPU time; ${l7.linesNsPerRecord.toFixed(0)} ns/record against ${l7.jsonUsPerRecord.toFixed(2)} µs the earlier way (JSON line parsed, flow made, stored, counted); ${l7.lineBytes.toFixed(0)} B/record on the stream against ${l7.jsonBytes.toFixed(0)}; same flows and metrics both ways: ${l7.sameFlows} (bench/micro/observe)`,
    });
  }

  // `weir policy diff` (no lab needed): the engine on the changed policies plus every connection
  // judged twice, beside one computation of the policy in force (what an apply costs the engine).
  if (sections.has('diff')) {
    log('policy diff: the 9-pod model with 1 to 10 000 policy entries, then more pods');
    for (const [per, peers] of diffCases) {
      const d = measureDiff(per, peers, runs);
      rows.push({
        scenario: `policy diff, ${d.pods} pods`,
        metric: `diff answer, ${d.entries} entries/endpoint`,
        value: d.totalMs,
        unit: 'ms',
        baseline: d.baselineMs,
        ...(d.baselineMs > 0 ? { ratio: d.totalMs / d.baselineMs } : {}),
        note: `${d.connections} connections (${d.changes} change): engine ${d.computeMs} ms + verdicts ${d.verdictsMs} ms; baseline: the engine recomputing the policy in force (bench/micro/policy-diff)`,
      });
    }
  }

  // Tunnel mode (no lab: two node namespaces of its own): pods across nodes through weir's VXLAN
  // datapath vs a plain VXLAN pair between the same namespaces.
  if (sections.has('vxlan')) {
    log('vxlan: pod to pod across two nodes, weir tunnel mode vs a plain VXLAN pair');
    rows.push(
      ...(await measureVxlan(`weir-${labName}-vx`, { rounds: vxlanRounds, seconds: vxlanSeconds }, log)),
    );
  }

  // Two labs of two nodes: pods across nodes in plain VXLAN vs inside the proxies' mTLS tunnels.
  if (sections.has('encryption')) {
    log('encryption: pod to pod across two nodes, plain VXLAN vs --encryption mtls');
    rows.push(...(await measureEncryption(`${labName}-en`, { rounds: encRounds, seconds: encSeconds }, log)));
  }

  // A lab of several nodes on etcd of its own: convergence across nodes, etcd writes per pod change.
  if (sections.has('cluster')) {
    log(`cluster: nodes on etcd, convergence at ${clusterPods.join(', ')} pods`);
    for (const r of await measureCluster(`${labName}-cl`, clusterPods, log))
      rows.push({
        scenario: `cluster, ${r.pods} pod(s)`,
        metric: r.metric,
        value: r.value,
        unit: r.unit,
        ...(r.note ? { note: r.note } : {}),
      });
  }

  const result = {
    startedAt: started.toISOString(),
    host: { kernel: release(), cpus: cpus().length, cpu: cpus()[0]?.model, loadavgAtStart: loadAvgAtStart },
    config: {
      secondsPerRun: seconds,
      runs,
      policySecondsPerRun: policySeconds,
      policySizes,
      endpointCounts,
      podCounts,
      applies,
      sections: [...sections],
      serviceSizes,
      serviceRounds,
      connectsPerRound: serviceConnects,
      rrSecondsPerRound: rrSeconds,
      l7: l7Config,
      gateway: gatewayConfig,
      statistic: 'median',
      latency: 'sockperf UDP ping-pong',
    },
    scenarios: scenarios.map((s) => ({ name: s.name, description: s.description })),
    rawPair: 'one veth pair between two namespaces, nothing attached, no routing (bench/raw-pair.ts)',
    rows,
    finishedAt: new Date().toISOString(),
  };
  const md =
    `# weir benchmark, ${result.startedAt}\n\nkernel ${result.host.kernel}, ${result.host.cpus} CPUs; ` +
    `baseline: median of ${runs} runs of ${seconds} s, policy scenarios ${runs} runs of ${policySeconds} s; ` +
    `pod to pod on one lab node; load average at start ${loadAvgAtStart.join(' ')}; ` +
    `finished ${result.finishedAt}.\n\n` +
    (partial ? `sections: ${[...sections].join(', ')} (a partial run)\n\n` : '') +
    (sections.has('policy') ? scenarios.map((s) => `- **${s.name}**: ${s.description}\n`).join('') : '') +
    (sections.has('policy')
      ? '- **raw veth pair**: the same measurement between two namespaces joined by one veth pair ' +
        '(no routing, nothing attached), run right before each run of the routed baseline and of every weir scenario\n'
      : '') +
    (sections.has('connrate') ? connRateLegend(connRounds, connSeconds, connRules) : '') +
    (sections.has('services') ? servicesLegend : '') +
    (sections.has('dns') ? dnsLegend : '') +
    (sections.has('cni') ? cniLegend(cniRounds) : '') +
    (sections.has('l7') ? l7Legend(l7Config) : '') +
    (sections.has('gateway') ? gatewayLegend(gatewayConfig) : '') +
    (sections.has('vxlan') ? vxlanLegend(vxlanRounds, vxlanSeconds) : '') +
    (sections.has('cluster') ? clusterLegend(clusterPods) : '') +
    (sections.has('encryption') ? encryptionLegend(encRounds, encSeconds) : '') +
    (sections.has('diff')
      ? '- **policy diff, N pods**: `weir policy diff` without a lab (bench/micro/policy-diff.ts): the engine on the ' +
        'changed policies (on a copy of the allocator, as the agent does) plus every connection (ordered pod ' +
        'pairs x 6 declared ports) judged before and after; baseline: the engine recomputing the policy in force. ' +
        'The engine part grows with the policy entries, the verdict part with pods^2 x ports (a few µs per connection)\n'
      : '') +
    (sections.has('scale')
      ? `- **weir, N endpoints**: N pods attached (2 measured + workload-less ones); ${applies} policy ` +
        `changes to one endpoint, each timed from the API call until its new entry is in the pinned map\n`
      : '') +
    '\n' +
    table(rows);
  await mkdir(resultsDir, { recursive: true });
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const json = JSON.stringify(result, null, 2) + '\n';
  await writeFile(join(resultsDir, `${stamp}.json`), json);
  const latest = partial ? `latest.${[...sections].join('+')}` : 'latest';
  await writeFile(join(resultsDir, `${latest}.json`), json);
  await writeFile(join(resultsDir, `${latest}.md`), md);
  process.stdout.write(table(rows));
}

await main();
