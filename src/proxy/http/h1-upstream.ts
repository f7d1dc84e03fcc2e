// HTTP/1.1 upstream connections of the engine: pools keyed by (client IP, original destination),
// each connection made by the process side's transparent connector and parsed with llhttp
// (RESPONSE). One request at a time per connection (no upstream pipelining); idle connections are
// kept for reuse until the keep-alive period (or the upstream's `Keep-Alive: timeout=`) ends.
import type { Socket } from 'node:net';
import type { ProxiedConnection, UpstreamConnector } from '../types.js';
import type { HttpLimits } from './limits.js';
import { H1Parser, type ParseError } from './llhttp.js';
import { batchable, batchedWrite } from './write-batch.js';

/** An upstream connect that took longer than limits.upstreamConnectTimeoutMs. */
export class UpstreamConnectTimeout extends Error {
  readonly code = 'ETIMEDOUT';
  constructor(ms: number) {
    super(`upstream connect timed out after ${ms} ms`);
  }
}

/** Calls `cb` once: when `socket` is connected, or with the error / a timeout. */
export function whenConnected(socket: Socket, ms: number, cb: (err: Error | null) => void): void {
  // The connect error is reported through `cb`; an error emitted after that must not go unhandled.
  socket.on('error', () => {});
  if (!socket.connecting && !socket.destroyed) {
    cb(null);
    return;
  }
  let done = false;
  const finish = (err: Error | null) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.removeListener('connect', onConnect);
    socket.removeListener('error', onError);
    cb(err);
  };
  const onConnect = () => finish(null);
  const onError = (err: Error) => finish(err);
  const timer = setTimeout(() => {
    const err = new UpstreamConnectTimeout(ms);
    socket.destroy(err);
    finish(err);
  }, ms);
  socket.once('connect', onConnect);
  socket.once('error', onError);
}

/** The request side of one exchange, as an upstream connection drives it. */
export interface UpstreamUser {
  /** Response head; the answer is the parser's (0 go on, 1 no body, 2 upgrade). */
  onUpstreamHead(
    status: number,
    reason: string,
    headers: string[],
    upgrade: boolean,
    keepAlive: boolean,
  ): number;
  onUpstreamBody(chunk: Buffer): void;
  /** A read of the connection has been parsed (what it held has been reported). */
  onUpstreamRead(): void;
  onUpstreamComplete(trailers: string[]): void;
  /** The connection failed; `responded`: response bytes had arrived; `reused`: it had served before. */
  onUpstreamError(err: Error, responded: boolean, reused: boolean): void;
  /** The upstream accepts writes again. */
  onUpstreamDrain(): void;
  /** False when the request was not fully sent: the connection cannot serve another one. */
  readonly upstreamReusable: boolean;
  /** After a 101: the raw socket and the bytes that followed the response head. */
  onUpstreamUpgrade(socket: Socket, rest: Buffer): void;
}

export class UpstreamConn {
  readonly socket: Socket;
  readonly #parser: H1Parser;
  readonly #pool: H1Pool | undefined;
  #user: UpstreamUser | undefined;
  /** Served a request before (a failure before any byte may be a stale keep-alive). */
  reused = false;
  /** The upstream lets the connection be reused after the current response. */
  #keepAlive = true;
  #responded = false;
  #upgraded = false;
  #dead = false;
  #lastStatus = 0;
  /** The response completed during the read being handled. */
  #completedInRead = false;
  /** Idle since (performance.now()); idle longer than `idleLimitMs` → closed. */
  idleSince = 0;
  idleLimitMs: number;

  constructor(socket: Socket, limits: HttpLimits, pool: H1Pool | undefined) {
    this.socket = socket;
    // Writes are batched per turn (write-batch.ts): any destroy sends what is corked first.
    batchable(socket);
    this.#pool = pool;
    this.idleLimitMs = limits.upstreamKeepAliveMs;
    this.#parser = new H1Parser('response', limits.maxHeaderBytes, {
      onMessageBegin: () => {
        this.#responded = true;
      },
      onHead: (_minor, headers, _m, _u, status, reason, upgrade, keepAlive) => {
        const user = this.#user;
        this.#lastStatus = status;
        // Informational answers (100, 103) are not relayed: the response follows.
        if (!user || (status < 200 && status !== 101)) return 0;
        this.#keepAlive = keepAlive;
        if (keepAlive) this.#readKeepAliveHint(headers);
        if (status === 101) this.#upgraded = true;
        return user.onUpstreamHead(status, reason, headers, upgrade, keepAlive);
      },
      onBody: (chunk) => this.#user?.onUpstreamBody(chunk),
      onComplete: (trailers) => this.#complete(trailers),
    });
    // The parser reads the socket in C++ when it can (no JS stream per read), else from 'data'.
    if (!this.#parser.consume(socket as Socket & { _handle?: never }, (r) => this.#parsed(r, undefined))) {
      socket.on('data', (d: Buffer) => this.#onData(d));
    }
    socket.on('end', () => {
      if (this.#dead) return;
      // A close-delimited body ends here; anything else in flight is cut.
      if (this.#user) {
        const err = this.#parser.finish();
        if (err) this.#fail(err);
        else if (this.#user) this.#fail(new Error('upstream closed the connection'));
      }
      this.destroy();
    });
    socket.on('close', () => {
      if (this.#user) this.#fail(new Error('upstream connection closed'));
      this.destroy();
    });
    socket.on('error', (err) => this.#fail(err));
    socket.on('drain', () => this.#user?.onUpstreamDrain());
  }

  get dead(): boolean {
    return this.#dead || this.socket.destroyed;
  }

  /** Serves `user`'s request on this connection. */
  attach(user: UpstreamUser): void {
    this.#user = user;
    this.#responded = false;
    this.#keepAlive = true;
  }

  /** Writes bytes; strings are HTTP heads, one byte per character (latin1, as llhttp read them). */
  write(data: string | Buffer): boolean {
    return batchedWrite(this.socket, data);
  }

  /** The user gives up on its request (client gone, timeout): the connection cannot be reused. */
  abort(): void {
    this.#user = undefined;
    this.destroy();
  }

  pause(): void {
    if (this.#parser.consumed) this.#parser.readStop();
    else this.socket.pause();
  }

  resume(): void {
    if (this.#parser.consumed) this.#parser.readStart();
    else this.socket.resume();
  }

  destroy(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#parser.close();
    this.socket.destroy();
    this.#pool?.forget(this);
  }

  #onData(d: Buffer): void {
    if (!this.#user) {
      // Bytes on an idle connection: the upstream is confused; never reuse it.
      this.destroy();
      return;
    }
    this.#parsed(this.#parser.execute(d), d);
  }

  /** After a parse of `d` (undefined: a read the parser consumed itself). */
  #parsed(r: number | ParseError, d: Buffer | undefined): void {
    if (typeof r !== 'number') {
      this.#fail(r);
      return;
    }
    if (!this.#user) {
      // Bytes on an idle connection: never reuse it (the read that completed a response is fine).
      if (this.#completedInRead) this.#completedInRead = false;
      else if (r > 0 && !this.#dead) this.destroy();
      return;
    }
    this.#completedInRead = false;
    if (!this.#upgraded) {
      // The response head goes out now if no body piece took it along.
      this.#user.onUpstreamRead();
      return;
    }
    const user = this.#user;
    const rest = (d ?? this.#parser.currentBuffer()).subarray(r);
    this.#user = undefined;
    this.#dead = true;
    this.#parser.unconsume();
    this.#parser.close();
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.socket.removeAllListeners('drain');
    this.socket.pause();
    user.onUpstreamUpgrade(this.socket, rest);
  }

  #complete(trailers: string[]): void {
    const user = this.#user;
    // A 1xx answer is not the response: wait for the real one.
    if (!user || this.#upgraded || this.#lastStatus < 200) return;
    this.#user = undefined;
    this.#completedInRead = true;
    user.onUpstreamComplete(trailers);
    this.reused = true;
    if (this.#keepAlive && user.upstreamReusable && this.#pool && !this.#dead) this.#pool.release(this);
    else this.destroy();
  }

  #fail(err: Error | ParseError): void {
    const user = this.#user;
    this.#user = undefined;
    this.destroy();
    user?.onUpstreamError(err, this.#responded, this.reused);
  }

  #readKeepAliveHint(headers: string[]): void {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const k = headers[i] as string;
      if (k.length !== 10 || k.toLowerCase() !== 'keep-alive') continue;
      const m = /timeout\s*=\s*(\d+)/i.exec(headers[i + 1] as string);
      // Give up the connection a second before the upstream would.
      if (m) this.idleLimitMs = Math.min(this.idleLimitMs, Math.max(0, Number(m[1]) * 1000 - 1000));
    }
  }
}

/** Upstream connections for one (client IP, original destination). */
export class H1Pool {
  readonly #conn: ProxiedConnection;
  readonly #connector: UpstreamConnector;
  readonly #limits: HttpLimits;
  readonly #idle: UpstreamConn[] = [];
  readonly #waiters: ((err: Error | null, c: UpstreamConn | null) => void)[] = [];
  #open = 0;
  lastUsed = performance.now();

  constructor(conn: ProxiedConnection, connector: UpstreamConnector, limits: HttpLimits) {
    this.#conn = conn;
    this.#connector = connector;
    this.#limits = limits;
  }

  /** An idle connection, a new one, or (at the pool's limit) the next one released. */
  acquire(cb: (err: Error | null, c: UpstreamConn | null) => void): void {
    this.lastUsed = performance.now();
    while (this.#idle.length > 0) {
      const c = this.#idle.pop() as UpstreamConn;
      if (!c.dead) {
        cb(null, c);
        return;
      }
    }
    if (this.#open >= this.#limits.upstreamConnectionsPerPool) {
      this.#waiters.push(cb);
      return;
    }
    this.#connect(this, cb);
  }

  /** A new connection outside the pool (an upgrade takes its socket). */
  dedicated(cb: (err: Error | null, c: UpstreamConn | null) => void): void {
    this.#connect(undefined, cb);
  }

  #connect(pool: H1Pool | undefined, cb: (err: Error | null, c: UpstreamConn | null) => void): void {
    let socket: Socket;
    try {
      socket = this.#connector(this.#conn);
    } catch (err) {
      cb(err as Error, null);
      return;
    }
    socket.setNoDelay(true);
    if (pool) this.#open++;
    whenConnected(socket, this.#limits.upstreamConnectTimeoutMs, (err) => {
      if (err) {
        if (pool) {
          this.#open--;
          this.#wakeWaiter();
        }
        cb(err, null);
        return;
      }
      cb(null, new UpstreamConn(socket, this.#limits, pool));
    });
  }

  /** A connection done with its request and reusable. */
  release(c: UpstreamConn): void {
    const w = this.#waiters.shift();
    if (w) {
      w(null, c);
      return;
    }
    c.idleSince = performance.now();
    this.#idle.push(c);
  }

  /** A pooled connection is gone. */
  forget(c: UpstreamConn): void {
    this.#open--;
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
    this.#wakeWaiter();
  }

  #wakeWaiter(): void {
    if (this.#waiters.length > 0 && this.#open < this.#limits.upstreamConnectionsPerPool) {
      this.#connect(this, this.#waiters.shift() as (err: Error | null, c: UpstreamConn | null) => void);
    }
  }

  /** Closes idle connections past their keep-alive; true when the pool holds nothing. */
  sweep(now: number): boolean {
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const c = this.#idle[i] as UpstreamConn;
      if (c.dead || now - c.idleSince >= c.idleLimitMs) c.destroy();
    }
    return this.#open === 0 && this.#waiters.length === 0;
  }

  get open(): number {
    return this.#open;
  }

  get idle(): number {
    return this.#idle.length;
  }

  /** Fails waiters and closes idle connections. */
  close(): void {
    for (const w of this.#waiters.splice(0)) w(new Error('proxy closing'), null);
    for (const c of [...this.#idle]) c.destroy();
  }
}
