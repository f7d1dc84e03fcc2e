// The HTTP/1.1 side of the engine. A node:http server that never listens parses the client
// connections it is handed (llhttp in strict mode: no CL+TE, no duplicate Content-Length, no
// obs-fold), keeps their order for pipelined requests and their keep-alive state; every request is
// judged, then answered 403 or forwarded through an undici pool. Upgrades (WebSocket) become a raw
// tunnel once the upstream answers 101; anything else on an upgrade request closes the connection,
// so bytes after a refused upgrade are never passed on unjudged.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { equalsLower, judgeHttp, type HttpVerdict } from '../../policy/l7/http-match.js';
import { ctxOf, type ConnCtx, type Engine } from './engine.js';
import { forwardRequestHeaders, rawHeader, recordHeaders, relayResponseHeaders } from './headers.js';
import {
  BAD_REQUEST,
  DENIED,
  HEADERS_TOO_LARGE,
  NOT_IMPLEMENTED,
  REQUEST_TIMEOUT,
  URI_TOO_LONG,
  rawResponse,
  upstreamReply,
  type LocalReply,
} from './local-reply.js';
import {
  protocolErrorRecord,
  recordUrl,
  requestRecord,
  responseRecord,
  type RequestFacts,
} from './records.js';

/** The response fields a RESPONSE record shows. */
const RESPONSE_RECORD_FIELDS = new Set(['content-type', 'content-length', 'grpc-status']);

function responseRecordHeaders(flat: readonly string[]): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const k = (flat[i] as string).toLowerCase();
    if (RESPONSE_RECORD_FIELDS.has(k)) out.push({ key: k, value: flat[i + 1] as string });
  }
  return out;
}

function hasBody(raw: readonly string[]): boolean {
  if (rawHeader(raw, 'transfer-encoding') !== undefined) return true;
  const cl = rawHeader(raw, 'content-length');
  return cl !== undefined && cl !== '0';
}

/**
 * A framing or routing ambiguity llhttp lets through, answered 400 and the connection closed:
 * several Host fields (RFC 9112 §3.2), or Transfer-Encoding in an HTTP/1.0 request (§6.1: framing
 * faulty).
 */
function ambiguity(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) if (equalsLower(raw[i] as string, 'host')) hosts++;
  if (hosts > 1) return 'duplicate_host';
  if (req.httpVersionMinor === 0 && rawHeader(raw, 'transfer-encoding') !== undefined)
    return 'http10_transfer_encoding';
  return undefined;
}

/** Transfer codings other than plain `chunked` are not forwarded (RFC 9112 §6.1: 501). */
function unsupportedCoding(raw: readonly string[]): boolean {
  let te: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (equalsLower(raw[i] as string, 'transfer-encoding'))
      te = te === undefined ? raw[i + 1] : `${te},${raw[i + 1]}`;
  }
  return te !== undefined && te.trim().toLowerCase() !== 'chunked';
}

/** A request refused before it is judged (too long, too many fields, ambiguous), or undefined. */
function refusal(limits: Engine['limits'], req: IncomingMessage): LocalReply | undefined {
  if ((req.url as string).length > limits.maxUriBytes) return URI_TOO_LONG;
  if (req.rawHeaders.length > 2 * limits.maxHeaderCount) return HEADERS_TOO_LARGE;
  const a = ambiguity(req);
  if (a) return { ...BAD_REQUEST, detail: `${BAD_REQUEST.detail}:${a}` };
  if (unsupportedCoding(req.rawHeaders)) return { ...NOT_IMPLEMENTED, detail: 'unsupported_transfer_coding' };
  return undefined;
}

function facts(
  ctx: ConnCtx,
  method: string,
  target: string,
  host: string,
  raw: readonly string[],
): RequestFacts {
  return {
    conn: ctx.conn,
    ends: ctx.ends,
    method,
    url: recordUrl('http', host, target),
    protocol: 'HTTP/1.1',
    headers: recordHeaders(raw),
    t0: performance.now(),
  };
}

function verdictDetail(v: HttpVerdict): string | undefined {
  if (!v.allowed) return v.reason === 'no_rule_matched' ? DENIED.detail : `${DENIED.detail}:${v.reason}`;
  if (v.mismatches.length === 0) return undefined;
  return 'header_mismatch:' + v.mismatches.map((m) => `${m.name}(${m.action})`).join(',');
}

export function createHttp1Server(engine: Engine): http.Server {
  const { limits, stats } = engine;
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    insecureHTTPParser: false,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.idleTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  });
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.idleTimeoutMs;
  // One more than allowed, so that too many fields are seen (node silently drops the rest).
  server.maxHeadersCount = limits.maxHeaderCount + 1;
  // The server never listens; 'listening' starts its per-connection header/request timers.
  server.emit('listening');

  /** A local reply on a node:http response (keeps the connection unless `close`). */
  function reply(ctx: ConnCtx, res: ServerResponse, r: LocalReply, close: boolean): void {
    const headers = ['content-type', 'text/plain', 'content-length', String(Buffer.byteLength(r.body))];
    if (close || engine.closing) {
      headers.push('connection', 'close');
      ctx.closeAfter = true;
    }
    res.writeHead(r.code, headers);
    res.end(r.body);
  }

  function onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const ctx = ctxOf(req.socket);
    // node parses pipelined requests ahead: one after an answer that closes the connection is
    // never served (it is dropped with the connection).
    if (ctx.closeAfter) {
      req.resume();
      return;
    }
    stats.requestsTotal++;
    stats.requestsActive++;
    ctx.inflight++;
    res.once('close', () => {
      stats.requestsActive--;
      if (--ctx.inflight === 0 && ctx.pendingReply !== undefined) flushPendingReply(ctx);
    });
    const raw = req.rawHeaders;
    const method = req.method as string;
    const target = req.url as string;
    const host = rawHeader(raw, 'host') ?? '';
    const f = facts(ctx, method, target, host, raw);
    const bad = refusal(limits, req);
    if (bad) {
      stats.rejected++;
      engine.emit(responseRecord(f, 'ERROR', bad.code, undefined, bad.detail));
      reply(ctx, res, bad, true);
      return;
    }
    const v = judgeHttp(ctx.conn.policy(), ctx.conn.remoteIdentity, {
      method,
      path: target,
      host,
      headers: raw,
    });
    engine.emit(requestRecord(f, v.allowed ? 'FORWARDED' : 'DENIED', v.origin, verdictDetail(v)));
    if (!v.allowed) {
      stats.denied++;
      engine.emit(responseRecord(f, 'DENIED', DENIED.code, v.origin, DENIED.detail));
      // A client waiting for 100-continue may not send its body: node closes the connection then.
      reply(ctx, res, DENIED, false);
      return;
    }
    stats.forwarded++;
    if (expectContinue) res.writeContinue();
    const fwd = new Forward(engine, ctx, req, res, f, v);
    res.once('close', fwd.onClientClose);
    try {
      engine.pools.h1(ctx.conn, ctx.key).dispatch(
        {
          path: target,
          method,
          headers: forwardRequestHeaders(raw, v.ops),
          body: hasBody(raw) ? req : null,
        },
        fwd,
      );
    } catch (err) {
      fwd.onError(err as Error);
    }
  }

  server.on('request', (req, res) => onRequest(req, res, false));
  server.on('checkContinue', (req, res) => onRequest(req, res, true));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
    onUpgrade(engine, req, socket, head),
  );
  server.on('connect', (req: IncomingMessage, socket: Socket) => onConnectMethod(engine, req, socket));
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) =>
    onClientError(engine, err, socket),
  );
  return server;
}

/**
 * One forwarded request: an undici dispatch handler that relays the upstream response to the
 * node:http response, with backpressure both ways, and turns failures into 502/504.
 */
class Forward implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | undefined;
  #done = false;
  #responded = false;
  #resume: (() => void) | undefined;
  readonly #onDrain = () => this.#resume?.();

  constructor(
    readonly engine: Engine,
    readonly ctx: ConnCtx,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly facts: RequestFacts,
    readonly verdict: HttpVerdict,
  ) {}

  /** The client went away (or the response ended): abort an upstream request still running. */
  readonly onClientClose = () => {
    if (this.#done || this.res.writableFinished) return;
    this.#done = true;
    this.engine.stats.cancelled++;
    this.#abort?.(new Error('client closed the connection'));
  };

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#done) abort(new Error('client closed the connection'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // 1xx informational answers are not relayed (100-continue is answered by the proxy).
    if (statusCode < 200) return true;
    const res = this.res;
    if (this.#done || res.destroyed) return false;
    this.#resume = resume;
    const headers = relayResponseHeaders(rawHeaders);
    if (this.engine.closing) headers.push('connection', 'close');
    res.writeHead(statusCode, headers);
    this.#responded = true;
    this.engine.emit(
      responseRecord(
        this.facts,
        'FORWARDED',
        statusCode,
        this.verdict.origin,
        undefined,
        responseRecordHeaders(headers),
      ),
    );
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#done) return false;
    const ok = this.res.write(chunk);
    if (!ok) this.res.once('drain', this.#onDrain);
    return ok;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.#done) return;
    this.#done = true;
    if (trailers && trailers.length > 0) {
      const t: [string, string][] = [];
      for (let i = 0; i + 1 < trailers.length; i += 2) t.push([String(trailers[i]), String(trailers[i + 1])]);
      this.res.addTrailers(t);
    }
    this.res.end();
  }

  onError(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    const { engine, res } = this;
    engine.stats.upstreamErrors++;
    if (this.#responded || res.headersSent) {
      // The response is cut: the client must not take it for complete.
      res.destroy();
      return;
    }
    const r = upstreamReply(err);
    engine.emit(responseRecord(this.facts, 'ERROR', r.code, this.verdict.origin, r.detail));
    if (res.destroyed) return;
    const headers = ['content-type', 'text/plain', 'content-length', String(Buffer.byteLength(r.body))];
    if (engine.closing) headers.push('connection', 'close');
    res.writeHead(r.code, headers);
    res.end(r.body);
  }
}

/** Writes a local reply on a raw client socket and closes it. */
function rawReply(socket: Socket, r: LocalReply): void {
  if (socket.writable) socket.end(rawResponse(r));
  socket.destroySoon();
}

/** The protocols of an Upgrade field, lower-case. */
function upgradeTokens(v: string): string[] {
  return v
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');
}

function onUpgrade(engine: Engine, req: IncomingMessage, socket: Socket, head: Buffer): void {
  const { stats } = engine;
  const ctx = ctxOf(socket);
  stats.requestsTotal++;
  const raw = req.rawHeaders;
  const method = req.method as string;
  const target = req.url as string;
  const host = rawHeader(raw, 'host') ?? '';
  const f = facts(ctx, method, target, host, raw);
  socket.on('error', () => {});
  const bad = refusal(engine.limits, req);
  if (bad) {
    stats.rejected++;
    engine.emit(responseRecord(f, 'ERROR', bad.code, undefined, bad.detail));
    rawReply(socket, bad);
    return;
  }
  const v = judgeHttp(ctx.conn.policy(), ctx.conn.remoteIdentity, {
    method,
    path: target,
    host,
    headers: raw,
  });
  engine.emit(requestRecord(f, v.allowed ? 'FORWARDED' : 'DENIED', v.origin, verdictDetail(v)));
  if (!v.allowed) {
    stats.denied++;
    engine.emit(responseRecord(f, 'DENIED', DENIED.code, v.origin, DENIED.detail));
    rawReply(socket, DENIED);
    return;
  }
  // The body of an upgrade request would have to be cut out of the tunnel's bytes: not supported.
  if (hasBody(raw)) {
    stats.rejected++;
    engine.emit(responseRecord(f, 'ERROR', BAD_REQUEST.code, v.origin, 'upgrade_with_body'));
    rawReply(socket, BAD_REQUEST);
    return;
  }
  stats.forwarded++;
  const protocols = upgradeTokens(rawHeader(raw, 'upgrade') ?? '');
  // h2c is never upgraded to (its streams would pass unjudged): the request is served as HTTP/1.1.
  const upgrade = protocols.filter((p) => p !== 'h2c').join(', ');
  const tunnel = new Tunnel(engine, ctx, socket, head, f, v);
  socket.once('close', tunnel.onClientClose);
  try {
    engine.pools.h1(ctx.conn, ctx.key).dispatch(
      {
        path: target,
        method,
        headers: forwardRequestHeaders(raw, v.ops),
        body: null,
        upgrade: upgrade === '' ? null : upgrade,
      },
      tunnel,
    );
  } catch (err) {
    tunnel.onError(err as Error);
  }
}

/**
 * An upgrade request: 101 → the two sockets are piped (a WebSocket tunnel); any other answer is
 * relayed as a complete response and the client connection closed.
 */
class Tunnel implements Dispatcher.DispatchHandler {
  #abort: ((err?: Error) => void) | undefined;
  #done = false;
  #responded = false;
  #resume: (() => void) | undefined;
  readonly #onDrain = () => this.#resume?.();

  constructor(
    readonly engine: Engine,
    readonly ctx: ConnCtx,
    readonly socket: Socket,
    readonly head: Buffer,
    readonly facts: RequestFacts,
    readonly verdict: HttpVerdict,
  ) {}

  readonly onClientClose = () => {
    if (this.#done) return;
    this.#done = true;
    this.engine.stats.cancelled++;
    this.#abort?.(new Error('client closed the connection'));
  };

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#done) abort(new Error('client closed the connection'));
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Socket): void {
    const { engine, socket } = this;
    if (this.#done || socket.destroyed) {
      upstream.destroy();
      return;
    }
    this.#done = true;
    this.#responded = true;
    const headers = relayResponseHeaders(rawHeaders ?? [], true);
    let head = `HTTP/1.1 ${statusCode} ${http.STATUS_CODES[statusCode] ?? 'Switching Protocols'}\r\n`;
    for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    socket.write(head + '\r\n');
    engine.emit(responseRecord(this.facts, 'FORWARDED', statusCode, this.verdict.origin, 'upgraded'));
    engine.stats.tunnelsTotal++;
    engine.stats.tunnelsActive++;
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      engine.stats.tunnelsActive--;
      socket.destroy();
      upstream.destroy();
    };
    upstream.on('error', close);
    upstream.on('close', close);
    socket.on('error', close);
    socket.on('close', close);
    // An idle tunnel is closed like an idle stream.
    socket.setTimeout(engine.limits.upstreamIdleTimeoutMs, close);
    if (this.head.length > 0) upstream.write(this.head);
    socket.pipe(upstream);
    upstream.pipe(socket);
    socket.resume();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true;
    const { socket } = this;
    if (this.#done || socket.destroyed) return false;
    this.#resume = resume;
    this.#responded = true;
    const headers = relayResponseHeaders(rawHeaders);
    let head = `HTTP/1.1 ${statusCode} ${http.STATUS_CODES[statusCode] ?? 'Unknown'}\r\n`;
    // The body goes as received (close-delimited unless the upstream gave a length).
    for (let i = 0; i + 1 < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
    socket.write(head + 'connection: close\r\n\r\n');
    this.engine.emit(
      responseRecord(
        this.facts,
        'FORWARDED',
        statusCode,
        this.verdict.origin,
        'upgrade_refused',
        responseRecordHeaders(headers),
      ),
    );
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.#done) return false;
    const ok = this.socket.write(chunk);
    if (!ok) this.socket.once('drain', this.#onDrain);
    return ok;
  }

  onComplete(): void {
    if (this.#done) return;
    this.#done = true;
    this.socket.end();
    this.socket.destroySoon();
  }

  onError(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.engine.stats.upstreamErrors++;
    if (this.#responded) {
      this.socket.destroy();
      return;
    }
    const r = upstreamReply(err);
    this.engine.emit(responseRecord(this.facts, 'ERROR', r.code, this.verdict.origin, r.detail));
    rawReply(this.socket, r);
  }
}

/** CONNECT: judged like any request; tunnels are not offered (501). */
function onConnectMethod(engine: Engine, req: IncomingMessage, socket: Socket): void {
  const ctx = ctxOf(socket);
  engine.stats.requestsTotal++;
  socket.on('error', () => {});
  const raw = req.rawHeaders;
  const target = req.url as string;
  const host = rawHeader(raw, 'host') ?? target;
  const f = facts(ctx, 'CONNECT', target, host, raw);
  const v = judgeHttp(ctx.conn.policy(), ctx.conn.remoteIdentity, {
    method: 'CONNECT',
    path: target,
    host,
    headers: raw,
  });
  engine.emit(requestRecord(f, v.allowed ? 'FORWARDED' : 'DENIED', v.origin, verdictDetail(v)));
  const r = v.allowed ? NOT_IMPLEMENTED : DENIED;
  if (v.allowed) engine.stats.rejected++;
  else engine.stats.denied++;
  engine.emit(responseRecord(f, v.allowed ? 'ERROR' : 'DENIED', r.code, v.origin, r.detail));
  rawReply(socket, r);
}

/** Writes the answer a protocol error left waiting for the responses under way, and closes. */
function flushPendingReply(ctx: ConnCtx): void {
  const body = ctx.pendingReply as string;
  ctx.pendingReply = undefined;
  if (ctx.socket.writable) ctx.socket.end(body);
  ctx.socket.destroySoon();
}

/**
 * A request the parser refused (or that timed out): answered with a status and the connection
 * closed. Responses to earlier pipelined requests still under way are finished first (answers stay
 * in order), except on a timeout, which cuts the request that timed out.
 */
function onClientError(engine: Engine, err: Error & { code?: string }, socket: Socket): void {
  const ctx = ctxOf(socket);
  // A connection reset or a write error: nothing can be answered.
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
    socket.destroy();
    return;
  }
  // An answer that closes the connection is already under way (or waiting): nothing more to say.
  if (ctx.closeAfter) return;
  ctx.closeAfter = true;
  const r =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? HEADERS_TOO_LARGE
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? REQUEST_TIMEOUT
        : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
          ? { ...HEADERS_TOO_LARGE, code: 413, body: 'chunk extensions too large\r\n' }
          : BAD_REQUEST;
  engine.stats.rejected++;
  engine.emit(
    protocolErrorRecord(
      ctx.conn,
      ctx.ends,
      'HTTP/1.1',
      r.code,
      err.code ? `${r.detail}:${err.code}` : r.detail,
    ),
  );
  const sock = socket as Socket & {
    _httpMessage?: ServerResponse;
    parser?: { incoming?: IncomingMessage | null };
  };
  const incoming = sock.parser?.incoming;
  // The failure is in the body of the request being received (or it timed out): that request is cut.
  if (r === REQUEST_TIMEOUT || (incoming && !incoming.complete && ctx.inflight > 0)) {
    // Answer only if nothing else is being written; never into a response under way.
    if (ctx.inflight > 1 || sock._httpMessage?.headersSent) socket.destroy();
    else rawReply(socket, r);
    return;
  }
  // Earlier pipelined requests are still being answered: this answer comes after theirs.
  if (ctx.inflight > 0) {
    socket.pause();
    ctx.pendingReply = rawResponse(r);
    return;
  }
  rawReply(socket, r);
}
