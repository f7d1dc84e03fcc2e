// The gateway section of `make bench` (issue 12): HTTP/1.1 keep-alive requests/s and p99 from
// bench/client through a Gateway on weir's node proxy with 1, 100 and 1 000 HTTPRoutes (distinct
// hostnames r<i>.gw.bench; every request names the last route's host), beside nginx in the node's
// netns with as many `server` blocks (server_name r<i>.gw.bench, `location /` → the same upstream),
// between the same pods, in the same run. Upstream: nginx in bench/server (bench/http-peers.ts),
// behind a Service the routes send to. The routes grow in place (1 → 100 → 1 000); each size is
// measured once the last route answers, rounds alternating weir and nginx. Reported, not asserted:
// flat is the goal.
import { rm } from 'node:fs/promises';
import { agentClient } from '../src/agent/client.js';
import type { DesiredObject } from '../src/cluster/objects.js';
import { weirGatewayClass } from '../src/gateway/corpus.js';
import type { GatewayView } from '../src/gateway/stored.js';
import type { Lab } from '../src/lab/index.js';
import { WeirError } from '../src/shared/errors.js';
import { run } from '../src/shared/exec.js';
import {
  benchPlaces,
  nginxProxyHead,
  nginxServerConf,
  startPeer,
  wrk,
  type HttpPeer,
  type LoadResult,
} from './http-peers.js';
import type { BenchRow } from './row.js';

const upstreamPort = 11170;
const nginxBasePort = 11175;
export const gatewayPort = 11180;
const ns = 'bench';
const gatewayName = 'gw';
const serviceName = 'gw-upstream';
const servicePort = 80;
const batch = 500;

export interface GatewayBenchConfig {
  /** Route counts, ascending (the routes grow in place). */
  sizes: number[];
  rounds: number;
  seconds: number;
  connections: number;
}

export type GatewayRow = BenchRow;

/** The hostname of route i (0-based). */
export const routeHost = (i: number) => `r${i}.gw.bench`;

const desired = (
  kind: string,
  apiVersion: string,
  name: string,
  object: Record<string, unknown>,
  namespaced = true,
) => ({
  apiVersion,
  kind,
  name,
  ...(namespaced ? { namespace: ns } : {}),
  file: '<bench gateway>',
  object: { apiVersion, kind, ...object },
});

/** The GatewayClass, the Gateway (one HTTP listener) and the upstream Service. */
export function gatewayBase(targetPort: number): DesiredObject[] {
  const gv = 'gateway.networking.k8s.io/v1';
  return [
    {
      apiVersion: gv,
      kind: 'GatewayClass',
      name: weirGatewayClass.metadata.name,
      file: '<bench gateway>',
      object: weirGatewayClass,
    },
    desired('Gateway', gv, gatewayName, {
      metadata: { name: gatewayName, namespace: ns },
      spec: {
        gatewayClassName: weirGatewayClass.metadata.name,
        listeners: [
          {
            name: 'http',
            port: gatewayPort,
            protocol: 'HTTP',
            allowedRoutes: { namespaces: { from: 'Same' } },
          },
        ],
      },
    }),
    desired('Service', 'v1', serviceName, {
      metadata: { name: serviceName, namespace: ns },
      spec: {
        selector: { app: 'server' },
        ports: [{ name: 'http', port: servicePort, targetPort, protocol: 'TCP' }],
      },
    }),
  ];
}

/** HTTPRoutes from..to-1: route i serves routeHost(i), every path, to the upstream Service. */
export function gatewayRoutes(from: number, to: number): DesiredObject[] {
  const out: DesiredObject[] = [];
  for (let i = from; i < to; i++) {
    const name = `r${i}`;
    out.push(
      desired('HTTPRoute', 'gateway.networking.k8s.io/v1', name, {
        metadata: { name, namespace: ns },
        spec: {
          parentRefs: [{ name: gatewayName }],
          hostnames: [routeHost(i)],
          rules: [
            {
              matches: [{ path: { type: 'PathPrefix', value: '/' } }],
              backendRefs: [{ name: serviceName, port: servicePort }],
            },
          ],
        },
      }),
    );
  }
  return out;
}

/**
 * nginx as the gateway's counterpart: `routes` server blocks on `listen`, server_name
 * routeHost(i), each with `location /` proxying to `upstream` (HTTP/1.1 keep-alive both ways, one
 * worker), as the L7 section's reverse proxy is configured.
 */
export function nginxRoutesConf(d: string, listen: number, upstream: string, routes: number): string {
  if (!Number.isInteger(routes) || routes < 1)
    throw new WeirError('ERR_BENCH_PEER', `nginx routes: ${routes} is not a positive whole number`);
  const servers = Array.from(
    { length: routes },
    (_, i) =>
      `  server { listen ${listen}${i === 0 ? ' backlog=4096' : ''}; server_name ${routeHost(i)};\n` +
      '    location / { proxy_pass http://backend; proxy_http_version 1.1;\n' +
      '      proxy_set_header Connection ""; proxy_buffering off; } }',
  );
  return [
    ...nginxProxyHead(d),
    '  server_names_hash_max_size 8192; server_names_hash_bucket_size 64;',
    `  upstream backend { server ${upstream}; keepalive 512; keepalive_requests 1000000; }`,
    ...servers,
    '}',
    '',
  ].join('\n');
}

export const gatewayLegend = (c: GatewayBenchConfig) =>
  `- **gateway, N HTTPRoutes**: bench/client → a Gateway on weir's node proxy (one HTTP listener on ` +
  `its lab address) → a Service → nginx in bench/server (64-byte bodies); N HTTPRoutes with distinct ` +
  `hostnames, every request for the last one's (Host: r<N-1>.gw.bench). Beside it, same run: **nginx, ` +
  `N server blocks** in the node's netns (one worker, keep-alive upstream), server_name per route and ` +
  `\`location /\` → the same pod. wrk -t1 -c${c.connections} keep-alive, ${c.rounds} rounds × ${c.seconds} s ` +
  `per target and size, weir and nginx taking turns; N = ${c.sizes.join(', ')} (the routes grow in place). ` +
  `baseline: weir/nginx rows = nginx with as many blocks; "vs 1 route" rows = the same proxy with 1 route. Flat is the goal\n`;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;

/** The Gateway's lab address, once the agent has assigned one. */
async function gatewayAddress(labName: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const view = await agentClient(labName).call<GatewayView>('GET', '/v1/gateway');
    const gw = view.objects.find((o) => o.kind === 'Gateway' && o.namespace === ns && o.name === gatewayName);
    const a = (gw?.object as { status?: { addresses?: { value?: string }[] } } | undefined)?.status
      ?.addresses?.[0]?.value;
    if (a) return a;
    if (Date.now() > deadline)
      throw new WeirError('ERR_BENCH_OUTPUT', `Gateway ${ns}/${gatewayName} got no address in 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until a request for `host` through `url` is answered 200; ms waited. */
async function waitServing(client: string[], url: string, host: string): Promise<number> {
  const t0 = performance.now();
  const deadline = Date.now() + 120_000;
  let last = '';
  for (;;) {
    const r = await run(
      [
        ...client,
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '-m',
        '2',
        '-w',
        '%{http_code}',
        '-H',
        `Host: ${host}`,
        url,
      ],
      { check: false, timeoutMs: 10_000 },
    );
    last = r.stdout.trim();
    if (last === '200') return performance.now() - t0;
    if (Date.now() > deadline)
      throw new WeirError(
        'ERR_BENCH_OUTPUT',
        `${url} (Host: ${host}) not serving after 120 s (last: ${last})`,
      );
    await new Promise((res) => setTimeout(res, 100));
  }
}

export async function measureGateway(
  lab: Lab,
  labName: string,
  cfg: GatewayBenchConfig,
  log: (l: string) => void,
): Promise<GatewayRow[]> {
  const { dir, server, node, client, serverPrefix, nodePrefix, agent } = await benchPlaces(
    lab,
    labName,
    'gateway',
  );
  const upstream = `${server.ip}:${upstreamPort}`;
  const peers: HttpPeer[] = [];
  const rows: GatewayRow[] = [];
  const applied: DesiredObject[] = [];
  const apply = async (objects: DesiredObject[]) => {
    for (let i = 0; i < objects.length; i += batch) {
      const part = objects.slice(i, i + batch);
      await agent.call('POST', '/v1/apply', { objects: part });
      applied.push(...part);
    }
  };
  const results = new Map<string, LoadResult[]>();
  try {
    peers.push(
      await startPeer(
        'gw-upstream',
        dir,
        serverPrefix,
        'nginx',
        (d) => nginxServerConf(d, upstreamPort, upstreamPort + 1),
        { prefix: client, host: server.ip, port: upstreamPort },
      ),
    );
    await apply(gatewayBase(upstreamPort));
    const address = await gatewayAddress(labName);
    const gwUrl = `http://${address}:${gatewayPort}/`;
    let have = 0;
    for (const [k, n] of cfg.sizes.entries()) {
      const host = routeHost(n - 1);
      const t0 = performance.now();
      await apply(gatewayRoutes(have, n));
      await waitServing(client, gwUrl, host);
      const readyMs = performance.now() - t0;
      have = n;
      const nginxPort = nginxBasePort + k;
      peers.push(
        await startPeer(
          `gw-nginx-${n}`,
          dir,
          nodePrefix,
          'nginx',
          (d) => nginxRoutesConf(d, nginxPort, upstream, n),
          { prefix: client, host: node.ip, port: nginxPort },
        ),
      );
      const nginxUrl = `http://${node.ip}:${nginxPort}/`;
      await waitServing(client, nginxUrl, host);
      rows.push({
        scenario: `gateway, ${n} HTTPRoute${n === 1 ? '' : 's'}`,
        metric: 'apply → last route serving',
        value: Math.round(readyMs),
        unit: 'ms',
        note: `${n - (k === 0 ? 0 : (cfg.sizes[k - 1] ?? 0))} routes added through the API in batches of ${batch}, until a request for ${host} through the Gateway answers 200 (curl polling every 100 ms)`,
      });
      const targets = [
        { key: 'weir', url: gwUrl },
        { key: 'nginx', url: nginxUrl },
      ];
      for (let round = 1; round <= cfg.rounds; round++)
        for (const t of targets) {
          log(`  ${n} routes, round ${round}/${cfg.rounds}: ${t.key}`);
          const r = await wrk(client, t.url, cfg.connections, cfg.seconds, [`Host: ${host}`]);
          const key = `${t.key}/${n}`;
          results.set(key, [...(results.get(key) ?? []), r]);
        }
      // One nginx at a time (its memory and listeners out of the way of the next size's runs).
      await peers.pop()?.stop();
    }
    const names: Record<string, string> = { weir: 'weir Gateway', nginx: 'nginx server blocks' };
    const first = cfg.sizes[0] ?? 1;
    for (const n of cfg.sizes)
      for (const key of ['weir', 'nginx']) {
        const rs = results.get(`${key}/${n}`) ?? [];
        const base = results.get(`nginx/${n}`) ?? [];
        const one = results.get(`${key}/${first}`) ?? [];
        const errors = rs.reduce((a, r) => a + r.errors, 0);
        const note = `median of ${rs.length} × ${cfg.seconds} s, wrk -c${cfg.connections}${errors ? `; ${errors} errors` : ''}`;
        const rps = r2(median(rs.map((r) => r.requestsPerSecond)));
        const p50 = r2(median(rs.map((r) => r.p50Ms)));
        const p99 = r2(median(rs.map((r) => r.p99Ms)));
        const vs = (v: number, b: number) => (key === 'nginx' || !b ? {} : { baseline: r2(b), ratio: v / b });
        const scenario = `gateway: ${names[key]}, ${n} route${n === 1 ? '' : 's'}`;
        rows.push(
          {
            scenario,
            metric: 'HTTP/1.1 keep-alive req/s',
            value: rps,
            unit: 'req/s',
            runs: rs.map((r) => r2(r.requestsPerSecond)),
            ...vs(rps, median(base.map((r) => r.requestsPerSecond))),
            note: `${note}; baseline = nginx with ${n} server block${n === 1 ? '' : 's'}`,
          },
          {
            scenario,
            metric: 'HTTP/1.1 keep-alive p50',
            value: p50,
            unit: 'ms',
            runs: rs.map((r) => r.p50Ms),
            note,
          },
          {
            scenario,
            metric: 'HTTP/1.1 keep-alive p99',
            value: p99,
            unit: 'ms',
            runs: rs.map((r) => r.p99Ms),
            ...vs(p99, median(base.map((r) => r.p99Ms))),
            note,
          },
        );
        if (n !== first) {
          const oneRps = median(one.map((r) => r.requestsPerSecond));
          const oneP99 = median(one.map((r) => r.p99Ms));
          rows.push(
            {
              scenario: `gateway flatness: ${names[key]}, ${n} vs ${first} route${first === 1 ? '' : 's'}`,
              metric: 'req/s ratio',
              value: r2(oneRps ? rps / oneRps : 0),
              unit: '×',
              baseline: r2(oneRps),
              note: '1 = flat',
            },
            {
              scenario: `gateway flatness: ${names[key]}, ${n} vs ${first} route${first === 1 ? '' : 's'}`,
              metric: 'p99 ratio',
              value: r2(oneP99 ? p99 / oneP99 : 0),
              unit: '×',
              baseline: r2(oneP99),
              note: '1 = flat',
            },
          );
        }
      }
  } finally {
    const refs = [...applied]
      .reverse()
      .map((o) => ({ kind: o.kind, name: o.name, ...(o.namespace ? { namespace: o.namespace } : {}) }));
    for (let i = 0; i < refs.length; i += batch)
      await agent.call('POST', '/v1/delete', { objects: refs.slice(i, i + batch) }).catch(() => undefined);
    for (const p of peers) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
