// DNS through weir's DNS proxy vs straight to the lab's DNS server (pod kube-system/coredns), in
// the same rounds: dnsperf (Debian's) from pod bench/client for N seconds, once with no policy on
// the client (its queries go straight to the server) and once with a DNS rule (every query goes
// through the datapath's redirect to the node proxy, is judged and forwarded). Then the
// answer-to-enforced latency of toFQDNs: a lookup whose answer brings an address a toFQDNs rule
// selects waits for the agent to write the ipcache and policy maps; the same lookup again (nothing
// new) does not. Both timed from the pod's own resolver call.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { agentClient } from '../src/agent/client.js';
import { toDesired } from '../src/cluster/objects.js';
import { clusterDnsObjects } from '../src/dns/addon.js';
import { parseManifests } from '../src/k8s/index.js';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { percentile } from './scale.js';
import type { ServiceRow } from './services.js';

export interface DnsBenchConfig {
  seconds: number;
  rounds: number;
  /** Lookups timed for answer-to-enforced (cold) and warm. */
  learns: number;
}

const queryName = 'kube-dns.kube-system.svc.cluster.local';

const dnsPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: bench-dns, namespace: bench }
spec:
  endpointSelector: { matchLabels: { app: client } }
  egress:
    - toEndpoints: [{ matchLabels: { k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns } }]
      toPorts:
        - ports: [{ port: "53", protocol: ANY }]
          rules: { dns: [{ matchPattern: "*" }] }
    - toFQDNs: [{ matchName: ${queryName} }]
    - toEndpoints: [{}]
`;

async function apply(lab: string, yaml: string): Promise<void> {
  await agentClient(lab).call('POST', '/v1/apply', {
    objects: parseManifests(yaml, '<bench dns>').map(toDesired),
  });
}

async function removePolicy(lab: string): Promise<void> {
  await agentClient(lab).call('POST', '/v1/delete', {
    objects: [{ kind: 'CiliumNetworkPolicy', namespace: 'bench', name: 'bench-dns' }],
    ignoreNotFound: true,
  });
}

/** dnsperf from bench/client: queries per second and per-query latencies (ms, from -v). */
async function dnsperf(lab: Lab, server: string, dataFile: string, seconds: number) {
  const argv = await lab.execArgv('bench/client', [
    'dnsperf',
    '-s',
    server,
    '-d',
    dataFile,
    '-l',
    String(seconds),
    '-c',
    '8',
    '-T',
    '1',
    '-q',
    '64',
    '-v',
  ]);
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve(text)
        : reject(new WeirError('ERR_BENCH_DNS', `dnsperf exited ${code}: ${text.slice(-400)}`)),
    );
  });
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const lost = Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN);
  const lat = [...out.matchAll(/^> \S+ \S+ \S+ ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000);
  return { qps, lost, lat };
}

/** One process in bench/client timing getaddrinfo-free lookups (dns.Resolver to the Service) per "go" line. */
function resolverLoop(lab: Lab, server: string) {
  const script = `const { Resolver } = require('dns').promises;
    const r = new Resolver({ timeout: 2000, tries: 1 }); r.setServers([${JSON.stringify(server)}]);
    require('readline').createInterface({ input: process.stdin }).on('line', async () => {
      const t = process.hrtime.bigint();
      try { await r.resolve4(${JSON.stringify(queryName)}); console.log(Number(process.hrtime.bigint() - t) / 1e6); }
      catch (e) { console.log('error ' + e.code); }
    });`;
  return lab.execArgv('bench/client', [process.execPath, '-e', script]).then((argv) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'ignore'] });
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    return {
      async time(): Promise<number> {
        child.stdin.write('go\n');
        const l = await lines.next();
        const ms = Number(l.value);
        if (l.done || Number.isNaN(ms))
          throw new WeirError('ERR_BENCH_DNS', `lookup failed: ${String(l.value)}`);
        return ms;
      },
      stop: () => child.kill('SIGKILL'),
    };
  });
}

const median = (xs: number[]) => percentile(xs, 50);
const r2 = (n: number) => Math.round(n * 100) / 100;

export async function measureDns(
  lab: Lab,
  labName: string,
  cfg: DnsBenchConfig,
  log: (m: string) => void,
): Promise<ServiceRow[]> {
  await agentClient(labName).call('POST', '/v1/apply', { objects: clusterDnsObjects() });
  const coredns = await lab.pod('kube-system/coredns');
  const dataFile = `/tmp/weir-bench-dns-${process.pid}.txt`;
  await writeFile(dataFile, `${queryName} A\n`);
  const direct = { qps: [] as number[], lat: [] as number[], lost: 0 };
  const proxied = { qps: [] as number[], lat: [] as number[], lost: 0 };
  try {
    for (let i = 0; i < cfg.rounds; i++) {
      log(`dns: round ${i + 1}/${cfg.rounds}, straight to the server`);
      await removePolicy(labName);
      const d = await dnsperf(lab, coredns.ip, dataFile, cfg.seconds);
      direct.qps.push(d.qps);
      for (const x of d.lat) direct.lat.push(x);
      direct.lost += d.lost;
      log(`dns: round ${i + 1}/${cfg.rounds}, through the DNS proxy`);
      await apply(labName, dnsPolicy);
      const p = await dnsperf(lab, coredns.ip, dataFile, cfg.seconds);
      proxied.qps.push(p.qps);
      for (const x of p.lat) proxied.lat.push(x);
      proxied.lost += p.lost;
    }
    // Answer-to-enforced: cold lookups (the cache cleaned: the answer waits for the maps) vs warm.
    const loop = await resolverLoop(lab, coredns.ip);
    const cold: number[] = [];
    const warm: number[] = [];
    try {
      await loop.time(); // the first lookup starts the process's resolver
      // The lookups go through the proxy: the answer was learned.
      const cache = await agentClient(labName).call<{ items: { name: string }[] }>('GET', '/v1/fqdn/cache');
      if (!cache.items.some((e) => e.name === queryName))
        throw new WeirError('ERR_BENCH_DNS', 'the lookup did not go through the DNS proxy (nothing learned)');
      for (let i = 0; i < cfg.learns; i++) {
        await agentClient(labName).call('POST', '/v1/fqdn/clean', {});
        cold.push(await loop.time());
        warm.push(await loop.time());
      }
    } finally {
      loop.stop();
      await removePolicy(labName);
    }
    const rows: ServiceRow[] = [];
    const qd = median(direct.qps);
    const qp = median(proxied.qps);
    const note = `dnsperf -c 8 -q 64, ${cfg.rounds} rounds of ${cfg.seconds} s, median`;
    rows.push({
      scenario: 'dns: straight to the server',
      metric: 'queries/s',
      value: r2(qd),
      unit: 'q/s',
      runs: direct.qps,
      note,
    });
    rows.push({
      scenario: 'dns: through the DNS proxy',
      metric: 'queries/s',
      value: r2(qp),
      unit: 'q/s',
      runs: proxied.qps,
      baseline: r2(qd),
      ratio: r2(qp / qd),
      note,
    });
    for (const [sc, x] of [
      ['dns: straight to the server', direct],
      ['dns: through the DNS proxy', proxied],
    ] as const) {
      rows.push({
        scenario: sc,
        metric: 'query latency p50',
        value: r2(percentile(x.lat, 50)),
        unit: 'ms',
        note: `${x.lat.length} queries (dnsperf -v)`,
      });
      rows.push({
        scenario: sc,
        metric: 'query latency p99',
        value: r2(percentile(x.lat, 99)),
        unit: 'ms',
        note: `${x.lost} lost`,
      });
    }
    const lnote = `${cfg.learns} lookups each from the pod (dns.Resolver), nearest-rank percentile`;
    rows.push({
      scenario: 'toFQDNs',
      metric: 'lookup, new address (answer waits for the maps) p50',
      value: r2(percentile(cold, 50)),
      unit: 'ms',
      note: lnote,
    });
    rows.push({
      scenario: 'toFQDNs',
      metric: 'lookup, new address p99',
      value: r2(percentile(cold, 99)),
      unit: 'ms',
      note: lnote,
    });
    rows.push({
      scenario: 'toFQDNs',
      metric: 'lookup, known address p50',
      value: r2(percentile(warm, 50)),
      unit: 'ms',
      note: lnote,
    });
    rows.push({
      scenario: 'toFQDNs',
      metric: 'answer-to-enforced (new - known, p50)',
      value: r2(percentile(cold, 50) - percentile(warm, 50)),
      unit: 'ms',
      note: 'the time an answer is held while the agent writes ipcache and policy maps',
    });
    return rows;
  } finally {
    await removePolicy(labName).catch(() => undefined);
  }
}

export const dnsLegend =
  '- **dns**: dnsperf from bench/client to the DNS pod (kube-system/coredns), straight (no policy) and ' +
  'through the DNS proxy (a DNS rule on the client), alternating in the same rounds; toFQDNs: a lookup ' +
  'whose answer brings an address a toFQDNs rule selects (held until the agent has written the maps) ' +
  'against the same lookup again\n';
