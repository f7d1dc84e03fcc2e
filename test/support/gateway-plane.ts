// The gateway data plane on loopback for unit tests: a free port for its listener, the manifests
// compiled as the agent compiles them, the snapshot pushed as the agent pushes it (through its
// JSON form and parse), and a plain HTTP GET against it.
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { compile } from '../../src/gateway/compile.js';
import { worldOf } from '../../src/gateway/world.js';
import { parseManifests } from '../../src/k8s/index.js';
import '../../src/cluster/kinds.js';
import { GatewayServer, parseGatewaySnapshot } from '../../src/proxy/gateway/server.js';

/** A port nobody listens on now: asked of the kernel, then given back. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * A GatewayServer serving `yaml` (Gateway API objects and Services of namespace `ns`; its Gateway
 * `ns/gw` at 127.0.0.1), with `endpoints` per "ns/service:port".
 */
export async function gatewayPlane(
  yaml: string,
  endpoints: Record<string, string[]>,
  file = 'gateway.yaml',
): Promise<GatewayServer> {
  const objects = parseManifests(yaml, file).map((m) => ({
    kind: m.kind,
    name: m.metadata.name,
    ...(m.metadata.namespace ? { namespace: m.metadata.namespace } : {}),
    object: m.raw,
  }));
  const compiled = compile(worldOf(objects, new Map([['ns', {}]]), new Map([['ns/gw', '127.0.0.1']])));
  const gw = new GatewayServer({ log: pino({ level: 'silent' }) });
  const snapshot = { version: 1, ports: compiled.gatewayPorts, mesh: [], endpoints, pods: {} };
  await gw.apply(parseGatewaySnapshot(JSON.parse(JSON.stringify(snapshot))));
  return gw;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET http://127.0.0.1:port/path with Host example.com (and `headers`). */
export function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, headers: { host: 'example.com', ...headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
