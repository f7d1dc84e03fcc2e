// `weir fqdn cache list|clean`: what the DNS proxy learned for toFQDNs (the agent's FQDN cache),
// like `cilium-dbg fqdn cache list|clean`.
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { FqdnEntry } from '../../agent/fqdn-cache.js';
import { printResult, type Column, type OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';

const columns: Column<FqdnEntry>[] = [
  { header: 'endpoint', get: (e) => e.endpointId },
  { header: 'source', get: () => 'lookup' },
  { header: 'fqdn', get: (e) => `${e.name}.` },
  { header: 'ttl', get: (e) => e.ttl },
  { header: 'expiration time', get: (e) => new Date(e.expiresAt).toISOString() },
  { header: 'ips', get: (e) => e.ip },
];

export function fqdnCommand(): Command {
  const cmd = new Command('fqdn').description('names the DNS proxy learned for toFQDNs policies');
  const cache = cmd.command('cache').description("the agent's FQDN cache");
  cache
    .command('list')
    .alias('ls')
    .description('every learned name and address, per endpoint, with its TTL and expiry')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const r = await agentClient(o.lab).call<{ items: FqdnEntry[] }>('GET', '/v1/fqdn/cache');
      printResult(o.output, r, r.items, columns);
    });
  cache
    .command('clean')
    .description('forget learned names (all, or those matching --match-pattern); toFQDNs selections follow')
    .option('--match-pattern <pattern>', "only names matching this pattern ('*.example.com')")
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat; matchPattern?: string }) => {
      const r = await agentClient(o.lab).call<{ removed: number }>('POST', '/v1/fqdn/clean', {
        ...(o.matchPattern ? { matchPattern: o.matchPattern } : {}),
      });
      printResult(
        o.output,
        r,
        [{ k: 'removed', v: r.removed }],
        [
          { header: 'field', get: (x) => x.k },
          { header: 'value', get: (x) => x.v },
        ],
      );
    });
  return cmd;
}
