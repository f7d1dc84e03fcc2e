// The agent's local API: HTTP/1.1 with JSON bodies over a unix socket that only root may open
// (the socket is created mode 0600 inside a 0700 directory). Routes are a plain table.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { httpStatus, type ErrorCode } from '../shared/error-codes.js';
import { WeirError } from '../shared/errors.js';
import { privateDirSync } from '../shared/private-fs.js';

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  params: Record<string, string>;
  body: unknown;
}

/** A handler returns the JSON body of a 200 answer, or streams itself through `res` (return undefined). */
export type Handler = (req: ApiRequest, res: ServerResponse) => Promise<unknown> | unknown;

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** e.g. '/v1/bpf/policy/:endpoint' */
  pattern: string;
  handler: Handler;
}

const maxBody = 64 << 20;

function matchRoute(routes: Route[], method: string, path: string) {
  const parts = path.split('/').filter(Boolean);
  for (const route of routes) {
    if (route.method !== method) continue;
    const want = route.pattern.split('/').filter(Boolean);
    if (want.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    want.forEach((seg, i) => {
      const got = decodeURIComponent(parts[i] ?? '');
      if (seg.startsWith(':')) params[seg.slice(1)] = got;
      else if (seg !== got) ok = false;
    });
    if (ok) return { route, params };
  }
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBody) throw new WeirError('ERR_API_BODY_TOO_LARGE', `request body over ${maxBody} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new WeirError('ERR_API_BAD_JSON', 'request body is not JSON', { cause: err });
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

/** Serialises an error so the client can rethrow it with the same code and location. */
export function errorBody(err: unknown) {
  if (err instanceof WeirError) {
    const problems = (err as WeirError & { problems?: WeirError[] }).problems;
    return {
      error: {
        code: err.code,
        message: err.message,
        location: err.location,
        problems: problems?.map((p) => ({ code: p.code, message: p.message, location: p.location })),
      },
    };
  }
  return {
    error: {
      code: 'ERR_INTERNAL' satisfies ErrorCode,
      message: err instanceof Error ? err.message : String(err),
    },
  };
}

export async function listenApi(socketPath: string, routes: Route[]): Promise<Server> {
  privateDirSync(dirname(socketPath));
  rmSync(socketPath, { force: true });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://weir');
    const found = matchRoute(routes, req.method ?? 'GET', url.pathname);
    if (!found) {
      const code = 'ERR_API_NOT_FOUND' satisfies ErrorCode;
      sendJson(res, httpStatus(code), {
        error: { code, message: `no route ${req.method} ${url.pathname}` },
      });
      return;
    }
    void (async () => {
      try {
        const body = await readBody(req);
        const out = await found.route.handler(
          {
            method: req.method ?? 'GET',
            path: url.pathname,
            query: url.searchParams,
            params: found.params,
            body,
          },
          res,
        );
        if (!res.headersSent) sendJson(res, 200, out ?? {});
      } catch (err) {
        if (!res.headersSent)
          sendJson(res, err instanceof WeirError ? httpStatus(err.code) : 500, errorBody(err));
        else res.destroy(err instanceof Error ? err : undefined);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}
