// The lab workload's HTTP pieces shared by the per-process workload (main.ts) and the pod host
// (host.ts): the request line an L7 probe sends, the answer read by its framing (a proxy answering
// 403 keeps the connection open, so the end of the connection cannot be waited for), and what the
// lab's HTTP server echoes of the request it received (what L7 conformance calls `upstreamSaw`).
import {
  REQUEST_ECHO_HEADER,
  type HttpProbeRequest,
  type ProbeResult,
  type RequestEcho,
} from './protocol.js';

export type HttpAnswer = Omit<ProbeResult, 'ms' | 'connected'>;

/** The bytes of one HTTP/1.1 request as the probe describes it. */
export function httpRequestBytes(req: HttpProbeRequest): Buffer {
  const fields = [`Host: ${req.host}`, ...req.headers.map(([n, v]) => `${n}: ${v}`)];
  return Buffer.from(
    `${req.method} ${req.path} HTTP/1.1\r\n${fields.map((f) => f + '\r\n').join('')}\r\n`,
    'latin1',
  );
}

/**
 * The answer in `buf` when it is complete (by Content-Length, chunked framing, or the end of the
 * connection when `ended`), else undefined (wait for more).
 */
export function readHttpAnswer(buf: Buffer, ended: boolean): HttpAnswer | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return ended ? { ok: false, error: 'EBADRESPONSE' } : undefined;
  const head = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!status) return { ok: false, error: 'EBADRESPONSE' };
  const field = (name: string) =>
    head
      .slice(1)
      .find((l) => l.toLowerCase().startsWith(name + ':'))
      ?.slice(name.length + 1)
      .trim();
  let body: Buffer = buf.subarray(end + 4);
  const length = field('content-length');
  if (length !== undefined) {
    if (body.length < Number(length)) return ended ? { ok: false, error: 'ETRUNCATED' } : undefined;
    body = body.subarray(0, Number(length));
  } else if (/chunked/i.test(field('transfer-encoding') ?? '')) {
    if (!body.includes('0\r\n\r\n')) return ended ? { ok: false, error: 'ETRUNCATED' } : undefined;
    body = dechunk(body);
  } else if (!ended) return undefined;
  const echoField = field(REQUEST_ECHO_HEADER);
  let echo: RequestEcho | undefined;
  try {
    echo = echoField
      ? (JSON.parse(Buffer.from(echoField, 'base64url').toString()) as RequestEcho)
      : undefined;
  } catch {
    echo = undefined;
  }
  return {
    ok: true,
    status: Number(status[1]),
    body: body.subarray(0, 256).toString(),
    ...(echo ? { echo } : {}),
  };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    const size = eol < 0 ? 0 : parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** The request as the lab's HTTP server received it (its head, up to the blank line). */
export function requestEcho(head: string): RequestEcho {
  const lines = head.slice(0, head.search(/\r?\n\r?\n/)).split(/\r?\n/);
  const [method = '', path = ''] = (lines[0] ?? '').split(' ');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { method, path, host: headers.host ?? '', headers };
}

/** The response header line carrying `requestEcho` of the request head `text`. */
export function requestEchoHeader(text: string): string {
  return `${REQUEST_ECHO_HEADER}: ${Buffer.from(JSON.stringify(requestEcho(text))).toString('base64url')}\r\n`;
}
