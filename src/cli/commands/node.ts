// `weir node list`: the cluster's nodes as their agents registered them, from the API (any node's).
import { Command } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { NodeRecord } from '../../cluster/objects.js';
import { printResult, type OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';

export interface NodeListItem extends NodeRecord {
  status: 'Ready' | 'NotReady';
  reconciledRevision?: number;
  error?: string;
}

/** kubectl's AGE: 45s, 12m, 3h, 2d. */
export function age(since: string, now = Date.now()): string {
  const s = Math.max(0, Math.floor((now - Date.parse(since)) / 1000));
  if (!Number.isFinite(s)) return '<unknown>';
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function nodeCommand(): Command {
  const node = new Command('node').description("the cluster's nodes");
  node
    .command('list')
    .description('every registered node: status, internal (underlay) IP, pod CIDR, age')
    .addOption(labOption())
    .option('--node <name>', "ask this node's agent (default: the first node's)")
    .addOption(outputOption())
    .action(async (o: { lab: string; node?: string; output: OutputFormat }) => {
      const { items } = await agentClient(o.lab, 10_000, o.node).call<{ items: NodeListItem[] }>(
        'GET',
        '/v1/nodes',
      );
      printResult(o.output, { items }, items, [
        { header: 'NAME', get: (n) => n.name },
        { header: 'STATUS', get: (n) => n.status },
        { header: 'INTERNAL-IP', get: (n) => n.underlayIP ?? n.ip },
        { header: 'POD-CIDR', get: (n) => n.podCIDR },
        { header: 'AGE', get: (n) => age(n.startedAt) },
      ]);
    });
  return node;
}
