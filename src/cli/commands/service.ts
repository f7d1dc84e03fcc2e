// Services on the command line: `weir get services|svc` (kubectl's view), `weir service list`
// (frontend -> backends with state, like `cilium service list`), `weir bpf lb list` (what the lb
// maps hold, read from their pins) and `weir bpf lb maglev get <ns/name>` (table size, shares).
import { Command } from 'commander';
import type { FrontendView, MaglevView, ServiceSummary } from '../../agent/lb.js';
import { agentClient } from '../../agent/client.js';
import { defaultSettings } from '../../agent/settings.js';
import { BpfMap } from '../../bpf/index.js';
import type { DesiredObject } from '../../cluster/objects.js';
import { LbMaps } from '../../datapath/maps/lb/index.js';
import { serviceObject, type V1Service } from '../../k8s/index.js';
import { validateService } from '../../service/api/index.js';
import { SVC_F_AFFINITY, SVC_F_LOCAL, SVC_F_MAGLEV, SVC_F_NODEPORT } from '../../service/model.js';
import { notFound, pick, printResult, type OutputFormat } from '../output.js';
import { withNodeMaps } from './inspect-data.js';
import { labOption, outputOption } from './lab.js';

interface ServicesAnswer {
  items: ServiceSummary[];
  frontends: FrontendView[];
  /** The stored Service and EndpointSlice objects, with allocated clusterIPs and nodePorts. */
  objects: DesiredObject[];
  algorithm: string;
}

const services = (lab: string) => agentClient(lab).call<ServicesAnswer>('GET', '/v1/services');

const flagText = (flags: number) =>
  [
    [SVC_F_NODEPORT, 'NodePort'],
    [SVC_F_AFFINITY, 'affinity'],
    [SVC_F_MAGLEV, 'maglev'],
    [SVC_F_LOCAL, 'local'],
  ]
    .filter(([bit]) => flags & (bit as number))
    .map(([, name]) => name)
    .join(',');

const selectorText = (s?: Record<string, string>) =>
  s
    ? Object.entries(s)
        .map(([k, v]) => `${k}=${v}`)
        .join(',')
    : '<none>';

/** A stored Service (as the agent allocated it) as a v1 Service. */
export function v1Service(o: DesiredObject): V1Service {
  const svc = validateService(o.object, {
    file: o.file ?? '(stored)',
    object: `Service ${o.namespace ?? 'default'}/${o.name}`,
  });
  const meta = (
    o.object as { metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> } }
  ).metadata;
  return serviceObject(svc, {
    ...(meta?.labels ? { labels: meta.labels } : {}),
    ...(meta?.annotations ? { annotations: meta.annotations } : {}),
  });
}

/**
 * `weir get services [NAME]` (called by `weir get`). CLUSTER-IP is the primary address as kubectl
 * shows it; wide adds every clusterIP (dual-stack: one per family), the selector, affinity and
 * ready endpoints; -o json|yaml prints v1 Services.
 */
export async function getServices(
  lab: string,
  namespace: string | undefined,
  format: OutputFormat,
  name?: string,
): Promise<void> {
  const answer = await services(lab);
  const stored = new Map(
    answer.objects
      .filter((o) => o.kind === 'Service')
      .map((o) => [`${o.namespace ?? 'default'}/${o.name}`, o] as const),
  );
  const { rows, data } = pick(
    namespace ? answer.items.filter((s) => s.namespace === namespace) : answer.items,
    name,
    (s) => s.name,
    (s) => v1Service(stored.get(`${s.namespace}/${s.name}`) as DesiredObject),
    () => notFound('services', name ?? '', namespace),
  );
  printResult(format, data, rows, [
    ...(namespace ? [] : [{ header: 'namespace', get: (s: ServiceSummary) => s.namespace }]),
    { header: 'name', get: (s) => s.name },
    { header: 'type', get: (s) => s.type },
    { header: 'cluster-ip', get: (s) => s.clusterIP },
    { header: 'port(s)', get: (s) => s.ports.join(',') || '<none>' },
    ...(format === 'wide'
      ? [
          { header: 'cluster-ips', get: (s: ServiceSummary) => s.clusterIPs.join(',') || '<pending>' },
          { header: 'ip-families', get: (s: ServiceSummary) => s.ipFamilies.join(',') || '<none>' },
          { header: 'selector', get: (s: ServiceSummary) => selectorText(s.selector) },
          { header: 'affinity', get: (s: ServiceSummary) => s.sessionAffinity },
          { header: 'endpoints', get: (s: ServiceSummary) => s.endpoints.join(',') || '<none>' },
        ]
      : []),
  ]);
}

interface Opts {
  lab: string;
  output: OutputFormat;
}

/** `weir service list`. */
export function serviceCommand(): Command {
  const cmd = new Command('service').description('service load balancing: frontends and their backends');
  cmd
    .command('list')
    .description('every frontend with its backends and their state (cilium service list)')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: Opts) => {
      const fes = (await services(o.lab)).frontends;
      // One row per backend, the frontend named on the first (Cilium's layout).
      const rows = fes.flatMap((f) =>
        (f.backends.length > 0 ? f.backends : [undefined]).map((b, i) => ({
          id: i === 0 ? String(f.id) : '',
          frontend: i === 0 ? f.frontend : '',
          type: i === 0 ? f.type : '',
          service: i === 0 ? f.service : '',
          backend: b ? `${i + 1} => ${b.address} (${b.state})` : '(no backends)',
        })),
      );
      printResult(o.output, fes, rows, [
        { header: 'id', get: (r) => r.id },
        { header: 'frontend', get: (r) => r.frontend },
        { header: 'service type', get: (r) => r.type },
        { header: 'service', get: (r) => r.service },
        { header: 'backend', get: (r) => r.backend },
      ]);
    });
  return cmd;
}

/**
 * M of the Maglev tables in weir_lb_maglev: the value size of an installed table's inner map (4
 * bytes per entry); without a table, nothing is read and M does not matter.
 */
function maglevSizeOf(outer: BpfMap): number {
  for (const key of outer.rawKeys()) {
    const id = outer.lookupRaw(key)?.readUInt32LE(0);
    if (id === undefined) continue;
    const inner = BpfMap.fromId(id);
    try {
      return inner.valueSize / 4;
    } finally {
      inner.close();
    }
  }
  return defaultSettings.maglevTableSize;
}

/** The lb maps from their pins (no agent needed). */
async function withLbMaps<T>(lab: string, fn: (lb: LbMaps) => T): Promise<T> {
  return withNodeMaps(lab, (maps) => {
    const maglev = maps.pin('weir_lb_maglev');
    const lb = new LbMaps(
      {
        services: maps.pin('weir_lb_services'),
        backends: maps.pin('weir_lb_backends'),
        revnat: maps.pin('weir_lb_revnat'),
        maglev,
        affinity: maps.pin('weir_lb_affinity'),
      },
      maglevSizeOf(maglev),
    );
    return fn(lb);
  });
}

/** `weir bpf lb ...`, added to `weir bpf`. */
export function bpfLbCommand(): Command {
  const cmd = new Command('lb').description('weir_lb_*: service frontends, backends and Maglev tables');
  cmd
    .command('list')
    .description('SERVICE ADDRESS  BACKEND ADDRESS (REVNAT_ID) (SLOT), as the maps hold them')
    .option('--backends', 'list weir_lb_backends instead')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: Opts & { backends?: boolean }) => {
      await withLbMaps(o.lab, (lb) => {
        if (o.backends) {
          const rows = lb.listBackends().map((b) => ({
            id: b.id,
            address: `${b.backend.address}:${b.backend.port}/${b.backend.proto.toUpperCase()}`,
            state: b.backend.state,
          }));
          printResult(o.output, rows, rows, [
            { header: 'backend id', get: (r) => r.id },
            { header: 'address', get: (r) => r.address },
            { header: 'state', get: (r) => r.state },
          ]);
          return;
        }
        const entries = lb.listServices();
        const backends = new Map(lb.listBackends().map((b) => [b.id, b.backend]));
        const rows = entries.flatMap((e) => {
          const fe = `${e.frontend.address}:${e.frontend.port}/${e.frontend.proto.toUpperCase()}`;
          const meta = `0.0.0.0:0 (${e.meta.revNatIndex}) (0) [count ${e.backendIds.length}, active ${e.meta.active}${
            e.meta.flags ? `, ${flagText(e.meta.flags)}` : ''
          }${e.meta.affinityTimeout ? `, affinity ${e.meta.affinityTimeout}s` : ''}]`;
          return [
            { service: fe, backend: meta },
            ...e.backendIds.map((id, i) => {
              const b = backends.get(id);
              const addr = b ? `${b.address}:${b.port}/${b.proto.toUpperCase()}` : `backend ${id} (missing)`;
              return {
                service: '',
                backend: `${addr} (${e.meta.revNatIndex}) (${i + 1}) [${b?.state ?? '?'}]`,
              };
            }),
          ];
        });
        printResult(o.output, entries, rows, [
          { header: 'service address', get: (r) => r.service },
          { header: 'backend address (revnat_id) (slot)', get: (r) => r.backend },
        ]);
      });
    });
  const maglev = cmd.command('maglev').description('weir_lb_maglev: per-frontend Maglev lookup tables');
  maglev
    .command('get')
    .description("a service's Maglev tables: size and each backend's share")
    .argument('<service>', 'namespace/name (or name in namespace default)')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (service: string, o: Opts) => {
      const [ns, name] = service.includes('/') ? service.split('/', 2) : ['default', service];
      const { items } = await agentClient(o.lab).call<{ items: MaglevView[] }>(
        'GET',
        `/v1/services/${encodeURIComponent(ns ?? '')}/${encodeURIComponent(name ?? '')}/maglev`,
      );
      const rows = items.flatMap((t) =>
        t.backends.map((b, i) => ({
          frontend: i === 0 ? `${t.frontend} [${t.revNatIndex}] M=${t.tableSize}` : '',
          backend: `${b.id} ${b.address}`,
          entries: b.entries,
          share: `${(b.share * 100).toFixed(1)}%`,
        })),
      );
      printResult(o.output, items, rows, [
        { header: 'frontend', get: (r) => r.frontend },
        { header: 'backend', get: (r) => r.backend },
        { header: 'entries', get: (r) => r.entries },
        { header: 'share', get: (r) => r.share },
      ]);
    });
  return cmd;
}
