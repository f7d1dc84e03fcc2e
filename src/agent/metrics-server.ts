// The agent's metrics over TCP (Cilium's --prometheus-serve-addr): GET /metrics on an address of the
// node's network namespace, for a Prometheus that scrapes every node. The API's unix socket serves
// the same text.
import { createServer, type Server } from 'node:http';
import { WeirError } from '../shared/errors.js';

export async function listenMetrics(
  addr: { host: string; port: number },
  scrape: () => Promise<{ contentType: string; text: string }>,
): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics\n');
      return;
    }
    scrape().then(
      ({ contentType, text }) => res.writeHead(200, { 'content-type': contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new WeirError(
          'ERR_AGENT_METRICS_LISTEN',
          `cannot serve metrics on ${addr.host || '*'}:${addr.port}: ${err.code ?? err.message}`,
          { location: { field: '--prometheus-serve-addr' } },
        ),
      ),
    );
    server.listen(addr.port, addr.host || undefined, () => resolve());
  });
  return server;
}
