// The HTTP/1.1 side of the engine, on llhttp directly (llhttp.ts) — node:http's parser and its
// strictness without its per-request objects. A client connection is an H1Connection: its requests
// (pipelined ones included) are judged as they are parsed and answered strictly in order, one
// exchange at a time; each allowed request goes to a pooled upstream connection (h1-upstream.ts)
// and its response is relayed with the body streamed and re-framed (Content-Length kept, chunked
// re-chunked with trailers, close-delimited turned into chunked), backpressure both ways.
// Upgrades become a raw tunnel once the upstream answers 101; any other answer ends the connection,
// so nothing after a declined upgrade passes unjudged. h2c upgrades are served as plain HTTP/1.1.
//
// Timeouts are checked by one sweep per engine (sweep()), not by timers per request.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { equalsLower, judgeHttp, type HttpVerdict } from '../../policy/l7/http-match.js';
import type { ConnCtx, Engine } from './engine.js';
import type { UpstreamConn, UpstreamUser } from './h1-upstream.js';
import { forwardRequestHead, rawHeader, recordHeaders, relayResponseHead } from './headers.js';
import { H1Parser, type ParseError } from './llhttp.js';
import { batchable, batchedWrite } from './write-batch.js';
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
import { finishAccess, flagOfDetail, protocolErrorAccess, upstreamFlag } from './access.js';
import {
  protocolErrorRecord,
  requestFacts,
  requestRecord,
  responseRecord,
  type RequestFacts,
} from './records.js';

/** Request body bytes held while the upstream connection is being made, before reading pauses. */
const MAX_BUFFERED_BODY = 64 * 1024;

// Why the client socket's reading is paused (bits).
const PAUSE_BACKLOG = 1;
const PAUSE_UPSTREAM = 2;
const PAUSE_BUFFER = 4;

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/** A first body piece up to this size goes out in the same write as the response head. */
const SMALL_BODY = 16 * 1024;

/** Methods a stale keep-alive connection may be retried for (idempotent, no body). */
const RETRIABLE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
const NO_OPS: readonly never[] = [];

function verdictDetail(v: HttpVerdict): string | undefined {
  if (!v.allowed) return v.reason === 'no_rule_matched' ? DENIED.detail : `${DENIED.detail}:${v.reason}`;
  if (v.mismatches.length === 0) return undefined;
  return 'header_mismatch:' + v.mismatches.map((m) => `${m.name}(${m.action})`).join(',');
}

/** A local reply as a complete HTTP/1.1 response (no body for HEAD). */
function localResponse(r: LocalReply, close: boolean, minor: number, head: boolean): string {
  const conn = close ? 'connection: close\r\n' : minor === 0 ? 'connection: keep-alive\r\n' : '';
  return (
    `HTTP/1.1 ${r.code} ${STATUS_CODES[r.code] ?? 'Unknown'}\r\ncontent-type: text/plain\r\n` +
    `content-length: ${Buffer.byteLength(r.body)}\r\n${conn}\r\n${head ? '' : r.body}`
  );
}

/** The protocols of an Upgrade field, lower-case. */
function upgradeTokens(v: string): string[] {
  return v
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');
}

export interface Http1Side {
  /** Serves an HTTP/1.1 client connection whose first bytes are `first`. */
  accept(socket: Socket, ctx: ConnCtx, first: Buffer): void;
  /** Header, request, idle and upstream timeouts of every connection. */
  sweep(now: number): void;
  /** close(): idle connections end now, busy ones after their current exchanges. */
  drain(): void;
}

export function createHttp1(engine: Engine): Http1Side {
  const conns = new Set<H1Connection>();
  return {
    accept(socket, ctx, first) {
      const c = new H1Connection(engine, ctx, socket, conns);
      conns.add(c);
      c.start(first);
    },
    sweep(now) {
      for (const c of conns) c.sweep(now);
    },
    drain() {
      for (const c of conns) c.drain();
    },
  };
}

/** One client connection. */
class H1Connection {
  readonly engine: Engine;
  readonly ctx: ConnCtx;
  readonly socket: Socket;
  readonly #conns: Set<H1Connection>;
  readonly #parser: H1Parser;
  /** Exchanges in arrival order; only the first one writes. */
  readonly queue: Exchange[] = [];
  /** The exchange whose request body is being parsed. */
  #receiving: Exchange | undefined;
  /** When the current message's head began (0: not inside a head; approximate: set on data). */
  #headStart = 0;
  #headsThisRead = 0;
  #idleSince = performance.now();
  #paused = 0;
  /** The connection ends after the exchange answering now; later ones are never served. */
  closeAfter = false;
  /** The connection ends once the exchanges already parsed are answered (half-close, drain, error). */
  finishThenClose = false;
  /** A protocol error's answer, written after the exchanges still under way. */
  #pendingReply: string | undefined;
  /** An upgrade request stopped the parser: the bytes after it. */
  #stoppedAt: Exchange | undefined;
  #dead = false;

  constructor(engine: Engine, ctx: ConnCtx, socket: Socket, conns: Set<H1Connection>) {
    this.engine = engine;
    this.ctx = ctx;
    this.socket = socket;
    this.#conns = conns;
    this.#parser = new H1Parser('request', engine.limits.maxHeaderBytes, {
      onHead: (minor, headers, method, url, _s, _r, upgrade, keepAlive) =>
        this.#onHead(minor, headers, method, url, upgrade, keepAlive),
      onBody: (chunk) => this.#receiving?.requestBody(chunk),
      onComplete: (trailers) => {
        const ex = this.#receiving;
        this.#receiving = undefined;
        ex?.requestDone(trailers);
      },
    });
    socket.on('end', () => this.#onEnd());
    socket.once('close', () => this.#onClose());
    // Writes are batched per turn (write-batch.ts): any destroy sends what is corked first.
    batchable(socket);
  }

  /** Feeds the first bytes (read while sniffing), then lets the parser read the socket itself. */
  start(first: Buffer): void {
    this.data(first);
    if (this.#dead) return;
    const consumed = this.#parser.consume(this.socket as Socket & { _handle?: never }, (r) => {
      // A read that completed no head while no body was being received began (or continued) one.
      if (this.#headsThisRead === 0 && this.#headStart === 0 && !this.#receiving)
        this.#headStart = performance.now();
      this.#headsThisRead = 0;
      this.#parsed(r, undefined);
    });
    if (!consumed) this.socket.on('data', (d: Buffer) => this.data(d));
    else if (this.#paused !== 0 || this.closeAfter) this.#parser.readStop();
  }

  data(d: Buffer): void {
    if (this.#dead || this.closeAfter || this.#pendingReply !== undefined) return;
    // Bytes while no body is being received start (or continue) a head: its timeout runs.
    if (this.#headStart === 0 && !this.#receiving) this.#headStart = performance.now();
    this.#parsed(this.#parser.execute(d), d);
  }

  /** After a parse of `d` (undefined: a read the parser consumed itself). */
  #parsed(r: number | ParseError, d: Buffer | undefined): void {
    if (typeof r !== 'number') {
      this.#parseError(r);
      return;
    }
    const stopped = this.#stoppedAt;
    if (stopped && stopped.requestComplete && d === undefined) d = this.#parser.currentBuffer();
    if (!d) return;
    // llhttp stops after an upgrade request (after its body, if any).
    if (stopped && stopped.requestComplete) {
      this.#stoppedAt = undefined;
      const rest = d.subarray(r);
      if (stopped.h2c) {
        // An h2c upgrade request is served as plain HTTP/1.1: parsing goes on after it.
        this.#parser.reset('request', this.engine.limits.maxHeaderBytes);
        if (rest.length > 0) this.data(rest);
      } else {
        // The rest belongs to the tunnel (or to nothing, if it is refused).
        stopped.tunnelHead = rest;
        this.pause(PAUSE_BACKLOG);
      }
    }
  }

  #onHead(
    minor: number,
    headers: string[],
    method: string,
    url: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    this.#headStart = 0;
    this.#headsThisRead++;
    const { engine } = this;
    engine.stats.requestsTotal++;
    engine.stats.requestsActive++;
    const ex = new Exchange(this, minor, headers, method, url, keepAlive);
    this.queue.push(ex);
    this.#receiving = ex;
    let answer = 0;
    if (upgrade || method === 'CONNECT') {
      const protocols = upgradeTokens(rawHeader(headers, 'upgrade') ?? '');
      if (method !== 'CONNECT' && protocols.length > 0 && protocols.every((p) => p === 'h2c')) {
        ex.h2c = true;
      } else {
        ex.tunnel = true;
        // No body: the bytes after the head belong to the tunnel.
        answer = 2;
      }
      this.#stoppedAt = ex;
    }
    ex.judge();
    if (this.queue.length === 1) ex.start();
    else this.pause(PAUSE_BACKLOG);
    return answer;
  }

  /** The exchange at the head of the queue is complete: the next one may answer. */
  exchangeDone(ex: Exchange): void {
    if (this.queue[0] !== ex) return;
    this.queue.shift();
    this.engine.stats.requestsActive--;
    if (this.#dead) return;
    if (this.closeAfter) {
      // Requests parsed after this one are dropped with the connection.
      this.end();
      return;
    }
    if (this.queue.length === 0) {
      this.#idleSince = performance.now();
      if (this.finishThenClose) {
        this.end(this.#pendingReply);
        return;
      }
      this.resume(PAUSE_BACKLOG);
      return;
    }
    (this.queue[0] as Exchange).start();
  }

  /** Responses say `connection: close` from now on. */
  get closing(): boolean {
    return this.closeAfter || this.finishThenClose || this.engine.closing;
  }

  /** Writes bytes; strings are HTTP heads, one byte per character (latin1, as llhttp read them). */
  write(data: string | Buffer): boolean {
    if (this.#dead || this.socket.destroyed) return false;
    return batchedWrite(this.socket, data);
  }

  pause(why: number): void {
    if (this.#paused === 0) {
      if (this.#parser.consumed) this.#parser.readStop();
      else this.socket.pause();
    }
    this.#paused |= why;
  }

  resume(why: number): void {
    if (this.#paused === 0) return;
    this.#paused &= ~why;
    if (this.#paused !== 0 || this.#dead) return;
    if (this.#parser.consumed) this.#parser.readStart();
    else this.socket.resume();
  }

  /** Writes `last` (if any), then closes the connection. */
  end(last?: string): void {
    if (this.#dead) return;
    this.closeAfter = true;
    if (!this.socket.destroyed) {
      if (last !== undefined) this.socket.end(last, 'latin1');
      else this.socket.end();
      this.socket.destroySoon();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Hands the raw socket over to a tunnel: this connection parses nothing more. */
  detach(): Socket {
    this.#dead = true;
    this.#parser.unconsume();
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.#parser.close();
    this.#conns.delete(this);
    return this.socket;
  }

  #onEnd(): void {
    // The client closed its side: like node:http and Envoy, the connection is over — requests
    // still under way are cancelled upstream.
    this.destroy();
  }

  #onClose(): void {
    if (!this.#dead) {
      this.#dead = true;
      this.#parser.close();
    }
    this.#conns.delete(this);
    for (const ex of this.queue) {
      ex.clientGone();
      this.engine.stats.requestsActive--;
    }
    this.queue.length = 0;
  }

  /** A parse error (or a timeout) ends the connection with an answer where one can be given. */
  #parseError(err: ParseError): void {
    const r =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? HEADERS_TOO_LARGE
        : err.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
          ? { ...HEADERS_TOO_LARGE, code: 413, body: 'chunk extensions too large\r\n' }
          : BAD_REQUEST;
    this.#failConnection(r, err.code ? `${r.detail}:${err.code}` : r.detail);
  }

  #failConnection(r: LocalReply, detail: string): void {
    this.pause(PAUSE_BACKLOG);
    if (this.#pendingReply !== undefined || (this.closeAfter && this.queue.length > 0)) {
      // An answer that closes the connection is already under way.
      return;
    }
    const { engine } = this;
    engine.stats.rejected++;
    engine.emit(protocolErrorRecord(this.ctx.conn, this.ctx.ends, 'HTTP/1.1', r.code, detail));
    const receiving = this.#receiving;
    // The request being received is cut (a broken body, a timeout): answer it if it is the one
    // answering now and has not begun its response; otherwise just close.
    if (receiving) {
      const answers = this.queue[0] === receiving && !receiving.responseStarted;
      receiving.cut();
      if (answers) receiving.facts.tx += Buffer.byteLength(r.body);
      finishAccess(engine, receiving.facts, {
        flag: flagOfDetail(detail) || 'DPE',
        code: answers ? r.code : receiving.responseStarted ? receiving.facts.code : 0,
        detail,
      });
      if (answers) this.end(rawResponse(r));
      else this.destroy();
      return;
    }
    protocolErrorAccess(engine, this.ctx, 'HTTP/1.1', r.code, detail);
    // Earlier requests are still being answered: this answer comes after theirs.
    if (this.queue.length > 0) {
      this.#pendingReply = rawResponse(r);
      this.finishThenClose = true;
      return;
    }
    this.end(rawResponse(r));
  }

  sweep(now: number): void {
    if (this.#dead) return;
    const l = this.engine.limits;
    if (this.#headStart > 0 && now - this.#headStart > l.headersTimeoutMs) {
      this.#headStart = 0;
      this.#failConnection(REQUEST_TIMEOUT, REQUEST_TIMEOUT.detail);
      return;
    }
    const receiving = this.#receiving;
    if (receiving && now - receiving.facts.t0 > l.requestTimeoutMs) {
      this.#failConnection(REQUEST_TIMEOUT, REQUEST_TIMEOUT.detail);
      return;
    }
    if (this.queue.length === 0 && this.#headStart === 0 && now - this.#idleSince > l.idleTimeoutMs) {
      this.end();
      return;
    }
    this.queue[0]?.sweep(now);
  }

  drain(): void {
    if (this.queue.length === 0 && this.#headStart === 0) this.end();
    else this.finishThenClose = true;
  }
}

/** One request and its response on a client connection. */
class Exchange implements UpstreamUser {
  readonly conn: H1Connection;
  readonly engine: Engine;
  readonly minor: number;
  readonly headers: string[];
  readonly method: string;
  readonly url: string;
  readonly keepAlive: boolean;
  readonly facts: RequestFacts;
  verdict: HttpVerdict | undefined;
  /** Answered by the proxy itself (and whether that closes the connection). */
  #local: LocalReply | undefined;
  #localClose = false;
  /** An upgrade (or CONNECT) request: a tunnel if allowed and the upstream agrees. */
  tunnel = false;
  /** An h2c upgrade request, served as plain HTTP/1.1. */
  h2c = false;
  /** The bytes after the upgrade request's head. */
  tunnelHead: Buffer | undefined;
  #bodyMode: 'none' | 'length' | 'chunked';
  #expectContinue: boolean;
  #started = false;
  #buffered: Buffer[] | undefined;
  #bufferedBytes = 0;
  requestComplete = false;
  #trailers: string[] | undefined;
  #up: UpstreamConn | undefined;
  #sentAt = 0;
  #lastUpstreamData = 0;
  responseStarted = false;
  #responseComplete = false;
  #resMode: 'none' | 'length' | 'chunked' | 'close' = 'none';
  /** The response head, until it goes out with the first body piece or the read is parsed. */
  #pendingHead: string | undefined;
  #retried = false;
  #finished = false;
  #gone = false;
  /** Made on first use (most exchanges never wait for the client). */
  #onClientDrainFn: (() => void) | undefined;
  get #onClientDrain(): () => void {
    return (this.#onClientDrainFn ??= () => this.#up?.resume());
  }
  /** The first Host field ('' when none), how many there are, the Transfer-Encoding fields joined. */
  readonly #host: string;
  readonly #hosts: number;
  readonly #te: string | undefined;

  constructor(
    conn: H1Connection,
    minor: number,
    headers: string[],
    method: string,
    url: string,
    keepAlive: boolean,
  ) {
    this.conn = conn;
    this.engine = conn.engine;
    this.minor = minor;
    this.headers = headers;
    this.method = method;
    this.url = url;
    this.keepAlive = keepAlive;
    // One pass over the fields for what framing, refusals and the policy need.
    let host: string | undefined;
    let hosts = 0;
    let te: string | undefined;
    let cl: string | undefined;
    let expect: string | undefined;
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const k = headers[i] as string;
      switch (k.length) {
        case 4:
          if (equalsLower(k, 'host')) {
            hosts++;
            host ??= headers[i + 1];
          }
          break;
        case 6:
          if (expect === undefined && equalsLower(k, 'expect')) expect = headers[i + 1];
          break;
        case 14:
          if (cl === undefined && equalsLower(k, 'content-length')) cl = headers[i + 1];
          break;
        case 17:
          if (equalsLower(k, 'transfer-encoding'))
            te = te === undefined ? headers[i + 1] : `${te},${headers[i + 1] as string}`;
          break;
      }
    }
    this.#host = host ?? '';
    this.#hosts = hosts;
    this.#te = te;
    this.facts = requestFacts(conn.ctx.conn, conn.ctx.ends, {
      method,
      scheme: 'http',
      target: url,
      authority: this.#host,
      protocol: 'HTTP/1.1',
      headers: recordHeaders(headers),
    });
    this.#bodyMode = te !== undefined ? 'chunked' : cl !== undefined && cl !== '0' ? 'length' : 'none';
    this.#expectContinue = expect !== undefined && expect.toLowerCase() === '100-continue';
  }

  /** Refusals before policy, then the policy's verdict (records the REQUEST). */
  judge(): void {
    const { engine, conn, facts } = this;
    const refusal = this.#refusal();
    if (refusal) {
      engine.stats.rejected++;
      engine.emit(responseRecord(facts, 'ERROR', refusal.code, undefined, refusal.detail));
      this.#local = refusal;
      this.#localClose = true;
      return;
    }
    const v = judgeHttp(conn.ctx.conn.policy(), conn.ctx.conn.remoteIdentity, {
      method: this.method,
      path: this.url,
      host: this.#host,
      headers: this.headers,
    });
    this.verdict = v;
    engine.emit(
      requestRecord(facts, v.allowed ? 'FORWARDED' : 'DENIED', v.origin, verdictDetail(v), v.httpRule),
    );
    if (!v.allowed) {
      engine.stats.denied++;
      engine.emit(responseRecord(facts, 'DENIED', DENIED.code, v.origin, DENIED.detail));
      this.#local = DENIED;
      // A tunnel request is not followed by HTTP; a client waiting for 100-continue may never send
      // its body: both end the connection.
      this.#localClose = this.tunnel || (this.#expectContinue && this.#bodyMode !== 'none');
      return;
    }
    if (this.method === 'CONNECT') {
      engine.stats.rejected++;
      engine.emit(responseRecord(facts, 'ERROR', NOT_IMPLEMENTED.code, v.origin, NOT_IMPLEMENTED.detail));
      this.#local = NOT_IMPLEMENTED;
      this.#localClose = true;
      return;
    }
    if (this.tunnel && this.#bodyMode !== 'none') {
      // The body of an upgrade request would have to be cut out of the tunnel's bytes.
      engine.stats.rejected++;
      engine.emit(responseRecord(facts, 'ERROR', BAD_REQUEST.code, v.origin, 'upgrade_with_body'));
      this.#local = BAD_REQUEST;
      this.#localClose = true;
      return;
    }
    engine.stats.forwarded++;
  }

  /** Requests refused before they are judged (too long, too many fields, ambiguous framing). */
  #refusal(): LocalReply | undefined {
    const l = this.engine.limits;
    if (this.url.length > l.maxUriBytes) return URI_TOO_LONG;
    if (this.headers.length > 2 * l.maxHeaderCount) return HEADERS_TOO_LARGE;
    const hosts = this.#hosts;
    const te = this.#te;
    // Several Host fields (RFC 9112 §3.2), or Transfer-Encoding in HTTP/1.0 (§6.1: framing faulty).
    if (hosts > 1) return { ...BAD_REQUEST, detail: `${BAD_REQUEST.detail}:duplicate_host` };
    if (te !== undefined && this.minor === 0)
      return { ...BAD_REQUEST, detail: `${BAD_REQUEST.detail}:http10_transfer_encoding` };
    // Codings other than plain chunked are not forwarded (§6.1: 501).
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked')
      return { ...NOT_IMPLEMENTED, detail: 'unsupported_transfer_coding' };
    return undefined;
  }

  /** This exchange may answer now (it is first in line). */
  start(): void {
    if (this.#started || this.#gone) return;
    this.#started = true;
    if (this.#local) {
      this.#answerLocally(this.#local, this.#localClose);
      return;
    }
    // Sent towards the upstream (Envoy logs the upstream host even when connecting fails).
    this.facts.upstream = true;
    const pool = this.engine.pools.h1(this.conn.ctx.conn, this.conn.ctx.key);
    const onConn = (err: Error | null, c: UpstreamConn | null) => this.#attach(err, c);
    if (this.tunnel) pool.dedicated(onConn);
    else pool.acquire(onConn);
  }

  #answerLocally(r: LocalReply, close: boolean): void {
    const { conn } = this;
    this.responseStarted = true;
    this.#responseComplete = true;
    if (this.method !== 'HEAD') this.facts.tx += Buffer.byteLength(r.body);
    if (close || !this.keepAlive || conn.closing) {
      if (close || !this.keepAlive) conn.closeAfter = true;
      conn.write(localResponse(r, true, this.minor, this.method === 'HEAD'));
    } else {
      conn.write(localResponse(r, false, this.minor, this.method === 'HEAD'));
    }
    this.#maybeFinish();
  }

  #attach(err: Error | null, c: UpstreamConn | null): void {
    if (this.#gone || this.#finished) {
      // The client went away while the connection was being made.
      if (c) c.abort();
      return;
    }
    if (err || !c) {
      this.#upstreamFailed(err ?? new Error('no upstream connection'), false);
      return;
    }
    this.#up = c;
    c.attach(this);
    let head = forwardRequestHead(this.method, this.url, this.headers, this.verdict?.ops ?? NO_OPS);
    if (this.#bodyMode === 'chunked') head += 'transfer-encoding: chunked\r\n';
    if (this.tunnel)
      head += `connection: upgrade\r\nupgrade: ${rawHeader(this.headers, 'upgrade') ?? ''}\r\n`;
    head += '\r\n';
    const buffered = this.#buffered;
    this.#buffered = undefined;
    this.#bufferedBytes = 0;
    // The response-headers timeout runs once the whole request is sent.
    if (this.requestComplete) this.#sentAt = performance.now();
    let ok = c.write(head);
    if (buffered) for (const b of buffered) ok = this.#writeBody(c, b);
    if (this.requestComplete && this.#bodyMode === 'chunked') ok = c.write(this.#lastChunk());
    if (this.#expectContinue && !this.requestComplete && this.#bodyMode !== 'none') this.conn.write(CONTINUE);
    this.conn.resume(PAUSE_BUFFER);
    if (!ok) this.conn.pause(PAUSE_UPSTREAM);
  }

  #writeBody(c: UpstreamConn, chunk: Buffer): boolean {
    if (this.#bodyMode !== 'chunked') return c.write(chunk);
    c.write(`${chunk.length.toString(16)}\r\n`);
    c.write(chunk);
    return c.write('\r\n');
  }

  #lastChunk(): string {
    let s = '0\r\n';
    const t = this.#trailers;
    if (t) for (let i = 0; i + 1 < t.length; i += 2) s += `${t[i]}: ${t[i + 1]}\r\n`;
    return s + '\r\n';
  }

  /** A piece of the request body, as parsed. */
  requestBody(chunk: Buffer): void {
    this.facts.rx += chunk.length;
    if (this.#local || this.#gone || this.#responseComplete) return;
    const up = this.#up;
    if (!up) {
      // Held until the upstream connection is there (bounded: reading pauses).
      (this.#buffered ??= []).push(chunk);
      this.#bufferedBytes += chunk.length;
      if (this.#bufferedBytes > MAX_BUFFERED_BODY) this.conn.pause(PAUSE_BUFFER);
      return;
    }
    if (!this.#writeBody(up, chunk)) this.conn.pause(PAUSE_UPSTREAM);
  }

  requestDone(trailers: string[]): void {
    this.requestComplete = true;
    if (trailers.length > 0) this.#trailers = trailers;
    const up = this.#up;
    if (up) {
      if (this.#bodyMode === 'chunked' && !this.#responseComplete) up.write(this.#lastChunk());
      if (!this.responseStarted) this.#sentAt = performance.now();
    }
    this.#maybeFinish();
  }

  onUpstreamDrain(): void {
    this.conn.resume(PAUSE_UPSTREAM);
  }

  onUpstreamHead(status: number, _reason: string, headers: string[]): number {
    const { conn, engine } = this;
    if (this.#gone) return 1;
    const relayed = relayResponseHead(headers, status === 101);
    const hasLength = relayed.hasLength;
    const recordFields = relayed.record;
    this.responseStarted = true;
    this.#lastUpstreamData = performance.now();
    const noBody = this.method === 'HEAD' || status === 204 || status === 304 || status === 101;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n${relayed.fields}`;
    if (noBody) this.#resMode = 'none';
    else if (hasLength) this.#resMode = 'length';
    else if (this.minor >= 1) {
      this.#resMode = 'chunked';
      head += 'transfer-encoding: chunked\r\n';
    } else {
      this.#resMode = 'close';
      conn.closeAfter = true;
    }
    if (status !== 101) {
      // A refused upgrade, an answer to a request whose body still arrives, or a client or proxy
      // that ends: the connection closes after this response.
      if (this.tunnel || !this.keepAlive || !this.requestComplete) conn.closeAfter = true;
      if (conn.closing) head += 'connection: close\r\n';
      else if (this.minor === 0) head += 'connection: keep-alive\r\n';
    }
    head += '\r\n';
    // Written with the first body piece (one write for small responses), or once the read that
    // brought the head is parsed (onUpstreamRead).
    this.#pendingHead = head;
    engine.emit(
      responseRecord(
        this.facts,
        'FORWARDED',
        status,
        this.verdict?.origin,
        status === 101 ? 'upgraded' : this.tunnel ? 'upgrade_refused' : undefined,
        recordFields,
      ),
    );
    return this.method === 'HEAD' ? 1 : 0;
  }

  onUpstreamRead(): void {
    this.flushHead();
  }

  onUpstreamBody(chunk: Buffer): void {
    if (this.#gone) return;
    this.facts.tx += chunk.length;
    this.#lastUpstreamData = performance.now();
    const { conn } = this;
    let ok: boolean;
    const head = this.#pendingHead;
    if (head !== undefined) {
      this.#pendingHead = undefined;
      if (chunk.length <= SMALL_BODY) {
        const body = chunk.toString('latin1');
        ok = conn.write(
          this.#resMode === 'chunked' ? `${head}${chunk.length.toString(16)}\r\n${body}\r\n` : head + body,
        );
        if (!ok && this.#up) {
          this.#up.pause();
          conn.socket.once('drain', this.#onClientDrain);
        }
        return;
      }
      conn.write(head);
    }
    if (this.#resMode === 'chunked') {
      conn.write(`${chunk.length.toString(16)}\r\n`);
      conn.write(chunk);
      ok = conn.write('\r\n');
    } else {
      ok = conn.write(chunk);
    }
    if (!ok && this.#up) {
      this.#up.pause();
      conn.socket.once('drain', this.#onClientDrain);
    }
  }

  onUpstreamComplete(trailers: string[]): void {
    this.#up = undefined;
    if (this.#gone) return;
    const { conn } = this;
    let out = this.#pendingHead ?? '';
    this.#pendingHead = undefined;
    if (this.#resMode === 'chunked') {
      out += '0\r\n';
      for (let i = 0; i + 1 < trailers.length; i += 2) out += `${trailers[i]}: ${trailers[i + 1]}\r\n`;
      out += '\r\n';
    }
    if (out !== '') conn.write(out);
    this.#responseComplete = true;
    if (this.#resMode === 'close') conn.closeAfter = true;
    // The upstream answered before the whole request was sent: the client connection ends after
    // this response (its remaining body is not read).
    if (!this.requestComplete) conn.closeAfter = true;
    this.#maybeFinish();
  }

  /** Whether the upstream connection may serve another request after this response. */
  get upstreamReusable(): boolean {
    return this.requestComplete;
  }

  onUpstreamError(err: Error, responded: boolean, reused: boolean): void {
    this.#up = undefined;
    if (this.#gone || this.#finished) return;
    // A keep-alive connection the upstream had closed meanwhile: try once more on a new one.
    if (!responded && reused && !this.#retried && this.#bodyMode === 'none' && RETRIABLE.has(this.method)) {
      this.#retried = true;
      this.engine.pools.h1(this.conn.ctx.conn, this.conn.ctx.key).acquire((e, c) => this.#attach(e, c));
      return;
    }
    this.#upstreamFailed(err, true);
  }

  /** The upstream failed; `connected`: its connection had been made. */
  #upstreamFailed(err: Error, connected: boolean): void {
    const { engine, conn } = this;
    engine.stats.upstreamErrors++;
    const flag = upstreamFlag(err, connected);
    if (this.responseStarted) {
      // The response is cut: the client must not take it for complete.
      this.#finished = true;
      finishAccess(engine, this.facts, { flag });
      conn.destroy();
      return;
    }
    this.facts.flags.push(flag);
    const r = upstreamReply(err);
    engine.emit(responseRecord(this.facts, 'ERROR', r.code, this.verdict?.origin, r.detail));
    this.#answerLocally(r, !this.requestComplete || this.tunnel);
  }

  onUpstreamUpgrade(upstream: Socket, rest: Buffer): void {
    const { conn, engine } = this;
    this.#up = undefined;
    if (this.#gone || conn.socket.destroyed) {
      upstream.destroy();
      return;
    }
    this.#finished = true;
    this.#responseComplete = true;
    // The tunnel's bytes are not the request's: the entry is written at the upgrade.
    finishAccess(engine, this.facts);
    this.flushHead();
    conn.queue.shift();
    engine.stats.requestsActive--;
    const client = conn.detach();
    engine.stats.tunnelsTotal++;
    engine.stats.tunnelsActive++;
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      engine.stats.tunnelsActive--;
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', close);
    upstream.on('close', close);
    client.on('error', close);
    client.on('close', close);
    // An idle tunnel is closed like an idle stream.
    client.setTimeout(engine.limits.upstreamIdleTimeoutMs, close);
    if (rest.length > 0) client.write(rest);
    if (this.tunnelHead && this.tunnelHead.length > 0) upstream.write(this.tunnelHead);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.resume();
  }

  flushHead(): void {
    const head = this.#pendingHead;
    if (head === undefined) return;
    this.#pendingHead = undefined;
    if (!this.#gone) this.conn.write(head);
  }

  /** The request body broke or timed out while this exchange answers: give up its upstream side. */
  cut(): void {
    this.#finished = true;
    const up = this.#up;
    this.#up = undefined;
    up?.abort();
  }

  /** The client connection is gone. */
  clientGone(): void {
    if (this.#gone) return;
    this.#gone = true;
    finishAccess(
      this.engine,
      this.facts,
      this.#responseComplete ? {} : { flag: 'DC', ...(this.responseStarted ? {} : { code: 0 }) },
    );
    const up = this.#up;
    this.#up = undefined;
    if (up && !this.#responseComplete) {
      this.engine.stats.cancelled++;
      up.abort();
    }
  }

  sweep(now: number): void {
    const l = this.engine.limits;
    if (!this.#up) return;
    if (!this.responseStarted && this.#sentAt > 0 && now - this.#sentAt > l.upstreamHeadersTimeoutMs) {
      const up = this.#up;
      this.#up = undefined;
      up.abort();
      this.#upstreamFailed(
        Object.assign(new Error('upstream response headers timed out'), { code: 'WEIR_UPSTREAM_TIMEOUT' }),
        true,
      );
    } else if (this.responseStarted && now - this.#lastUpstreamData > l.upstreamIdleTimeoutMs) {
      const up = this.#up;
      this.#up = undefined;
      up.abort();
      this.#upstreamFailed(
        Object.assign(new Error('upstream went idle mid-response'), { code: 'WEIR_UPSTREAM_TIMEOUT' }),
        true,
      );
    }
  }

  #maybeFinish(): void {
    if (this.#finished || !this.#responseComplete) return;
    if (!this.requestComplete && !this.conn.closeAfter) return;
    this.#finished = true;
    finishAccess(this.engine, this.facts);
    this.conn.exchangeDone(this);
  }
}
