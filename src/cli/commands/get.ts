// `weir get pods|namespaces|services [NAME]`: kubectl-like listing of what runs, read through the
// agent's API (desired state and the pods' statuses). Tables for people; -o json|yaml gives v1
// objects (a `List`, or the object itself for one NAME), as kubectl prints them.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { NamespaceInfo, NodeRecord, PodInfo } from '../../cluster/objects.js';
import { namespaceObject, podObject } from '../../k8s/index.js';
import { WeirError } from '../../shared/errors.js';
import { labOption, outputOption } from './lab.js';
import { notFound, pick, printResult, type Column, type OutputFormat } from '../output.js';
import { getServices } from './service.js';
import type { GatewayView } from '../../gateway/stored.js';

const labelText = (l: Record<string, string>) =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '<none>';

const resources = {
  pods: ['pods', 'pod', 'po'],
  namespaces: ['namespaces', 'namespace', 'ns'],
  services: ['services', 'service', 'svc'],
  gatewayclasses: ['gatewayclasses', 'gatewayclass', 'gc'],
  gateways: ['gateways', 'gateway', 'gtw'],
  httproutes: ['httproutes', 'httproute'],
  grpcroutes: ['grpcroutes', 'grpcroute'],
  referencegrants: ['referencegrants', 'referencegrant', 'refgrant'],
} as const;
const gatewayKindOf: Partial<Record<Resource, string>> = {
  gatewayclasses: 'GatewayClass',
  gateways: 'Gateway',
  httproutes: 'HTTPRoute',
  grpcroutes: 'GRPCRoute',
  referencegrants: 'ReferenceGrant',
};
type Resource = keyof typeof resources;

/** 'po' -> 'pods'; kubectl's TYPE/NAME form gives the name too. */
export function parseResource(arg: string, name?: string): { resource: Resource; name?: string } {
  const [type = '', inline, ...extra] = arg.split('/');
  const resource = (Object.keys(resources) as Resource[]).find((r) =>
    (resources[r] as readonly string[]).includes(type.toLowerCase()),
  );
  if (!resource || extra.length > 0 || inline === '')
    throw new WeirError(
      'ERR_CLI_ARGUMENT',
      `unknown resource '${arg}' (pods, namespaces, services, gatewayclasses, gateways, httproutes, grpcroutes or referencegrants, optionally TYPE/NAME)`,
      { location: { field: 'resource' } },
    );
  if (inline !== undefined && name !== undefined)
    throw new WeirError('ERR_CLI_ARGUMENT', `give the name once: '${arg}' or '${type} ${name}'`, {
      location: { field: 'name' },
    });
  const n = inline ?? name;
  return { resource, ...(n === undefined ? {} : { name: n }) };
}

interface GetOptions {
  namespace: string;
  allNamespaces?: boolean;
  lab: string;
  output: OutputFormat;
}

export function getCommand(): Command {
  return new Command('get')
    .summary('list pods, namespaces or services, kubectl style')
    .description(
      'list lab resources like kubectl get: pods (po), namespaces (ns) or services (svc); ' +
        '-o json|yaml prints v1 objects',
    )
    .argument('<resource>', 'pods|pod|po, namespaces|namespace|ns or services|service|svc (or TYPE/NAME)')
    .argument('[name]', 'only this object (-o json|yaml then prints the object itself, not a List)')
    .option('-n, --namespace <ns>', 'pods or services of this namespace', 'default')
    .option('-A, --all-namespaces', 'pods or services of every namespace')
    .addOption(labOption())
    .addOption(outputOption({ wide: true }))
    .action(async (arg: string, nameArg: string | undefined, o: GetOptions) => {
      const { resource, name } = parseResource(arg, nameArg);
      if (o.allNamespaces && name !== undefined)
        throw new WeirError(
          'ERR_CLI_ARGUMENT',
          'a resource cannot be retrieved by name across all namespaces (give -n NAMESPACE instead of -A)',
          { location: { field: '--all-namespaces' } },
        );
      const client = agentClient(o.lab);
      const gatewayKind = gatewayKindOf[resource];
      if (gatewayKind) {
        const v = await client.call<GatewayView>('GET', '/v1/gateway');
        const ns = gatewayKind === 'GatewayClass' ? undefined : o.allNamespaces ? undefined : o.namespace;
        const items = v.objects.filter(
          (x) => x.kind === gatewayKind && (ns === undefined || x.namespace === ns),
        );
        const { rows, data } = pick(
          items,
          name,
          (x) => x.name,
          (x) => x.object,
          () => notFound(resource, name ?? '', ns),
        );
        printResult(o.output, data, rows, [
          ...(ns === undefined && gatewayKind !== 'GatewayClass'
            ? [{ header: 'namespace', get: (x: (typeof items)[number]) => x.namespace }]
            : []),
          { header: 'name', get: (x) => x.name },
          { header: 'status', get: (x) => gatewayStatusText(x.object) },
        ]);
        return;
      }
      const podsOf = async (ns?: string) =>
        (
          await client.call<{ items: PodInfo[] }>(
            'GET',
            `/v1/pods${ns === undefined ? '' : `?namespace=${encodeURIComponent(ns)}`}`,
          )
        ).items;
      const namespace = o.allNamespaces ? undefined : o.namespace;
      if (resource === 'namespaces') {
        const pods = await podsOf();
        const { rows, data } = pick(
          (await client.call<{ items: NamespaceInfo[] }>('GET', '/v1/namespaces')).items,
          name,
          (n) => n.name,
          (n) => namespaceObject(n),
          () => notFound(resource, name ?? ''),
        );
        printResult(o.output, data, rows, [
          { header: 'name', get: (n: NamespaceInfo) => n.name },
          { header: 'status', get: () => 'Active' },
          { header: 'pods', get: (n) => pods.filter((p) => p.namespace === n.name).length },
          { header: 'labels', get: (n) => labelText(n.labels) },
        ]);
      } else if (resource === 'pods') {
        const nodes = new Map(
          (await client.call<{ items: NodeRecord[] }>('GET', '/v1/nodes')).items.map((n) => [n.name, n]),
        );
        const hostOf = (p: PodInfo) => {
          const n = nodes.get(p.node);
          return n ? { ip: n.ip, ...(n.ip6 ? { ip6: n.ip6 } : {}) } : undefined;
        };
        const { rows, data } = pick(
          await podsOf(namespace),
          name,
          (p) => p.name,
          (p) => podObject(p, hostOf(p)),
          () => notFound(resource, name ?? '', namespace),
        );
        const cols: Column<PodInfo>[] = [
          ...(namespace === undefined ? [{ header: 'namespace', get: (p: PodInfo) => p.namespace }] : []),
          { header: 'name', get: (p) => p.name },
          { header: 'ready', get: (p) => (p.ready ? '1/1' : '0/1') },
          { header: 'status', get: (p) => podPhase(p) },
          { header: 'ip', get: (p) => p.ip },
          { header: 'node', get: (p) => p.node },
          ...(o.output === 'wide'
            ? [
                { header: 'ipv6', get: (p: PodInfo) => p.ip6 ?? '<none>' },
                { header: 'veth', get: (p: PodInfo) => `${p.hostIfname}@${p.hostIfindex}` },
                {
                  header: 'ports',
                  get: (p: PodInfo) => p.ports.map((x) => `${x.containerPort}/${x.protocol}`).join(','),
                },
              ]
            : []),
          { header: 'labels', get: (p) => labelText(p.labels) },
        ];
        printResult(o.output, data, rows, cols);
      } else {
        await getServices(o.lab, namespace, o.output, name);
      }
    });
}

/** A Gateway API object's status in a word: its Programmed/Accepted conditions, or its parents'. */
function gatewayStatusText(o: unknown): string {
  const st = (
    o as {
      status?: {
        conditions?: { type: string; status: string }[];
        parents?: { conditions: { type: string; status: string; reason: string }[] }[];
        addresses?: { value: string }[];
      };
    }
  ).status;
  if (!st) return '';
  if (st.parents)
    return (
      st.parents
        .map(
          (p) =>
            p.conditions
              .filter((c) => c.status !== 'True')
              .map((c) => `${c.type}=${c.status}(${c.reason})`)
              .join(',') || 'Accepted',
        )
        .join(' ') || '<no parent of weir>'
    );
  const prog =
    st.conditions?.find((c) => c.type === 'Programmed') ?? st.conditions?.find((c) => c.type === 'Accepted');
  return `${prog ? `${prog.type}=${prog.status}` : ''}${st.addresses?.[0] ? ` ${st.addresses[0].value}` : ''}`;
}

/** kubectl's STATUS column: Running (and ready), Pending, or why not. */
function podPhase(p: PodInfo): string {
  if (p.phase === 'Running') return p.ready ? 'Running' : 'NotReady';
  return p.phase;
}
