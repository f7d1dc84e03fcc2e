// `weir proxy`: the node proxy that enforces L7 rules. `status` asks the agent (which runs it);
// `run` is the process itself, started by the agent in the node's network namespace.
import { Command, Option } from 'commander';
import type { ProxyManagerStatus } from '../../agent/proxy-manager.js';
import { agentClient } from '../../agent/client.js';
import { runProxy } from '../../proxy/main.js';
import { WeirError } from '../../shared/errors.js';
import { defaultLabName } from '../../lab/lab.js';
import { printResult, type OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';

const both = (v: { ingress: number; egress: number } | undefined) =>
  v ? `${v.ingress} ingress, ${v.egress} egress` : '-';

export function statusRows(s: ProxyManagerStatus): { k: string; v: string }[] {
  const p = s.proxy;
  return [
    {
      k: 'state',
      v: s.running
        ? 'running'
        : s.wanted
          ? 'down (redirected connections fail closed until it is back)'
          : 'not started (no policy needs L7)',
    },
    { k: 'pid', v: s.pid !== undefined ? String(s.pid) : '-' },
    {
      k: 'snapshot',
      v: `version ${s.ackedVersion ?? '-'} acknowledged (sent ${s.desiredVersion}), ${s.endpoints} endpoint(s) with L7 ports`,
    },
    {
      k: 'listeners',
      v: p?.listeners.ingress
        ? `http ingress :${p.listeners.ingress}, http egress :${p.listeners.egress ?? '-'} (${p.handler})`
        : `none yet (ports ${s.ports.ingress}, ${s.ports.egress})`,
    },
    {
      k: 'threads',
      v: p
        ? p.threads
          ? `${p.threads.redirects.length} (connections accepted by each: ${p.threads.redirects.join(', ')})`
          : '1'
        : '-',
    },
    { k: 'connections', v: p ? both(p.connections) : '-' },
    { k: 'redirects', v: p ? both(p.redirects) : '-' },
    { k: 'unresolved (reset)', v: p ? both(p.unresolved) : '-' },
    { k: 'upstream connect errors', v: p ? both(p.upstreamConnectErrors) : '-' },
    ...(['ingress', 'egress'] as const).map((d) => {
      const r = p?.requests?.[d];
      return {
        k: `HTTP requests ${d}`,
        v: r
          ? `${r.received} judged: ${r.forwarded} forwarded, ${r.denied} denied (403); ${r.parseErrors} refused before judging; ${p?.upstreamRequestErrors?.[d] ?? 0} upstream failures (502/504)`
          : '-',
      };
    }),
    {
      k: 'L7 records',
      v: p ? `${p.records.sent} sent, ${p.records.lost} lost, ${p.records.waiting} waiting` : '-',
    },
    {
      k: 'access log',
      v: p?.accessLog
        ? `${p.accessLog.path} (${p.accessLog.lines} lines, ${p.accessLog.rotations} rotations${p.accessLog.errors ? `, ${p.accessLog.errors} failed writes` : ''})`
        : '-',
    },
    {
      k: 'toFQDNs answers',
      v: p?.fqdn
        ? `${p.fqdn.skipped ?? 0} released at once, ${p.fqdn.waited ?? 0} after the agent (${p.fqdn.batches ?? 0} requests, ${p.fqdn.renewals ?? 0} renewals); ${p.fqdn.known} addresses known held`
        : '-',
    },
    { k: 'restarts', v: String(s.restarts) },
    ...(s.lastError ? [{ k: 'last error', v: s.lastError }] : []),
  ];
}

export function proxyCommand(): Command {
  const cmd = new Command('proxy').description(
    'the node proxy: L7 rules (HTTP) on the connections redirected to it',
  );
  cmd
    .command('status')
    .description('whether the proxy runs, the snapshot version it acknowledged, its listeners and counters')
    .addOption(labOption())
    .option('--node <name>', "the proxy of this node of the lab (env WEIR_NODE; default: the first node's)")
    .addOption(outputOption())
    .action(async (o: { lab: string; node?: string; output: OutputFormat }) => {
      // Each node's agent runs its node's proxy.
      const s = await agentClient(o.lab, undefined, o.node).call<ProxyManagerStatus>(
        'GET',
        '/v1/proxy/status',
      );
      printResult(o.output, s, statusRows(s), [
        { header: 'field', get: (r) => r.k },
        { header: 'value', get: (r) => r.v },
      ]);
    });
  cmd
    .command('run', { hidden: true })
    .description("run a lab node's proxy in the foreground (the agent starts it)")
    .addOption(new Option('--lab <name>', 'lab name').default(defaultLabName()))
    .option('--node <name>', "the lab's node (other than the first) whose proxy this is")
    .requiredOption('--ipcache <pin>', "the node's pinned weir_ipcache (read only)")
    .addOption(
      new Option('--record-queue <n>', 'L7 records kept while the agent does not read them').argParser(
        (v) => {
          const n = Number(v);
          if (!Number.isInteger(n) || n < 1 || n > 1 << 20)
            throw new WeirError(
              'ERR_CLI_OPTION',
              `--record-queue must be an integer within 1..1048576, not '${v}'`,
            );
          return n;
        },
      ),
    )
    .addOption(
      new Option('--workers <n>', 'threads serving HTTP (0: one per CPU)').argParser((v) => {
        const n = Number(v);
        if (!/^\d+$/.test(v) || n > 256)
          throw new WeirError('ERR_CLI_OPTION', `--workers must be an integer within 0..256, not '${v}'`);
        return n;
      }),
    )
    .action(
      async (o: { lab: string; node?: string; ipcache: string; recordQueue?: number; workers?: number }) => {
        await runProxy({
          lab: o.lab,
          ...(o.node ? { node: o.node } : {}),
          ipcachePin: o.ipcache,
          ...(o.recordQueue ? { recordQueue: o.recordQueue } : {}),
          ...(o.workers !== undefined ? { workers: o.workers } : {}),
        });
      },
    );
  return cmd;
}
