// The Gateway's and mesh routes' upstream connections with --encryption mtls (docs/mtls.md, "The
// node's own upstreams"): the gateway connects to a backend from the node's own address, so a
// backend pod of another node would be reached in plain VXLAN. When the datapath would tunnel that
// destination (TunnelRoute.needs: encryption on, a cluster pod behind another node), the connection
// is the main thread's tunnel stream instead (TunnelRoute.connectNode: presented with the node
// SVID); otherwise a plain socket, as before. A map that cannot be read fails the connection
// (fail closed): nothing goes out plain instead.
import http from 'node:http';
import { Socket, type NetConnectOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TunnelRoute } from '../tunnel-route.js';

/** What the gateway needs of the tunnel: the datapath's test and the node's tunnel stream. */
export type UpstreamTunnel = Pick<TunnelRoute, 'needs' | 'connectNode'>;

/** A socket that fails with `err` once its caller listens (http and http2 see a connect error). */
function failed(err: Error): Socket {
  const s = new Socket();
  process.nextTick(() => s.destroy(err));
  return s;
}

/**
 * The connection to `ip:port`: the tunnel's when it must go through it, undefined when a plain
 * socket is right, a failing socket when the maps cannot say.
 */
export function tunnelConnection(
  tunnel: UpstreamTunnel | undefined,
  ip: string,
  port: number,
): Socket | undefined {
  if (!tunnel) return undefined;
  try {
    if (!tunnel.needs(ip)) return undefined;
  } catch (err) {
    return failed(new Error(`cannot tell whether ${ip} needs the mTLS tunnel: ${(err as Error).message}`));
  }
  return tunnel.connectNode({ ip, port });
}

/** An http.Agent whose connections to pods of other nodes go through the tunnel (encryption on). */
export function upstreamAgent(opts: http.AgentOptions, tunnel: UpstreamTunnel | undefined): http.Agent {
  const agent = new http.Agent(opts);
  if (!tunnel) return agent;
  const plain = agent.createConnection.bind(agent);
  agent.createConnection = ((o: NetConnectOpts & { host?: string; port?: number }, cb: unknown) => {
    const t = tunnelConnection(tunnel, String(o.host ?? ''), Number(o.port));
    if (t) return t;
    return (plain as (o: unknown, cb: unknown) => Duplex)(o, cb);
  }) as typeof agent.createConnection;
  return agent;
}
