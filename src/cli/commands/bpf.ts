// `weir bpf ...`: the node's datapath maps as the kernel holds them, read from their pins (no agent
// needed, like `cilium bpf`). Identities are shown with their labels when the agent answers.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { MapType } from '../../bpf/index.js';
import { monotonicNowNs } from '../../datapath/clock.js';
import { DropReason, reasonText } from '../../datapath/drop-reasons.js';
import { MAPS, POLICY_PIN, type PinnedMapName } from '../../datapath/maps/catalog.js';
import { EndpointFlags } from '../../datapath/maps/endpoints/layout.js';
import { printResult, type OutputFormat } from '../output.js';
import { identityLabels, resolveEndpointId, withNodeMaps, type NodeMaps } from './inspect-data.js';
import { durationText, hostPort, policyRows, portProtoText, protoName } from './inspect-format.js';
import { labOption, outputOption } from './lab.js';

const reasonNames = new Map<number, string>(Object.entries(DropReason).map(([name, code]) => [code, name]));

const flagNames = (flags: number) =>
  (Object.entries(EndpointFlags) as [string, number][])
    .filter(([, bit]) => flags & bit)
    .map(([name]) => name);

/** Labels text of an identity, or its number when the labels are unknown; 0 is any identity. */
const identityText = (id: number, labels: Map<number, string[]>) => {
  if (id === 0) return 'ANY';
  const l = labels.get(id);
  return l ? `${id} ${shortLabels(l)}` : String(id);
};

/**
 * The labels a person tells identities apart by: the pod's own and its namespace, without the
 * cluster, service-account and namespace-label copies every pod identity carries (-o json has all).
 */
export function shortLabels(labels: readonly string[]): string {
  const hidden = /^k8s:io\.cilium\.k8s\.(policy\.cluster|policy\.serviceaccount|namespace\.labels\.)/;
  const shown = labels.filter((l) => !hidden.test(l));
  return (shown.length > 0 ? shown : labels).join(',');
}

const withLabels = (id: number, labels: Map<number, string[]>) => {
  const l = labels.get(id);
  return l ? { identity: id, labels: l } : { identity: id };
};

interface Opts {
  lab: string;
  output: OutputFormat;
}

function sub(parent: Command, name: string, description: string): Command {
  return parent.command(name).description(description).addOption(labOption()).addOption(outputOption());
}

function ipcacheCommand(): Command {
  const cmd = new Command('ipcache').description('weir_ipcache: IP prefix -> security identity');
  sub(cmd, 'list', 'list every prefix and its identity').action(async (o: Opts) => {
    const entries = await withNodeMaps(o.lab, (m) => m.ipcache().list());
    entries.sort((a, b) => a.prefix.localeCompare(b.prefix, 'en', { numeric: true }));
    const labels = await identityLabels(
      o.lab,
      entries.map((e) => e.identity),
    );
    const rows = entries.map((e) => ({
      prefix: e.prefix,
      ...withLabels(e.identity, labels),
      ...(e.tunnelEndpoint ? { tunnelEndpoint: e.tunnelEndpoint } : {}),
    }));
    // Tunnel mode: the node each remote prefix lives on (a column only when any entry has one).
    const tunnel = rows.some((r) => r.tunnelEndpoint)
      ? [{ header: 'tunnel endpoint', get: (r: (typeof rows)[number]) => r.tunnelEndpoint ?? '' }]
      : [];
    printResult(o.output, rows, rows, [
      { header: 'ip prefix', get: (r) => r.prefix },
      { header: 'identity', get: (r) => r.identity },
      { header: 'labels', get: (r) => (r.labels ? shortLabels(r.labels) : '') },
      ...tunnel,
    ]);
  });
  return cmd;
}

function endpointMapCommand(): Command {
  const cmd = new Command('endpoint').description(
    'weir_endpoints: host veth -> endpoint id, identity, flags',
  );
  sub(cmd, 'list', 'list the endpoints the datapath knows, by host veth').action(async (o: Opts) => {
    const rows = await withNodeMaps(
      o.lab,
      (m, ctx) => {
        const podByIfindex = new Map(ctx.pods.map((p) => [p.hostIfindex, p]));
        return m
          .endpoints()
          .list()
          .sort((a, b) => a.endpoint.endpointId - b.endpoint.endpointId)
          .map(({ ifindex, endpoint }) => {
            const pod = podByIfindex.get(ifindex);
            return {
              ifindex,
              interface: pod?.hostIfname ?? '',
              pod: pod ? `${pod.namespace}/${pod.name}` : '',
              endpointId: endpoint.endpointId,
              identity: endpoint.identity,
              flags: flagNames(endpoint.flags),
            };
          });
      },
      { pods: true },
    );
    printResult(o.output, rows, rows, [
      { header: 'endpoint id', get: (r) => r.endpointId },
      { header: 'ifindex', get: (r) => r.ifindex },
      { header: 'interface', get: (r) => r.interface },
      { header: 'pod', get: (r) => r.pod },
      { header: 'identity', get: (r) => r.identity },
      { header: 'flags', get: (r) => r.flags.join(',') },
    ]);
  });
  return cmd;
}

function policyCommand(): Command {
  const cmd = new Command('policy').description("an endpoint's policy map (weir_policy -> policy_<id>)");
  sub(cmd, 'get', "list an endpoint's policy entries, port ranges merged back from their blocks")
    .argument('<endpoint>', "'ns/pod' or an endpoint id")
    .action(async (target: string, o: Opts) => {
      const { endpointId, entries } = await withNodeMaps(
        o.lab,
        (m, ctx) => {
          const id = resolveEndpointId(target, m, ctx);
          return { endpointId: id, entries: m.policy(id).list() };
        },
        { pods: !/^\d+$/.test(target) },
      );
      const rows = policyRows(entries);
      const labels = await identityLabels(
        o.lab,
        rows.map((r) => r.identity),
      );
      const data = rows.map((r) => ({
        ...r,
        ...withLabels(r.identity, labels),
        protocol: protoName(r.protocol),
      }));
      printResult(o.output, { endpointId, entries: data }, rows, [
        { header: 'policy', get: (r) => r.policy },
        { header: 'direction', get: (r) => (r.direction === 'ingress' ? 'Ingress' : 'Egress') },
        { header: 'identity', get: (r) => identityText(r.identity, labels) },
        { header: 'port/proto', get: (r) => portProtoText(r) },
        { header: 'proxy port', get: (r) => (r.proxyPort === 0 ? 'NONE' : r.proxyPort) },
        { header: 'auth type', get: (r) => r.authType },
        { header: 'cookie', get: (r) => r.cookie },
      ]);
    });
  return cmd;
}

function ctCommand(): Command {
  const cmd = new Command('ct').description('weir_ct: connection tracking entries (both families)');
  sub(cmd, 'list', 'list tracked connections, expired ones too (until garbage collection)').action(
    async (o: Opts) => {
      const now = monotonicNowNs();
      const conns = await withNodeMaps(o.lab, (m) => m.ct().list(now));
      const rows = conns
        .map((c) => ({
          protocol: protoName(c.proto),
          family: c.family,
          src: c.src,
          sport: c.sport,
          dst: c.dst,
          dport: c.dport,
          direction: c.direction,
          state: c.state,
          expired: c.expired,
          expiresInSeconds: c.expired ? 0 : Number((c.lifetimeNs - now) / 1_000_000_000n),
          packetsFwd: Number(c.packetsFwd),
          bytesFwd: Number(c.bytesFwd),
          packetsRev: Number(c.packetsRev),
          bytesRev: Number(c.bytesRev),
          srcIdentity: c.srcIdentity,
          cookie: c.cookie,
          revNatIndex: c.revNatIndex,
          proxyPort: c.proxyPort,
          fromProxy: c.fromProxy === true,
        }))
        .sort(
          (a, b) =>
            a.protocol.localeCompare(b.protocol) ||
            a.src.localeCompare(b.src, 'en', { numeric: true }) ||
            a.sport - b.sport ||
            a.dst.localeCompare(b.dst, 'en', { numeric: true }) ||
            a.dport - b.dport,
        );
      printResult(o.output, rows, rows, [
        { header: 'proto', get: (r) => r.protocol },
        { header: 'src -> dst', get: (r) => `${hostPort(r.src, r.sport)} -> ${hostPort(r.dst, r.dport)}` },
        { header: 'direction', get: (r) => r.direction },
        { header: 'state', get: (r) => r.state },
        { header: 'expires in', get: (r) => (r.expired ? 'expired' : durationText(r.expiresInSeconds)) },
        { header: 'fwd packets', get: (r) => r.packetsFwd },
        { header: 'fwd bytes', get: (r) => r.bytesFwd },
        { header: 'rev packets', get: (r) => r.packetsRev },
        { header: 'rev bytes', get: (r) => r.bytesRev },
        { header: 'src identity', get: (r) => r.srcIdentity },
        { header: 'cookie', get: (r) => r.cookie },
        { header: 'rev-nat', get: (r) => r.revNatIndex || '' },
        {
          header: 'proxy',
          get: (r) =>
            [r.proxyPort ? `to ${r.proxyPort}` : '', r.fromProxy ? 'upstream' : '']
              .filter(Boolean)
              .join(', '),
        },
      ]);
    },
  );
  return cmd;
}

function metricsCommand(): Command {
  const cmd = new Command('metrics').description('weir_metrics: forwarded and dropped packets per reason');
  sub(cmd, 'list', 'list packet and byte counters per reason and direction (summed over CPUs)').action(
    async (o: Opts) => {
      const entries = await withNodeMaps(o.lab, (m) => m.metrics().list());
      const rows = entries
        .sort((a, b) => a.reason - b.reason || a.direction.localeCompare(b.direction))
        .map((e) => ({
          reason: e.reason,
          name: e.reason === 0 ? 'FORWARDED' : (reasonNames.get(e.reason) ?? `UNKNOWN_${e.reason}`),
          description: reasonText(e.reason),
          direction: e.direction,
          packets: Number(e.packets),
          bytes: Number(e.bytes),
        }));
      printResult(o.output, rows, rows, [
        { header: 'reason', get: (r) => r.description },
        { header: 'direction', get: (r) => r.direction.toUpperCase() },
        { header: 'packets', get: (r) => r.packets },
        { header: 'bytes', get: (r) => r.bytes },
      ]);
    },
  );
  return cmd;
}

interface MapRow {
  name: string;
  kind: string;
  lifetime: string;
  owner: string;
  /** pinned: the pin exists; missing: it does not (no agent loaded the datapath yet). */
  pin: 'pinned' | 'missing' | 'not pinned';
  id?: number;
  maxEntries?: number;
  /** Elements present (hash-like maps; absent for arrays and ring buffers). */
  entries?: number;
  purpose: string;
}

/** The kernel's view of a pinned map: id, size and (where that means something) its element count. */
function pinnedRow(maps: NodeMaps, name: PinnedMapName | `policy_${number}`, row: MapRow): MapRow {
  if (!existsSync(join(maps.pinDir, name))) return { ...row, pin: 'missing' };
  const m = maps.pin(name);
  // A ring buffer has no keys; socket storage cannot be walked (its keys are sockets' fds).
  const countable = !m.isArray && m.type !== MapType.ringbuf && m.type !== MapType.sk_storage;
  return {
    ...row,
    pin: 'pinned',
    id: m.id,
    maxEntries: m.maxEntries,
    ...(countable ? { entries: m.rawKeys().length } : {}),
  };
}

function mapsCommand(): Command {
  const cmd = new Command('maps').description("every datapath map (the catalogue) and its pin's state");
  sub(cmd, 'list', 'list the maps: kind, pinned or per-load, owner, kernel id, size, elements').action(
    async (o: Opts) => {
      const rows = await withNodeMaps(o.lab, (m) =>
        MAPS.flatMap((d): MapRow[] => {
          const row: MapRow = {
            name: d.name,
            kind: d.kind,
            lifetime: d.lifetime,
            owner:
              d.owner === 'loader' ? 'loader' : `${d.owner}.o${d.reusedBy.map((r) => `,${r}.o`).join('')}`,
            pin: 'not pinned',
            purpose: d.purpose,
          };
          if (d.name === 'policy_<id>')
            return readdirSync(m.pinDir)
              .filter((f) => POLICY_PIN.test(f))
              .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
              .map((f) => pinnedRow(m, f as `policy_${number}`, { ...row, name: f }));
          if (d.lifetime !== 'pinned') return [row];
          return [pinnedRow(m, d.name, row)];
        }),
      );
      printResult(o.output, rows, rows, [
        { header: 'map', get: (r) => r.name },
        { header: 'kind', get: (r) => r.kind },
        { header: 'lifetime', get: (r) => r.lifetime },
        { header: 'owner', get: (r) => r.owner },
        { header: 'pin', get: (r) => r.pin },
        { header: 'id', get: (r) => r.id ?? '' },
        { header: 'max entries', get: (r) => r.maxEntries ?? '' },
        { header: 'entries', get: (r) => r.entries ?? '' },
      ]);
    },
  );
  return cmd;
}

export function bpfCommand(): Command {
  return new Command('bpf')
    .description("the node's datapath maps, read from their pins (works while the agent is down)")
    .addCommand(mapsCommand())
    .addCommand(ipcacheCommand())
    .addCommand(endpointMapCommand())
    .addCommand(policyCommand())
    .addCommand(ctCommand())
    .addCommand(metricsCommand());
}
