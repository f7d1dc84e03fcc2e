// The HTTP/2 (cleartext, prior knowledge) side of the engine. A node:http2 server that never
// listens runs the sessions of the connections it is handed (nghttp2: flow control, stream limits,
// malformed frames answered with GOAWAY or RST_STREAM). Every stream is judged, then answered 403 or
// forwarded on an upstream HTTP/2 session from the pool: headers, body and trailers both ways with
// the streams' own flow control — what gRPC needs (trailers with grpc-status, trailers-only
// answers, streaming in both directions).
import http2, {
  type ClientHttp2Stream,
  type Http2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { applyHeaderOps, judgeHttp, type HttpVerdict } from '../../policy/l7/http-match.js';
import type { ConnCtx, Engine } from './engine.js';
import { recordHeaders } from './headers.js';
import { BAD_REQUEST, DENIED, NOT_IMPLEMENTED, upstreamReply, type LocalReply } from './local-reply.js';
import { finishAccess, protocolErrorAccess, upstreamFlag } from './access.js';
import {
  protocolErrorRecord,
  requestFacts,
  requestRecord,
  responseRecord,
  type RequestFacts,
} from './records.js';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;
const END_STREAM = 0x1;

/** Fields never forwarded on HTTP/2 (connection-specific; RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

/** A flat raw header list as a node:http2 headers object (repeated fields as arrays). */
function toHeaderObject(flat: readonly string[]): OutgoingHttpHeaders {
  const o: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const k = (flat[i] as string).toLowerCase();
    if (CONNECTION_SPECIFIC.has(k)) continue;
    const v = flat[i + 1] as string;
    const prev = o[k];
    if (prev === undefined) o[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else o[k] = [prev, v];
  }
  return o;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function verdictDetail(v: HttpVerdict): string | undefined {
  if (!v.allowed) return v.reason === 'no_rule_matched' ? DENIED.detail : `${DENIED.detail}:${v.reason}`;
  if (v.mismatches.length === 0) return undefined;
  return 'header_mismatch:' + v.mismatches.map((m) => `${m.name}(${m.action})`).join(',');
}

/** A local reply on a stream (the session stays up). */
function reply(stream: ServerHttp2Stream, r: LocalReply, f: RequestFacts): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(NGHTTP2_INTERNAL_ERROR);
    return;
  }
  f.tx += Buffer.byteLength(r.body);
  stream.respond({
    ':status': r.code,
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(r.body),
  });
  stream.end(r.body);
}

export interface Http2Side {
  server: http2.Http2Server;
  /** Runs an HTTP/2 session on `socket` (whose first bytes are the client preface). */
  accept(socket: Socket, ctx: ConnCtx): void;
}

export function createHttp2Server(engine: Engine): Http2Side {
  const { limits, stats } = engine;
  /** The context of the connection being handed over ('session' is emitted synchronously). */
  let pending: ConnCtx | undefined;
  const server = http2.createServer({
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderBytes,
      enablePush: false,
    },
    maxSessionMemory: limits.maxSessionMemoryMb,
    maxHeaderListPairs: limits.maxHeaderCount + 8,
  });

  server.on('session', (session: ServerHttp2Session) => {
    const ctx = pending;
    pending = undefined;
    if (!ctx) {
      session.destroy();
      return;
    }
    ctx.session = session;
    sessionCtx.set(session, ctx);
    session.on('error', (err: Error & { code?: string }) => {
      engine.stats.rejected++;
      recordSessionError(engine, ctx, err);
    });
    // An idle session (no frames) is told to go away; streams in flight finish.
    session.setTimeout(limits.idleTimeoutMs, () => session.close());
  });

  server.on(
    'stream',
    (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]) => {
      const ctx = stream.session ? sessionCtx.get(stream.session as ServerHttp2Session) : undefined;
      stream.on('error', ignore);
      if (!ctx) {
        stream.close(NGHTTP2_INTERNAL_ERROR);
        return;
      }
      stats.requestsTotal++;
      stats.requestsActive++;
      const method = first(headers[':method']) ?? '';
      const scheme = first(headers[':scheme']) ?? 'http';
      const authority = first(headers[':authority']) ?? first(headers.host) ?? '';
      const path = first(headers[':path']) ?? (method === 'CONNECT' ? authority : '');
      const f = requestFacts(ctx.conn, ctx.ends, {
        method,
        scheme,
        target: path,
        authority,
        protocol: 'HTTP/2',
        headers: recordHeaders(raw),
      });
      // One close listener per stream: the gauge, the access-log entry (a reset by the client
      // before the response ended is DC), then the upstream side's cleanup (forward()).
      const s = stream as ServerHttp2Stream & { [kOnClose]?: () => void };
      stream.once('close', () => {
        stats.requestsActive--;
        const reset = stream.rstCode !== undefined && stream.rstCode !== NGHTTP2_NO_ERROR;
        finishAccess(engine, f, reset && f.flags.length === 0 ? { flag: 'DC' } : {});
        s[kOnClose]?.();
      });
      // A Host field naming another authority than :authority is malformed (RFC 9113 §8.3.1): the
      // policy and the upstream must not see two different hosts.
      const hostField = first(headers.host);
      if (hostField !== undefined && headers[':authority'] !== undefined && hostField !== authority) {
        stats.rejected++;
        engine.emit(
          responseRecord(f, 'ERROR', 400, undefined, `${BAD_REQUEST.detail}:authority_host_mismatch`),
        );
        reply(stream, BAD_REQUEST, f);
        return;
      }
      const v = judgeHttp(ctx.conn.policy(), ctx.conn.remoteIdentity, {
        method,
        path,
        host: authority,
        headers: raw,
      });
      engine.emit(
        requestRecord(f, v.allowed ? 'FORWARDED' : 'DENIED', v.origin, verdictDetail(v), v.httpRule),
      );
      if (!v.allowed) {
        stats.denied++;
        engine.emit(responseRecord(f, 'DENIED', DENIED.code, v.origin, DENIED.detail));
        reply(stream, DENIED, f);
        return;
      }
      // CONNECT (and extended CONNECT for WebSocket over HTTP/2) tunnels are not offered.
      if (method === 'CONNECT') {
        stats.rejected++;
        engine.emit(responseRecord(f, 'ERROR', NOT_IMPLEMENTED.code, v.origin, NOT_IMPLEMENTED.detail));
        reply(stream, NOT_IMPLEMENTED, f);
        return;
      }
      stats.forwarded++;
      forward(engine, ctx, s, raw, (flags & END_STREAM) !== 0, f, v);
    },
  );
  return {
    server,
    accept(socket: Socket, ctx: ConnCtx): void {
      pending = ctx;
      server.emit('connection', socket);
      if (pending) {
        pending = undefined;
        socket.destroy();
      }
    },
  };
}

/** The context of each server session (set when the connection is handed over). */
const sessionCtx = new WeakMap<ServerHttp2Session, ConnCtx>();

/** forward()'s part of a client stream's close (called by the stream's one close listener). */
const kOnClose = Symbol('weir.proxy.h2.onClose');

const ignore = (): void => {};

/**
 * Relays the DATA of one stream to another with backpressure (what pipe() does, without its
 * per-stream listeners and unpipe bookkeeping): `count` sees every chunk; `from`'s end ends `to`.
 */
function relay(from: Http2Stream, to: Http2Stream, count: (n: number) => void): void {
  let waiting = false;
  const resume = () => {
    waiting = false;
    from.resume();
  };
  from.on('data', (c: Buffer) => {
    count(c.length);
    if (to.destroyed) return;
    if (!to.write(c) && !waiting) {
      waiting = true;
      from.pause();
      to.once('drain', resume);
    }
  });
  from.once('end', () => {
    if (!to.destroyed && !to.writableEnded) to.end();
  });
}

function forward(
  engine: Engine,
  ctx: ConnCtx,
  stream: ServerHttp2Stream & { [kOnClose]?: () => void },
  raw: string[],
  ended: boolean,
  f: RequestFacts,
  v: HttpVerdict,
): void {
  const { stats, limits } = engine;
  const u = engine.pools.h2(ctx.conn, ctx.key);
  let up: ClientHttp2Stream;
  const headers = toHeaderObject(applyHeaderOps(raw, v.ops));
  f.upstream = true;
  try {
    up = u.session.request(headers, ended ? { endStream: true } : { waitForTrailers: true });
  } catch (err) {
    stats.upstreamErrors++;
    f.flags.push(upstreamFlag(err, false));
    const r = upstreamReply(err);
    engine.emit(responseRecord(f, 'ERROR', r.code, v.origin, r.detail));
    reply(stream, r, f);
    return;
  }
  u.active++;
  let responded = false;
  let finished = false;
  let upTrailers: IncomingHttpHeaders | undefined;
  let clientTrailers: IncomingHttpHeaders | undefined;

  const timer = setTimeout(() => {
    if (responded || finished) return;
    fail(Object.assign(new Error('upstream response headers timed out'), { code: 'WEIR_UPSTREAM_TIMEOUT' }));
  }, limits.upstreamHeadersTimeoutMs);

  /** The upstream failed: a local reply before the response, a reset after. */
  const fail = (err: unknown) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    stats.upstreamErrors++;
    // UF when the error (or its cause) is a connect error, else UC or UT.
    f.flags.push(upstreamFlag(err, true));
    if (!up.closed) up.close(NGHTTP2_CANCEL);
    if (responded || stream.headersSent) {
      if (!stream.closed)
        stream.close(up.rstCode && up.rstCode !== NGHTTP2_NO_ERROR ? up.rstCode : NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const r = upstreamReply(err);
    engine.emit(responseRecord(f, 'ERROR', r.code, v.origin, r.detail));
    reply(stream, r, f);
  };

  up.on('response', (h: IncomingHttpHeaders & { ':status'?: number }, flags: number) => {
    if (finished || stream.destroyed || stream.closed) return;
    responded = true;
    clearTimeout(timer);
    const status = Number(h[':status'] ?? 0);
    const out: OutgoingHttpHeaders = {};
    for (const k of Object.keys(h)) if (!CONNECTION_SPECIFIC.has(k)) out[k] = h[k];
    const endStream = (flags & END_STREAM) !== 0;
    try {
      stream.respond(out, endStream ? { endStream: true } : { waitForTrailers: true });
    } catch {
      fail(new Error('response headers refused'));
      return;
    }
    const recHeaders: { key: string; value: string }[] = [];
    for (const k of ['content-type', 'grpc-status']) {
      const val = first(h[k] as string | string[] | undefined);
      if (val !== undefined) recHeaders.push({ key: k, value: val });
    }
    engine.emit(responseRecord(f, 'FORWARDED', status, v.origin, undefined, recHeaders));
    if (!endStream) {
      up.once('trailers', (t: IncomingHttpHeaders) => {
        upTrailers = t;
      });
      stream.once('wantTrailers', () => {
        const t: OutgoingHttpHeaders = {};
        if (upTrailers) for (const k of Object.keys(upTrailers)) if (k[0] !== ':') t[k] = upTrailers[k];
        stream.sendTrailers(t);
      });
      relay(up, stream, (n) => {
        f.tx += n;
      });
    }
  });
  up.once('end', () => {
    if (!responded) return;
    finished = true;
  });
  up.on('error', (err) => fail(err));
  up.once('close', () => {
    u.active--;
    clearTimeout(timer);
    if (finished) return;
    if (!responded) {
      fail(new Error(`upstream stream closed (code ${up.rstCode})`));
      return;
    }
    // Closed after the response started: complete only if the stream ended cleanly.
    if (up.rstCode !== NGHTTP2_NO_ERROR) fail(new Error(`upstream reset (code ${up.rstCode})`));
    else finished = true;
  });

  // Request body and trailers, with the streams' flow control.
  if (!ended) {
    stream.once('trailers', (t: IncomingHttpHeaders) => {
      clientTrailers = t;
    });
    up.once('wantTrailers', () => {
      const t: OutgoingHttpHeaders = {};
      if (clientTrailers)
        for (const k of Object.keys(clientTrailers)) if (k[0] !== ':') t[k] = clientTrailers[k];
      up.sendTrailers(t);
    });
    relay(stream, up, (n) => {
      f.rx += n;
    });
  }
  // The client went away (or reset the stream): cancel the upstream stream.
  stream[kOnClose] = () => {
    if (finished && up.closed) return;
    if (!finished) {
      finished = true;
      clearTimeout(timer);
      stats.cancelled++;
    }
    if (!up.closed) up.close(NGHTTP2_CANCEL);
  };
}

/** A session-level failure (bad preface, malformed frames): recorded, the session is gone. */
export function recordSessionError(engine: Engine, ctx: ConnCtx, err: Error & { code?: string }): void {
  const detail = `downstream_protocol_error:${err.code ?? 'unknown'}`;
  engine.emit(protocolErrorRecord(ctx.conn, ctx.ends, 'HTTP/2', 400, detail));
  protocolErrorAccess(engine, ctx, 'HTTP/2', 400, detail);
}
