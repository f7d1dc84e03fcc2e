// `weir endpoint list|get`: the agent's endpoints (pods it manages), like `cilium endpoint list`.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { ChangeResult } from '../../cluster/objects.js';
import { WeirError } from '../../shared/errors.js';
import { printChanges } from './apply.js';
import { printResult, type Column, type OutputFormat } from '../output.js';
import { agentEndpoints, type EndpointStatus } from './inspect-data.js';
import { labOption, outputOption } from './lab.js';

const enforcement = (on: boolean) => (on ? 'Enabled' : 'Disabled');
const ipOf = (e: EndpointStatus, v6: boolean) => e.ips.find((ip) => ip.includes(':') === v6) ?? '';

export const endpointColumns: Column<EndpointStatus>[] = [
  { header: 'endpoint id', get: (e) => e.id },
  { header: 'pod', get: (e) => `${e.namespace}/${e.pod}` },
  { header: 'identity', get: (e) => e.identity },
  { header: 'ingress enforcement', get: (e) => enforcement(e.ingressEnforced) },
  { header: 'egress enforcement', get: (e) => enforcement(e.egressEnforced) },
  { header: 'ipv4', get: (e) => ipOf(e, false) },
  { header: 'ipv6', get: (e) => ipOf(e, true) },
  { header: 'state', get: (e) => e.state },
  { header: 'policy entries', get: (e) => e.policyEntries },
];

/** An endpoint by id or by 'ns/pod'. */
export function findEndpoint(all: EndpointStatus[], target: string, lab: string): EndpointStatus {
  const ep = /^\d+$/.test(target)
    ? all.find((e) => e.id === Number(target))
    : all.find((e) => `${e.namespace}/${e.pod}` === target);
  if (!ep)
    throw new WeirError('ERR_CLI_NOT_FOUND', `the agent of lab ${lab} has no endpoint '${target}'`, {
      location: { object: `endpoint ${target}`, field: 'endpoint' },
    });
  return ep;
}

export function endpointCommand(): Command {
  const cmd = new Command('endpoint').description(
    "the agent's endpoints: pods whose traffic the datapath handles",
  );
  cmd
    .command('list')
    .alias('ls')
    .description('list endpoints with their identity, enforcement, addresses and policy map size')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const eps = await agentEndpoints(o.lab);
      printResult(o.output, eps, eps, endpointColumns);
    });
  cmd
    .command('get')
    .description('one endpoint, with its labels and its error (if its policy could not be applied)')
    .argument('<endpoint>', "'ns/pod' or an endpoint id")
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (target: string, o: { lab: string; output: OutputFormat }) => {
      const ep = findEndpoint(await agentEndpoints(o.lab), target, o.lab);
      const rows = [
        ...endpointColumns.map((c) => ({ k: c.header, v: String(c.get(ep) ?? '') })),
        { k: 'interface', v: `${ep.ifname}@${ep.ifindex}` },
        { k: 'policy audit mode', v: enforcement(ep.policyAuditMode === true) },
        { k: 'labels', v: ep.labels.join(',') || '<none>' },
        { k: 'error', v: ep.error ?? '<none>' },
      ];
      printResult(o.output, ep, rows, [
        { header: 'field', get: (r) => r.k },
        { header: 'value', get: (r) => r.v },
      ]);
    });
  cmd
    .command('config')
    .description(
      "set an endpoint's options, as cilium endpoint config: PolicyAuditMode=Enabled lets what policy " +
        'would deny through, reported as AUDIT flows naming the rule; Disabled enforces at once',
    )
    .argument('<endpoint>', "'ns/pod'")
    .argument('<option=value...>', 'PolicyAuditMode=Enabled|Disabled')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (target: string, options: string[], o: { lab: string; output: OutputFormat }) => {
      const m = /^([^/]+)\/([^/]+)$/.exec(target);
      if (!m)
        throw new WeirError('ERR_CLI_ARGUMENT', `'${target}' is not ns/pod`, {
          location: { field: 'endpoint' },
        });
      const body: Record<string, string> = {};
      for (const opt of options) {
        const eq = opt.indexOf('=');
        if (eq <= 0)
          throw new WeirError(
            'ERR_CLI_ARGUMENT',
            `'${opt}' is not Option=Value (e.g. PolicyAuditMode=Enabled)`,
            {
              location: { field: 'option' },
            },
          );
        body[opt.slice(0, eq)] = opt.slice(eq + 1);
      }
      const answer = await agentClient(o.lab).call<{ results: ChangeResult[] }>(
        'POST',
        `/v1/endpoints/${encodeURIComponent(m[1] as string)}/${encodeURIComponent(m[2] as string)}/config`,
        body,
      );
      printChanges(o.output, answer.results);
    });
  return cmd;
}
