// `weir ui`'s HTTP server, in the root namespace on loopback: the page's static files, and the
// lab agents' data (behind root-only unix sockets) for the browser. Flows are the cluster's, relayed
// as `weir observe` relays them (src/observe/relay.ts: every node's, merged in time order, each
// naming its node); `node=NAME` narrows them to one node, as `weir observe --node`:
//   GET /api/flows?<filters>   the flows as NDJSON, {"flow":…} per line (curl-friendly)
//   GET /api/events?<filters>  the same flows pushed to the page as Server-Sent Events, plus every
//                              node's endpoints (each with its node) whenever they change
//   GET /api/endpoints         every node's endpoints (JSON, each with its node in a cluster)
//   GET /api/nodes             the lab's nodes (GET /v1/nodes)
//   GET /api/info              which lab this is
//   GET /metrics               the agent's Prometheus metrics (text)
//   POST /api/policy-diff      {manifests: YAML/JSON text, mode: apply|replace|delete}: the agent's
//                              `policy diff` of them (nothing applied), for the map's pending edges
// Server-Sent Events rather than WebSocket: the push is one-way (the page changes filters by
// reopening the stream, which re-asks the agent with the new filters), EventSource reconnects by
// itself, and it needs no dependency.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AgentClient } from '../agent/client.js';
import { toDeleteRef, toDesired } from '../cluster/objects.js';
import { parseManifests } from '../k8s/index.js';
import { parseFlowQuery, type FlowQuery } from '../observe/filters.js';
import { askEveryNode, nodeClient, relayFlows } from '../observe/relay.js';
import { WeirError } from '../shared/errors.js';
import { repoRoot } from '../shared/paths.js';
import type { ListenAddress } from './listen.js';

export interface UiOptions {
  lab: string;
  listen: ListenAddress;
  /** How often the page's endpoint list is refreshed from the agent (ms). */
  endpointsEveryMs?: number;
}

export interface UiServer {
  url: string;
  close(): Promise<void>;
}

const staticDir = join(repoRoot, 'src', 'ui', 'static');
const viewDir = join(repoRoot, 'dist', 'src', 'ui', 'view');
/** Flows the page asks the agent to replay when it (re)connects, at most. */
const maxLast = 4095;
const defaultLast = 200;
/** Bytes queued for a slow page before its flows are dropped (and counted as lost). */
const maxBacklog = 4 << 20;

const securityHeaders = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
};

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { ...securityHeaders, 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function sendError(res: ServerResponse, status: number, err: unknown): void {
  const e =
    err instanceof WeirError
      ? err
      : new WeirError('ERR_UI_INTERNAL', err instanceof Error ? err.message : String(err));
  send(res, status, 'application/json', JSON.stringify({ error: { code: e.code, message: e.message } }));
}

/**
 * The flow query for the page's filters (`weir observe`'s, checked here so a bad one is answered
 * with its ERR_OBSERVE_FILTER before any agent is asked; the window is the UI's) and the node it is
 * narrowed to (`node`, as `weir observe --node`; an unknown node: ERR_LAB_NODE_NOT_FOUND).
 */
export function uiFlowQuery(
  lab: string,
  search: URLSearchParams,
  follow: boolean,
): { query: FlowQuery; node?: string } {
  const params = new URLSearchParams(search);
  const node = params.get('node') || undefined;
  params.delete('node');
  params.delete('follow');
  const q = parseFlowQuery(params);
  const last = q.last ?? defaultLast;
  if (last > maxLast)
    throw new WeirError('ERR_UI_QUERY', `last must be within 0..${maxLast}, not ${last}`, {
      location: { field: 'last' },
    });
  if (node) nodeClient(lab, node); // names the lab's nodes when it has no such node
  return { query: { ...q, last, ...(follow ? { follow } : {}) }, ...(node ? { node } : {}) };
}

/** Every node's endpoints, each with its node (a lab of one node: as its agent lists them). */
async function clusterEndpoints(lab: string): Promise<{ items: unknown[]; problems: string[] }> {
  const { answers, failed } = await askEveryNode<{ items: Record<string, unknown>[] }>(lab, '/v1/endpoints');
  const items = answers.flatMap((a) =>
    (a.body.items ?? []).map((ep) => (a.node ? { ...ep, node: a.node } : ep)),
  );
  return { items, problems: failed.map((f) => `node ${f.node} unavailable: ${f.err.message}`) };
}

async function serveFile(res: ServerResponse, file: string, type: string): Promise<void> {
  try {
    send(res, 200, type, await readFile(file));
  } catch {
    sendError(res, 404, new WeirError('ERR_UI_NOT_FOUND', `${file} is missing (run make)`));
  }
}

function staticRoute(path: string): { file: string; type: string } | undefined {
  if (path === '/' || path === '/index.html')
    return { file: join(staticDir, 'index.html'), type: 'text/html; charset=utf-8' };
  if (path === '/style.css') return { file: join(staticDir, 'style.css'), type: 'text/css; charset=utf-8' };
  if (path === '/app.js') return { file: join(staticDir, 'app.js'), type: 'text/javascript; charset=utf-8' };
  // The page's pure modules, compiled by tsc from src/ui/view (only plain names: no traversal).
  const m = /^\/view\/([a-z][a-z-]*)\.js$/.exec(path);
  if (m?.[1] && !m[1].endsWith('-test'))
    return { file: join(viewDir, `${m[1]}.js`), type: 'text/javascript; charset=utf-8' };
  return undefined;
}

/** Streams the cluster's flows as Server-Sent Events, with endpoint snapshots when they change. */
function serveEvents(req: IncomingMessage, res: ServerResponse, url: URL, o: UiOptions): void {
  let flows: ReturnType<typeof uiFlowQuery>;
  try {
    flows = uiFlowQuery(o.lab, url.searchParams, true);
  } catch (err) {
    return sendError(res, 400, err);
  }
  res.writeHead(200, {
    ...securityHeaders,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
  });
  res.write('retry: 2000\n\n');
  let done = false;
  let behind = 0;
  const event = (name: string, data: unknown) => {
    if (done) return;
    res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const problem = (err: unknown) =>
    event('problem', { code: (err as WeirError).code ?? 'ERR_UI_AGENT', message: (err as Error).message });
  // A page that reads slower than flows arrive loses flows here once a bounded backlog is queued
  // for it, and is told so (as soon as it catches up) like any other loss.
  const line = (data: unknown) => {
    if (done) return;
    if (res.writableLength > maxBacklog) {
      if (behind++ === 0)
        res.once('drain', () => {
          event('message', { lost_events: { source: 'UI_SERVER_QUEUE', num_events_lost: behind } });
          behind = 0;
        });
      return;
    }
    res.write(`data: ${JSON.stringify(data)}\n\n`);
  };
  let lastEndpoints = '';
  const pollEndpoints = async () => {
    try {
      const { items, problems } = await clusterEndpoints(o.lab);
      const body = JSON.stringify({ items });
      if (body !== lastEndpoints) {
        lastEndpoints = body;
        event('endpoints', { items });
      }
      for (const p of problems) problem(new WeirError('ERR_UI_AGENT', p));
    } catch (err) {
      problem(err);
    }
  };
  void pollEndpoints();
  const poll = setInterval(() => void pollEndpoints(), o.endpointsEveryMs ?? 2000);
  const keepAlive = setInterval(() => !done && res.write(': keep-alive\n\n'), 15_000);
  const abort = new AbortController();
  const stop = () => {
    done = true;
    clearInterval(poll);
    clearInterval(keepAlive);
    abort.abort();
  };
  req.on('close', stop);
  relayFlows({
    lab: o.lab,
    ...(flows.node ? { node: flows.node } : {}),
    query: flows.query,
    signal: abort.signal,
    onFlow: (flow) => line({ flow }),
    onLost: (lost, node) =>
      line({ lost_events: node ? { ...lost, source: `${lost.source} (${node})` } : lost }),
    onNodeError: (node, err) =>
      problem(new WeirError('ERR_UI_AGENT', `node ${node} unavailable: ${err.message}`)),
  }).then(
    () => {
      if (done) return;
      problem(new WeirError('ERR_UI_STREAM_ENDED', 'the agent ended the flow stream'));
      stop();
      res.end();
    },
    (err: unknown) => {
      if (done) return;
      problem(err);
      stop();
      res.end();
    },
  );
}

/** The cluster's flows as NDJSON ({"flow":…} or {"lost_events":…} per line). */
function serveFlows(req: IncomingMessage, res: ServerResponse, url: URL, o: UiOptions): void {
  let flows: ReturnType<typeof uiFlowQuery>;
  try {
    flows = uiFlowQuery(o.lab, url.searchParams, url.searchParams.get('follow') === '1');
  } catch (err) {
    return sendError(res, 400, err);
  }
  const abort = new AbortController();
  req.on('close', () => abort.abort());
  const head = () =>
    res.headersSent ||
    res.writeHead(200, {
      ...securityHeaders,
      'content-type': 'application/x-ndjson',
      'cache-control': 'no-store',
    });
  const write = (data: unknown) => {
    head();
    res.write(JSON.stringify(data) + '\n');
  };
  relayFlows({
    lab: o.lab,
    ...(flows.node ? { node: flows.node } : {}),
    query: flows.query,
    signal: abort.signal,
    onFlow: (flow) => write({ flow }),
    onLost: (lost, node) =>
      write({ lost_events: node ? { ...lost, source: `${lost.source} (${node})` } : lost }),
  }).then(
    () => {
      head();
      res.end();
    },
    (err: unknown) => {
      if (!res.headersSent)
        sendError(res, (err as WeirError).code === 'ERR_AGENT_UNREACHABLE' ? 502 : 400, err);
      else res.end();
    },
  );
}

/** Largest manifest text the page may send for a diff. */
const maxDiffBody = 4 << 20;

/**
 * The pending diff of manifests the page sends: parsed here (the CLI's loader: file "pending
 * change"), then the agent's POST /v1/policy/diff, which validates them as apply does and applies
 * nothing. Only JSON bodies (a cross-site form cannot send one without the page's consent).
 */
function servePolicyDiff(req: IncomingMessage, res: ServerResponse, client: AgentClient): void {
  if (!(req.headers['content-type'] ?? '').startsWith('application/json'))
    return sendError(res, 415, new WeirError('ERR_UI_QUERY', 'the body must be application/json'));
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > maxDiffBody) {
      sendError(res, 413, new WeirError('ERR_UI_QUERY', `the manifests exceed ${maxDiffBody} bytes`));
      req.destroy();
    } else chunks.push(c);
  });
  req.on('end', () => {
    if (res.headersSent) return;
    void (async () => {
      try {
        let body: { manifests?: unknown; mode?: unknown };
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch {
          throw new WeirError('ERR_UI_QUERY', 'the body is not JSON');
        }
        if (typeof body.manifests !== 'string')
          throw new WeirError('ERR_UI_QUERY', 'manifests must be YAML or JSON text', {
            location: { field: 'manifests' },
          });
        const mode = body.mode ?? 'apply';
        const manifests = parseManifests(body.manifests, 'pending change');
        const objects = manifests.map(mode === 'delete' ? toDeleteRef : toDesired);
        const diff = await client.call('POST', '/v1/policy/diff', { objects, mode });
        send(res, 200, 'application/json', JSON.stringify(diff));
      } catch (err) {
        sendError(res, (err as WeirError).code === 'ERR_AGENT_UNREACHABLE' ? 502 : 400, err);
      }
    })();
  });
}

export async function startUi(o: UiOptions): Promise<UiServer> {
  // The policy diff and the metrics: the lab's first node (any node's API serves the cluster's
  // desired state).
  const client: AgentClient = nodeClient(o.lab, undefined, 10_000);
  let allowedHosts = new Set<string>();
  const server: Server = createServer((req, res) => {
    // Browsers reach loopback from any web page (DNS rebinding); only our own host names are served.
    if (!allowedHosts.has(req.headers.host ?? ''))
      return sendError(
        res,
        421,
        new WeirError('ERR_UI_HOST', `unexpected Host header '${req.headers.host ?? ''}'`),
      );
    const url = new URL(req.url ?? '/', 'http://ui.invalid');
    if (req.method === 'POST' && url.pathname === '/api/policy-diff')
      return servePolicyDiff(req, res, client);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendError(res, 405, new WeirError('ERR_UI_METHOD', `${req.method} is not served`));
    const route = staticRoute(url.pathname);
    if (route) return void serveFile(res, route.file, route.type);
    if (url.pathname === '/api/events') return serveEvents(req, res, url, o);
    if (url.pathname === '/api/flows') return serveFlows(req, res, url, o);
    if (url.pathname === '/favicon.ico') return void res.writeHead(204, securityHeaders).end();
    if (url.pathname === '/api/info')
      return send(res, 200, 'application/json', JSON.stringify({ lab: o.lab }));
    if (url.pathname === '/api/endpoints')
      return void clusterEndpoints(o.lab).then(
        ({ items }) => send(res, 200, 'application/json', JSON.stringify({ items })),
        (err: unknown) => sendError(res, 502, err),
      );
    if (url.pathname === '/api/nodes')
      return void client.text('/v1/nodes').then(
        (body) => send(res, 200, 'application/json', body),
        (err: unknown) => sendError(res, 502, err),
      );
    if (url.pathname === '/metrics')
      return void client.text('/metrics').then(
        (body) => send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', body),
        (err: unknown) => sendError(res, 502, err),
      );
    sendError(res, 404, new WeirError('ERR_UI_NOT_FOUND', `nothing at ${url.pathname}`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new WeirError('ERR_UI_LISTEN', `cannot listen on ${o.listen.host}:${o.listen.port}: ${err.message}`, {
          cause: err,
          location: { field: '--listen' },
        }),
      ),
    );
    server.listen(o.listen.port, o.listen.host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const hostPart = o.listen.host.includes(':') ? `[${o.listen.host}]` : o.listen.host;
  allowedHosts = new Set([`${hostPart}:${port}`, `localhost:${port}`]);
  return {
    url: `http://${hostPart}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
