// Probes: a real connection made from inside a lab netns (by that netns' workload) to an address.
import { WeirError } from '../shared/errors.js';
import { placeOf, podRef } from './exec.js';
import { Lab } from './lab.js';
import { request } from './workload/client.js';
import type { DnsProbeQuery, HttpProbeRequest, ProbeResult, ProbeTarget } from './workload/protocol.js';

export type {
  DnsProbeQuery,
  HttpProbeRequest,
  ProbeResult,
  ProbeTarget,
  RequestEcho,
} from './workload/protocol.js';

export interface ProbeOptions {
  /** TCP only: send GET / and return the body in `result.body`. */
  http?: boolean;
  /**
   * TCP only: send this request and return the answer (`status`, `body`, the lab server's `echo`
   * of what it received); `connected` tells a connection that failed after its handshake.
   */
  request?: HttpProbeRequest;
  /**
   * Send this DNS query (UDP or TCP, as `to.protocol`) instead of a bare probe: `ok` once its
   * answer comes, with `rcode` and the A/AAAA `answers`; no answer within `timeoutMs` = ETIMEDOUT.
   */
  dns?: DnsProbeQuery;
}

/**
 * Connects from `from` ('x/a', 'node' or 'ext:<name>') to `to`. TCP succeeds when the handshake
 * completes; UDP when the echo of a datagram comes back within `timeoutMs`.
 */
export async function probe(
  lab: string | Lab,
  from: string,
  to: ProbeTarget,
  timeoutMs = 1000,
  opts: ProbeOptions = {},
): Promise<ProbeResult> {
  const l = typeof lab === 'string' ? await Lab.open(lab) : lab;
  let socket: string;
  try {
    socket = (await placeOf(await l.requireConfig(), from)).socket;
  } catch (err) {
    if (err instanceof WeirError && err.code === 'ERR_LAB_POD_NOT_FOUND')
      throw new WeirError('ERR_LAB_PROBE_SOURCE', `no workload '${from}' in lab ${l.name}`, { cause: err });
    throw err;
  }
  const reply = await request(
    socket,
    opts.dns
      ? { op: 'dns', ...to, timeoutMs, query: opts.dns }
      : {
          op: 'probe',
          ...to,
          timeoutMs,
          ...(opts.http ? { http: true } : {}),
          ...(opts.request ? { request: opts.request } : {}),
        },
    timeoutMs + (opts.request ? (opts.request.responseTimeoutMs ?? 5000) : 0) + 5000,
  );
  if ('ms' in reply) {
    const { id: _id, ...result } = reply;
    return result;
  }
  throw new WeirError(
    'ERR_LAB_PROBE_FAILED',
    `probe from ${from}: ${'error' in reply ? reply.error : 'bad reply'}`,
  );
}

/** Resolves 'y/b', 'node', 'ext:<name>' or an IP literal to an address of the lab. */
export async function resolveTarget(lab: Lab, to: string): Promise<string> {
  if (/^[\d.]+$/.test(to) || (to.includes(':') && !to.startsWith('ext:') && !to.startsWith('node:')))
    return to;
  if (to === 'node') return (await lab.node()).ip;
  if (to.startsWith('node:')) return (await lab.node(to.slice(5))).ip;
  if (to.startsWith('ext:')) {
    const e = (await lab.externals()).find((x) => x.name === to.slice(4));
    if (!e)
      throw new WeirError('ERR_LAB_EXTERNAL_NOT_FOUND', `no external ${to.slice(4)} in lab ${lab.name}`);
    return e.ip;
  }
  const ref = podRef(to);
  return (await lab.pod(`${ref.namespace}/${ref.name}`)).ip;
}
