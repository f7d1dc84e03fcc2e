// `weir observe`: the cluster's flows, filtered like `hubble observe` (src/observe/filters.ts), as
// compact lines (default), a table or JSON (one Flow per line); -f follows until Ctrl-C. Without
// --node (or env WEIR_NODE) every node's agent is asked and their flows merged in time order, as
// Hubble Relay does; a node that cannot answer is named on stderr and the others still shown.
import { Command, Option } from 'commander';
import { agentClient } from '../../agent/client.js';
import { defaultLabName } from '../../lab/lab.js';
import { compileFilter, FILTER_FLAGS, type FilterFlag, type FlowQuery } from '../../observe/filters.js';
import { verdictNames, type Flow } from '../../observe/flow.js';
import { relayFlows } from '../../observe/relay.js';
import { compactLine, flowRow, type FlowRow } from '../../observe/format.js';
import type { ObserverStatus } from '../../observe/stream.js';
import { WeirError } from '../../shared/errors.js';
import { formatTable, printResult, type Column } from '../output.js';

type ObserveOutput = 'compact' | 'table' | 'json';

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const collect = (v: string, prev: string[] = []) => [...prev, v];

const FLAG_HELP: Record<FilterFlag, string> = {
  pod: 'flows from or to this pod ([namespace/]name prefix)',
  'from-pod': 'flows from this pod',
  'to-pod': 'flows to this pod',
  namespace: "flows from or to this namespace (with --pod: the pods' namespace)",
  'from-namespace': 'flows from this namespace',
  'to-namespace': 'flows to this namespace',
  label: 'flows from or to endpoints matching a selector (k=v,k2)',
  'from-label': 'flows from endpoints matching a selector',
  'to-label': 'flows to endpoints matching a selector',
  identity: 'flows from or to this identity (number or reserved name)',
  'from-identity': 'flows from this identity',
  'to-identity': 'flows to this identity',
  ip: 'flows from or to this IP or CIDR',
  'from-ip': 'flows from this IP or CIDR',
  'to-ip': 'flows to this IP or CIDR',
  port: 'flows from or to this L4 port',
  'from-port': 'flows from this L4 port',
  'to-port': 'flows to this L4 port',
  protocol: 'tcp, udp, sctp, icmp, icmpv4, icmpv6, or http (L7 flows)',
  verdict: verdictNames.join(', '),
  type: 'drop, policy-verdict, trace[:open|close], l7',
  'traffic-direction': 'ingress or egress',
  'http-status': 'L7 responses with this status code (403) or prefix (4+, 50+)',
  'http-method': 'L7 flows of this HTTP method (GET, POST, ...)',
  'http-path': "L7 flows whose URL path matches this regex (RE2, unanchored, e.g. '^/api/')",
  'http-url': 'L7 flows whose whole URL matches this regex',
  'http-header': 'L7 flows carrying this header, name:value',
  'dns-query': 'DNS flows whose query name matches this RE2 regular expression (e.g. "example\\.com")',
};
const SHORT: Partial<Record<FilterFlag, string>> = { namespace: '-n', label: '-l', type: '-t' };

const columns: Column<FlowRow>[] = [
  { header: 'time', get: (r) => r.time },
  { header: 'source', get: (r) => r.source },
  { header: 'destination', get: (r) => r.destination },
  { header: 'type', get: (r) => r.type },
  { header: 'verdict', get: (r) => r.verdict },
  { header: 'summary', get: (r) => r.summary },
  { header: 'policy', get: (r) => r.policy },
];

function parseObserveOutput(v: string): ObserveOutput {
  if (v === 'compact' || v === 'table' || v === 'json') return v;
  throw new WeirError('ERR_CLI_OUTPUT', `unknown output format '${v}' (one of compact, table, json)`);
}

function lastOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new WeirError('ERR_CLI_OPTION', `--last must be a non-negative integer, not '${v}'`);
  return n;
}

export function observeCommand(): Command {
  const cmd = new Command('observe').description(
    "the node's flows (drops, policy verdicts, connection traces, HTTP requests and responses), like hubble observe",
  );
  for (const flag of FILTER_FLAGS) {
    const short = SHORT[flag];
    cmd.addOption(
      new Option(`${short ? `${short}, ` : ''}--${flag} <value>`, FLAG_HELP[flag]).argParser(collect),
    );
  }
  cmd
    .option('--since <time>', 'flows since this time (RFC 3339) or duration ago (5m, 1h30m)')
    .option('--until <time>', 'flows until this time or duration ago')
    .addOption(
      new Option('--last <n>', 'the newest N stored flows (default 20 unless --follow or --since)').argParser(
        lastOption,
      ),
    )
    .option('-f, --follow', 'keep printing new flows until Ctrl-C')
    .addOption(
      new Option('-o, --output <format>', 'compact, table or json')
        .default('compact')
        .argParser(parseObserveOutput),
    )
    .addOption(new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName()))
    .option('--node <name>', "only this node's flows (default: every node's, merged in time order)")
    .action(async (o: Record<string, unknown>) => {
      const output = o.output as ObserveOutput;
      if (output === 'table' && o.follow)
        throw new WeirError('ERR_CLI_OPTION', '-o table cannot be used with --follow');
      const q: FlowQuery = { filters: {} };
      for (const flag of FILTER_FLAGS) {
        const v = o[camel(flag)] as string[] | undefined;
        if (v) q.filters[flag] = v;
      }
      if (o.since) q.since = o.since as string;
      if (o.until) q.until = o.until as string;
      if (o.last !== undefined) q.last = o.last as number;
      if (o.follow) q.follow = true;
      compileFilter(q); // bad values fail here, naming the flag
      const abort = new AbortController();
      const onSigint = () => abort.abort();
      process.once('SIGINT', onSigint);
      // `weir observe | head`: stop reading when the reader goes away.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') abort.abort();
        else throw err;
      });
      const rows: FlowRow[] = [];
      const print = (flow: Flow) => {
        if (output === 'json') process.stdout.write(JSON.stringify(flow) + '\n');
        else if (output === 'table') rows.push(flowRow(flow));
        else process.stdout.write(compactLine(flow) + '\n');
      };
      const only = (o.node as string | undefined) || process.env.WEIR_NODE || undefined;
      try {
        await relayFlows({
          lab: o.lab as string,
          ...(only ? { node: only } : {}),
          query: q,
          signal: abort.signal,
          onFlow: print,
          onLost: (lost, node) =>
            process.stderr.write(
              `EVENTS LOST: ${lost.source} ${lost.num_events_lost}${node ? ` (${node})` : ''}\n`,
            ),
          onNodeError: (node, err) =>
            process.stderr.write(`warning: node ${node} unavailable: ${err.message}\n`),
        });
      } finally {
        process.off('SIGINT', onSigint);
      }
      if (output === 'table')
        process.stdout.write(rows.length ? formatTable(rows, columns) : 'No flows found.\n');
    });

  cmd
    .command('status')
    .description('flows seen, ring buffer fill, followers and lost events by source')
    .addOption(new Option('-o, --output <format>', 'table or json').default('table'))
    .addOption(new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName()))
    .action(async (o: { lab: string; output: string }) => {
      const s = await agentClient(o.lab).call<ObserverStatus>('GET', '/v1/flows/status');
      const rows = [
        { k: 'Current/Max Flows', v: `${s.currentFlows}/${s.maxFlows}` },
        { k: 'Flows seen', v: String(s.seenFlows) },
        { k: 'Followers', v: `${s.followers} (queue ${s.queueSize})` },
        ...Object.entries(s.lost).map(([k, v]) => ({ k: `Lost ${k}`, v: String(v) })),
      ];
      printResult(o.output === 'json' ? 'json' : 'table', s, rows, [
        { header: 'field', get: (r) => r.k },
        { header: 'value', get: (r) => r.v },
      ]);
    });
  return cmd;
}
