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
import type { H2Upstream } from './upstream.js';
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

/**
 * Receive windows of the proxy's HTTP/2 sessions, both sides (RFC 9113 §6.9): each stream may have
 * STREAM_WINDOW unread bytes in flight, a whole session CONNECTION_WINDOW. The protocol's 64 KiB
 * defaults cap a session at one window per round trip: every stream of a client connection (and
 * every request multiplexed on a pooled upstream session) shares one 64 KiB connection window.
 * Both stay well under limits.maxSessionMemoryMb.
 */
export const STREAM_WINDOW = 256 * 1024;
export const CONNECTION_WINDOW = 2 * 1024 * 1024;
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
  /** Stops the upstream-response-headers sweep. */
  close(): void;
}

/**
 * The state of one client stream, on both of its streams (the client's and, once forwarded, the
 * upstream's) under kState. The streams' listeners are module-level functions that find it there
 * (`this` is the emitting stream): no closures, timers or once() wrappers per request, which made
 * most of the proxy's per-stream cost after node:http2's own.
 */
interface StreamState {
  engine: Engine;
  f: RequestFacts;
  stream: ServerHttp2Stream;
  /** The upstream stream, once forwarded. */
  up: ClientHttp2Stream | undefined;
  u: H2Upstream | undefined;
  v: HttpVerdict | undefined;
  responded: boolean;
  finished: boolean;
  upTrailers: IncomingHttpHeaders | undefined;
  clientTrailers: IncomingHttpHeaders | undefined;
  /** performance.now() by which the upstream's response headers must arrive (0: not waiting). */
  deadline: number;
  /** The client→upstream relay is waiting for the upstream stream's 'drain'. */
  upWaiting: boolean;
  /** The upstream→client relay is waiting for the client stream's 'drain'. */
  downWaiting: boolean;
  /** The streams waiting for their response headers (the sweep's set). */
  pending: Set<StreamState>;
}

type WithState<T> = T & { [kState]?: StreamState };

const kState = Symbol('weir.proxy.h2.state');

function stateOf(s: Http2Stream): StreamState {
  return (s as WithState<Http2Stream>)[kState] as StreamState;
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
      initialWindowSize: STREAM_WINDOW,
    },
    maxSessionMemory: limits.maxSessionMemoryMb,
    maxHeaderListPairs: limits.maxHeaderCount + 8,
  });
  // Forwarded streams waiting for their upstream response headers: one sweep times them out (a
  // timer per stream cost more than the rest of the proxy's bookkeeping for small requests).
  const waiting = new Set<StreamState>();
  const every = Math.max(25, Math.min(1000, Math.floor(limits.upstreamHeadersTimeoutMs / 4)));
  let sweeper: NodeJS.Timeout | undefined;
  const sweep = () => {
    if (waiting.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
      return;
    }
    const now = performance.now();
    for (const st of waiting) {
      if (st.deadline <= now)
        fail(
          st,
          Object.assign(new Error('upstream response headers timed out'), { code: 'WEIR_UPSTREAM_TIMEOUT' }),
        );
    }
  };
  const startWaiting = (st: StreamState) => {
    st.deadline = performance.now() + limits.upstreamHeadersTimeoutMs;
    waiting.add(st);
    sweeper ??= setInterval(sweep, every).unref();
  };

  server.on('session', (session: ServerHttp2Session) => {
    const ctx = pending;
    pending = undefined;
    if (!ctx) {
      session.destroy();
      return;
    }
    ctx.session = session;
    sessionCtx.set(session, ctx);
    session.setLocalWindowSize(CONNECTION_WINDOW);
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
      const st: StreamState = {
        engine,
        f,
        stream,
        up: undefined,
        u: undefined,
        v: undefined,
        responded: false,
        finished: false,
        upTrailers: undefined,
        clientTrailers: undefined,
        deadline: 0,
        upWaiting: false,
        downWaiting: false,
        pending: waiting,
      };
      (stream as WithState<ServerHttp2Stream>)[kState] = st;
      // One close listener per stream: the gauge, the access-log entry (a reset by the client
      // before the response ended is DC), then the upstream side's cleanup.
      stream.on('close', onClientClose);
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
      st.v = v;
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
      if (forward(st, ctx, raw, (flags & END_STREAM) !== 0)) startWaiting(st);
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
    close(): void {
      clearInterval(sweeper);
      sweeper = undefined;
      waiting.clear();
    },
  };
}

/** The context of each server session (set when the connection is handed over). */
const sessionCtx = new WeakMap<ServerHttp2Session, ConnCtx>();

const ignore = (): void => {};

/** Stops waiting for the upstream's response headers. */
function settled(st: StreamState): void {
  if (st.deadline !== 0) {
    st.deadline = 0;
    st.pending.delete(st);
  }
}

/** The client stream closed: the gauge, the access-log entry, and the upstream side's cleanup. */
function onClientClose(this: ServerHttp2Stream): void {
  const st = stateOf(this);
  const { engine, f } = st;
  engine.stats.requestsActive--;
  const reset = this.rstCode !== undefined && this.rstCode !== NGHTTP2_NO_ERROR;
  finishAccess(engine, f, reset && f.flags.length === 0 ? { flag: 'DC' } : {});
  const up = st.up;
  if (!up) return;
  // The client went away (or reset the stream): cancel the upstream stream.
  if (st.finished && up.closed) return;
  if (!st.finished) {
    st.finished = true;
    settled(st);
    engine.stats.cancelled++;
  }
  if (!up.closed) up.close(NGHTTP2_CANCEL);
}

/** The upstream failed: a local reply before the response, a reset after. */
function fail(st: StreamState, err: unknown): void {
  if (st.finished) return;
  st.finished = true;
  settled(st);
  const { engine, f, stream } = st;
  const up = st.up as ClientHttp2Stream;
  engine.stats.upstreamErrors++;
  // UF when the error (or its cause) is a connect error, else UC or UT.
  f.flags.push(upstreamFlag(err, true));
  if (!up.closed) up.close(NGHTTP2_CANCEL);
  if (st.responded || stream.headersSent) {
    if (!stream.closed)
      stream.close(up.rstCode && up.rstCode !== NGHTTP2_NO_ERROR ? up.rstCode : NGHTTP2_INTERNAL_ERROR);
    return;
  }
  const r = upstreamReply(err);
  engine.emit(responseRecord(f, 'ERROR', r.code, st.v?.origin, r.detail));
  reply(stream, r, f);
}

/**
 * Sends `raw` (the request's header list) upstream on a pooled session and wires both streams
 * together; false when the upstream stream could not be opened (answered locally).
 */
function forward(st: StreamState, ctx: ConnCtx, raw: string[], ended: boolean): boolean {
  const { engine, f, stream } = st;
  const v = st.v as HttpVerdict;
  const u = engine.pools.h2(ctx.conn, ctx.key);
  let up: ClientHttp2Stream;
  const headers = toHeaderObject(applyHeaderOps(raw, v.ops));
  f.upstream = true;
  try {
    up = u.session.request(headers, ended ? { endStream: true } : { waitForTrailers: true });
  } catch (err) {
    engine.stats.upstreamErrors++;
    f.flags.push(upstreamFlag(err, false));
    const r = upstreamReply(err);
    engine.emit(responseRecord(f, 'ERROR', r.code, v.origin, r.detail));
    reply(stream, r, f);
    return false;
  }
  u.active++;
  st.up = up;
  st.u = u;
  (up as WithState<ClientHttp2Stream>)[kState] = st;
  up.on('response', onUpResponse);
  up.on('end', onUpEnd);
  up.on('error', onUpError);
  up.on('close', onUpClose);
  // Request body and trailers, with the streams' flow control.
  if (!ended) {
    stream.on('trailers', onClientTrailers);
    up.on('wantTrailers', onUpWantTrailers);
    stream.on('data', onClientData);
    stream.on('end', onClientEnd);
  }
  return true;
}

function onUpResponse(this: ClientHttp2Stream, h: IncomingHttpHeaders, flags: number): void {
  const st = stateOf(this);
  const { stream, engine, f } = st;
  if (st.finished || stream.destroyed || stream.closed) return;
  st.responded = true;
  settled(st);
  const status = Number(h[':status'] ?? 0);
  const out: OutgoingHttpHeaders = {};
  for (const k of Object.keys(h)) if (!CONNECTION_SPECIFIC.has(k)) out[k] = h[k];
  const endStream = (flags & END_STREAM) !== 0;
  try {
    stream.respond(out, endStream ? { endStream: true } : { waitForTrailers: true });
  } catch {
    fail(st, new Error('response headers refused'));
    return;
  }
  const recHeaders: { key: string; value: string }[] = [];
  const ct = first(h['content-type']);
  if (ct !== undefined) recHeaders.push({ key: 'content-type', value: ct });
  const gs = first(h['grpc-status'] as string | string[] | undefined);
  if (gs !== undefined) recHeaders.push({ key: 'grpc-status', value: gs });
  engine.emit(responseRecord(f, 'FORWARDED', status, st.v?.origin, undefined, recHeaders));
  if (!endStream) {
    this.on('trailers', onUpTrailers);
    stream.on('wantTrailers', onClientWantTrailers);
    this.on('data', onUpData);
    this.on('end', onUpEndRelay);
  }
}

function onUpEnd(this: ClientHttp2Stream): void {
  const st = stateOf(this);
  if (st.responded) st.finished = true;
}

function onUpError(this: ClientHttp2Stream, err: Error): void {
  fail(stateOf(this), err);
}

function onUpClose(this: ClientHttp2Stream): void {
  const st = stateOf(this);
  const u = st.u as H2Upstream;
  if (--u.active === 0) u.idleSince = performance.now();
  settled(st);
  if (st.finished) return;
  if (!st.responded) {
    fail(st, new Error(`upstream stream closed (code ${this.rstCode})`));
    return;
  }
  // Closed after the response started: complete only if the stream ended cleanly.
  if (this.rstCode !== NGHTTP2_NO_ERROR) fail(st, new Error(`upstream reset (code ${this.rstCode})`));
  else st.finished = true;
}

function onUpTrailers(this: ClientHttp2Stream, t: IncomingHttpHeaders): void {
  stateOf(this).upTrailers = t;
}

function onClientWantTrailers(this: ServerHttp2Stream): void {
  const st = stateOf(this);
  this.sendTrailers(trailersOf(st.upTrailers));
}

function onClientTrailers(this: ServerHttp2Stream, t: IncomingHttpHeaders): void {
  stateOf(this).clientTrailers = t;
}

function onUpWantTrailers(this: ClientHttp2Stream): void {
  this.sendTrailers(trailersOf(stateOf(this).clientTrailers));
}

function trailersOf(t: IncomingHttpHeaders | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  if (t) for (const k of Object.keys(t)) if (k[0] !== ':') out[k] = t[k];
  return out;
}

// The DATA relays, with backpressure (what pipe() does, without its per-stream listeners and unpipe
// bookkeeping): the request body client → upstream, the response body upstream → client.

function onClientData(this: ServerHttp2Stream, c: Buffer): void {
  const st = stateOf(this);
  st.f.rx += c.length;
  const up = st.up as ClientHttp2Stream;
  if (up.destroyed) return;
  if (!up.write(c) && !st.upWaiting) {
    st.upWaiting = true;
    this.pause();
    up.once('drain', onUpDrain);
  }
}

function onUpDrain(this: ClientHttp2Stream): void {
  const st = stateOf(this);
  st.upWaiting = false;
  st.stream.resume();
}

function onClientEnd(this: ServerHttp2Stream): void {
  const up = stateOf(this).up as ClientHttp2Stream;
  if (!up.destroyed && !up.writableEnded) up.end();
}

function onUpData(this: ClientHttp2Stream, c: Buffer): void {
  const st = stateOf(this);
  st.f.tx += c.length;
  const stream = st.stream;
  if (stream.destroyed) return;
  if (!stream.write(c) && !st.downWaiting) {
    st.downWaiting = true;
    this.pause();
    stream.once('drain', onClientDrain);
  }
}

function onClientDrain(this: ServerHttp2Stream): void {
  const st = stateOf(this);
  st.downWaiting = false;
  (st.up as ClientHttp2Stream).resume();
}

function onUpEndRelay(this: ClientHttp2Stream): void {
  const stream = stateOf(this).stream;
  if (!stream.destroyed && !stream.writableEnded) stream.end();
}

/** A session-level failure (bad preface, malformed frames): recorded, the session is gone. */
export function recordSessionError(engine: Engine, ctx: ConnCtx, err: Error & { code?: string }): void {
  const detail = `downstream_protocol_error:${err.code ?? 'unknown'}`;
  engine.emit(protocolErrorRecord(ctx.conn, ctx.ends, 'HTTP/2', 400, detail));
  protocolErrorAccess(engine, ctx, 'HTTP/2', 400, detail);
}
