// HTTP/1.1 parsing with llhttp, the parser node:http itself runs (strict mode: no CL+TE, no
// duplicate Content-Length, no obs-fold, no bare LF — the request-smuggling defences of node:http),
// without node:http's per-request objects (IncomingMessage, ServerResponse, streams). The native
// parser comes from node's `_http_common` module; its API is checked once (probe()) so that a node
// whose internals differ fails loudly at start instead of misparsing.
import { createRequire } from 'node:module';
import { WeirError } from '../../shared/errors.js';

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | (Error & { code?: string; bytesParsed?: number });
  finish(): undefined | (Error & { code?: string });
  consume(handle: StreamHandle): void;
  unconsume(): void;
  getCurrentBuffer(): Buffer;
  close(): void;
  [k: number]: unknown;
}

/** A net.Socket's native handle (what node:http's parser consumes). */
interface StreamHandle {
  isStreamBase?: boolean;
  _consumed?: boolean;
  reading?: boolean;
  readStart(): number;
  readStop(): number;
}

interface NativeModule {
  HTTPParser: {
    new (): NativeParser;
    REQUEST: number;
    RESPONSE: number;
    kOnMessageBegin: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnExecute: number;
    kLenientNone: number;
  };
  methods: string[];
}

const native = createRequire(import.meta.url)('_http_common') as NativeModule;
const { HTTPParser, methods } = native;

/**
 * What the parser reports; `onHead`'s answer: 0 = go on, 1 = no body follows, 2 = upgrade (stop).
 * `onMessageBegin` comes as soon as the previous message completes, not with the next byte.
 */
export interface ParserEvents {
  /** Left out when nothing is to be done then: the parser makes no JS call per message for it. */
  onMessageBegin?: () => void;
  onHead(
    versionMinor: number,
    headers: string[],
    method: string,
    url: string,
    status: number,
    reason: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number;
  onBody(chunk: Buffer): void;
  /** `trailers`: trailer fields of a chunked message (flat), usually empty. */
  onComplete(trailers: string[]): void;
}

export type ParseError = Error & { code?: string; bytesParsed?: number };

/** One llhttp parser for one connection (REQUEST or RESPONSE messages). */
export class H1Parser {
  readonly #p: NativeParser;
  #headers: string[] = [];
  #url = '';
  #closed = false;
  /** Inside execute()/finish() or a consumed read: the native parser must not be freed under its own callbacks. */
  #busy = false;
  #closeLater = false;
  #handle: StreamHandle | undefined;

  constructor(kind: 'request' | 'response', maxHeaderSize: number, events: ParserEvents) {
    const p = new HTTPParser();
    p.initialize(
      kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE,
      {},
      maxHeaderSize,
      HTTPParser.kLenientNone,
    );
    // Header sections that span reads arrive in pieces (and trailers come this way).
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      for (let i = 0; i < headers.length; i++) this.#headers.push(headers[i] as string);
      this.#url += url;
    };
    const onMessageBegin = events.onMessageBegin;
    if (onMessageBegin) {
      p[HTTPParser.kOnMessageBegin] = () => {
        this.#busy = true;
        onMessageBegin();
      };
    }
    p[HTTPParser.kOnHeadersComplete] = (
      _major: number,
      minor: number,
      headers: string[] | undefined,
      method: number | undefined,
      url: string | undefined,
      status: number | undefined,
      reason: string | undefined,
      upgrade: boolean,
      keepAlive: boolean,
    ) => {
      if (headers === undefined) {
        headers = this.#headers;
        this.#headers = [];
      }
      if (url === undefined) {
        url = this.#url;
        this.#url = '';
      }
      this.#busy = true;
      return events.onHead(
        minor,
        headers,
        method === undefined ? '' : (methods[method] ?? ''),
        url,
        status ?? 0,
        reason ?? '',
        upgrade,
        keepAlive,
      );
    };
    p[HTTPParser.kOnBody] = (chunk: Buffer) => {
      this.#busy = true;
      events.onBody(chunk);
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      this.#busy = true;
      const trailers = this.#headers;
      if (trailers.length > 0) this.#headers = [];
      this.#url = '';
      events.onComplete(trailers);
    };
    this.#p = p;
  }

  /**
   * Reads `socket` in C++ straight into the parser (node:http does the same): no JS stream, no
   * Buffer per read. `onExecute` gets what execute() would return, after each read. False when the
   * socket's handle cannot be consumed (then feed execute() from 'data' events).
   */
  consume(socket: { _handle?: StreamHandle | null }, onExecute: (r: number | ParseError) => void): boolean {
    const h = socket._handle;
    if (!h || !h.isStreamBase || h._consumed) return false;
    h._consumed = true;
    this.#handle = h;
    this.#p[HTTPParser.kOnExecute] = (r: number | ParseError) => {
      if (!this.#closeLater) onExecute(r);
      this.#busy = false;
      // Still inside the native read: free the parser once it has returned.
      if (this.#closeLater) setImmediate(() => this.close());
    };
    this.#p.consume(h);
    return true;
  }

  /** The buffer of the last consumed read (its bytes after an upgrade belong to the tunnel). */
  currentBuffer(): Buffer {
    return this.#p.getCurrentBuffer();
  }

  /** Stops/starts reading the consumed socket (backpressure). */
  readStop(): void {
    if (this.#handle?.reading) {
      this.#handle.reading = false;
      this.#handle.readStop();
    }
  }

  readStart(): void {
    if (this.#handle && !this.#handle.reading && !this.#closed) {
      this.#handle.reading = true;
      this.#handle.readStart();
    }
  }

  /** Gives the socket's reads back to its JS stream. */
  unconsume(): void {
    if (!this.#handle) return;
    this.#p.unconsume();
    this.#handle._consumed = false;
    this.#handle = undefined;
  }

  get consumed(): boolean {
    return this.#handle !== undefined;
  }

  /** Parses `data`; returns the bytes consumed (less than all after an upgrade) or the error. */
  execute(data: Buffer): number | ParseError {
    if (this.#closed || this.#closeLater) return 0;
    this.#busy = true;
    try {
      return this.#p.execute(data);
    } finally {
      this.#busy = false;
      if (this.#closeLater) this.close();
    }
  }

  /** The peer closed: completes a close-delimited message, or reports a truncated one. */
  finish(): ParseError | undefined {
    if (this.#closed || this.#closeLater) return undefined;
    this.#busy = true;
    try {
      return this.#p.finish() ?? undefined;
    } finally {
      this.#busy = false;
      if (this.#closeLater) this.close();
    }
  }

  /** Starts over (after an upgrade the proxy declined to tunnel). */
  reset(kind: 'request' | 'response', maxHeaderSize: number): void {
    if (this.#closed || this.#closeLater) return;
    this.#headers = [];
    this.#url = '';
    this.#p.initialize(
      kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE,
      {},
      maxHeaderSize,
      HTTPParser.kLenientNone,
    );
  }

  /** Frees the native parser (after the current execute() when called from a callback). */
  close(): void {
    if (this.#closed) return;
    if (this.#busy) {
      this.#closeLater = true;
      return;
    }
    this.#closed = true;
    if (this.#handle) {
      // A consumed parser may be asked to close from inside its own native read without being
      // busy: when a read reports EOF or an error, the parser hands it to the socket's JS side, and
      // node runs the nextTick queue (the socket's 'end' or 'error' handlers, which close the
      // connection) before that call returns into the parser. Freeing it then made the parser's
      // read finish on freed memory (a segfault of the whole proxy, every connection of every
      // thread cut: cluster-mtls-l7's upstream through a tunnel that closed at once). The socket
      // stops feeding it now; the native parser is freed once this turn is over.
      this.unconsume();
      const p = this.#p;
      setImmediate(() => p.close());
      return;
    }
    this.#p.close();
  }
}

let probed = false;

/**
 * Checks once that node's parser behaves as this module expects (callbacks, methods, strictness);
 * throws ERR_PROXY_HTTP_PARSER otherwise.
 */
export function probe(): void {
  if (probed) return;
  const seen: string[] = [];
  const events: ParserEvents = {
    onMessageBegin: () => seen.push('begin'),
    onHead: (minor, headers, method, url, _s, _r, upgrade, keepAlive) => {
      seen.push(`head ${method} ${url} 1.${minor} ${headers.join('|')} ${upgrade} ${keepAlive}`);
      return 0;
    },
    onBody: (b) => seen.push(`body ${b.toString()}`),
    onComplete: () => seen.push('complete'),
  };
  const want = ['begin', 'head POST /p?q 1.1 Host|h|Content-Length|2 false true', 'body ok', 'complete'];
  let problem: string | undefined;
  try {
    const p = new H1Parser('request', 8192, events);
    const n = p.execute(Buffer.from('POST /p?q HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok'));
    const smuggle = new H1Parser('request', 8192, { ...events, onHead: () => 0 });
    const err = smuggle.execute(
      Buffer.from('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'),
    );
    p.close();
    smuggle.close();
    // (llhttp announces the next message as soon as one completes: a trailing 'begin' is fine.)
    if (n !== 52 || seen.slice(0, 4).join('\n') !== want.join('\n')) {
      problem = `unexpected parse: ${JSON.stringify(seen)} (${String(n)})`;
    } else if (!(err instanceof Error)) problem = 'Content-Length with Transfer-Encoding was accepted';
  } catch (e) {
    problem = (e as Error).message;
  }
  if (problem) {
    throw new WeirError(
      'ERR_PROXY_HTTP_PARSER',
      `node's HTTP parser (_http_common) does not behave as expected: ${problem}`,
    );
  }
  probed = true;
}
