// `weir get pods|namespaces|services`: kubectl-like listing of what runs, read through the API.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { NamespaceInfo, PodInfo } from '../../cluster/objects.js';
import { WeirError } from '../../shared/errors.js';
import { labOption, outputOption } from './lab.js';
import { printResult, type Column, type OutputFormat } from '../output.js';
import { getServices } from './service.js';

const labelText = (l: Record<string, string>) =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(',') || '<none>';

export function getCommand(): Command {
  return new Command('get')
    .description('list lab resources: pods (po), namespaces (ns) or services (svc)')
    .argument('<resource>', 'pods|pod|po, namespaces|namespace|ns or services|service|svc')
    .option('-n, --namespace <ns>', 'pods or services of this namespace', 'default')
    .option('-A, --all-namespaces', 'pods or services of every namespace')
    .addOption(labOption())
    .addOption(outputOption())
    .action(
      async (
        resource: string,
        o: { namespace: string; allNamespaces?: boolean; lab: string; output: OutputFormat },
      ) => {
        const client = agentClient(o.lab);
        const pods = async (namespace?: string) =>
          (
            await client.call<{ items: PodInfo[] }>(
              'GET',
              `/v1/pods${namespace === undefined ? '' : `?namespace=${encodeURIComponent(namespace)}`}`,
            )
          ).items;
        if (['namespaces', 'namespace', 'ns'].includes(resource)) {
          const nss = (await client.call<{ items: NamespaceInfo[] }>('GET', '/v1/namespaces')).items;
          const all = await pods();
          printResult(o.output, nss, nss, [
            { header: 'name', get: (n) => n.name },
            { header: 'status', get: () => 'Active' },
            { header: 'pods', get: (n) => all.filter((p) => p.namespace === n.name).length },
            { header: 'labels', get: (n) => labelText(n.labels) },
          ]);
        } else if (['pods', 'pod', 'po'].includes(resource)) {
          const items = await pods(o.allNamespaces ? undefined : o.namespace);
          const cols: Column<PodInfo>[] = [
            ...(o.allNamespaces ? [{ header: 'namespace', get: (p: PodInfo) => p.namespace }] : []),
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
          printResult(o.output, items, items, cols);
        } else if (['services', 'service', 'svc'].includes(resource)) {
          await getServices(o.lab, o.allNamespaces ? undefined : o.namespace, o.output);
        } else {
          throw new WeirError(
            'ERR_CLI_ARGUMENT',
            `unknown resource '${resource}' (pods, namespaces or services)`,
            {
              location: { field: 'resource' },
            },
          );
        }
      },
    );
}

/** kubectl's STATUS column: Running (and ready), Pending, or why not. */
function podPhase(p: PodInfo): string {
  if (p.phase === 'Running') return p.ready ? 'Running' : 'NotReady';
  return p.phase;
}
