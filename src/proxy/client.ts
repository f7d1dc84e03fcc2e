// The agent's side of the node proxy's admin API (admin.ts): snapshot pushes, status, metrics and
// the L7 record stream, over the proxy's unix socket. Errors are WeirError ERR_PROXY_*; the
// proxy's own errors keep their code (ERR_PROXY_SNAPSHOT_STALE carries the running version).
import { request } from 'node:http';
import { isErrorCode } from '../shared/error-codes.js';
import { unixRequest } from '../shared/unix-http.js';
import { WeirError } from '../shared/errors.js';
import type { GatewaySnapshot } from './gateway/server.js';
import type { ProxySnapshot } from '../policy/l7/types.js';
import type { ProxyStatus } from './admin.js';
import type { ListenerPorts } from './server.js';
import type { TunnelConfig } from './tunnel.js';

interface ErrorJson {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export class ProxyClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 10_000,
  ) {}

  status(): Promise<ProxyStatus> {
    return this.#json<ProxyStatus>('GET', '/v1/status');
  }

  /** Pushes a snapshot and the listener ports; resolves with the version the proxy now runs. */
  async push(snapshot: ProxySnapshot, listeners: ListenerPorts): Promise<number> {
    const r = await this.#json<{ version: number }>('PUT', '/v1/snapshot', { snapshot, listeners });
    return r.version;
  }

  /** Pushes the Gateway data plane's snapshot; resolves with the addresses it listens on. */
  async pushGateway(snapshot: GatewaySnapshot): Promise<{ version: number; listening: string[] }> {
    return this.#json<{ version: number; listening: string[] }>('PUT', '/v1/gateway', snapshot);
  }

  /** --encryption mtls: the tunnels' SVIDs, CA and ports (tunnel.ts). */
  async pushTunnel(cfg: TunnelConfig): Promise<{ version: number }> {
    return this.#json<{ version: number }>('PUT', '/v1/tunnel', cfg);
  }

  /** The DNS proxy forgets what it knew the agent's FQDN cache holds; resolves with how much. */
  async forgetFqdn(): Promise<number> {
    return (await this.#json<{ forgotten: number }>('POST', '/v1/fqdn/forget', {})).forgotten;
  }

  metrics(): Promise<string> {
    return this.#request('GET', '/metrics', undefined);
  }

  /**
   * Reads the record stream until the proxy ends it or `signal` aborts; every line (without its
   * newline: parseRecordLine reads it) goes to `onLine`. Rejects when the proxy cannot be reached.
   */
  records(onLine: (line: string) => void, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, method: 'GET', path: '/v1/records' }, (res) => {
        let rest = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          let start = 0;
          let i = chunk.indexOf('\n');
          if (i < 0) {
            rest += chunk;
            return;
          }
          if (rest !== '') {
            const line = rest + chunk.slice(0, i);
            rest = '';
            start = i + 1;
            if (line) onLine(line);
            i = chunk.indexOf('\n', start);
          }
          for (; i >= 0; i = chunk.indexOf('\n', start)) {
            if (i > start) onLine(chunk.slice(start, i));
            start = i + 1;
          }
          rest = chunk.slice(start);
        });
        // A torn last line (the proxy died mid-write) is dropped.
        res.on('end', resolve);
        res.on('error', resolve);
      });
      signal.addEventListener('abort', () => {
        req.destroy();
        resolve();
      });
      req.on('error', (err) => (signal.aborted ? resolve() : reject(unreachable(this.socketPath, err))));
      req.end();
    });
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const text = await this.#request(method, path, body);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new WeirError(
        'ERR_PROXY_BAD_ANSWER',
        `proxy answered ${method} ${path} with: ${text.slice(0, 200)}`,
      );
    }
  }

  #request(method: string, path: string, body: unknown): Promise<string> {
    return unixRequest(this.socketPath, method, path, body, this.timeoutMs, {
      answer: (status, text) => {
        try {
          const e = (JSON.parse(text) as { error: ErrorJson }).error;
          return isErrorCode(e.code)
            ? new WeirError(e.code, e.message, { details: e.details ?? {} })
            : new WeirError('ERR_PROXY_BAD_ANSWER', `${e.code}: ${e.message}`);
        } catch {
          return new WeirError('ERR_PROXY_BAD_ANSWER', `proxy answered ${status}: ${text.slice(0, 200)}`);
        }
      },
      timeout: () => new WeirError('ERR_PROXY_TIMEOUT', `the proxy did not answer ${method} ${path}`),
      unreachable: (err) => unreachable(this.socketPath, err),
    });
  }
}

function unreachable(socketPath: string, err: Error): WeirError {
  return new WeirError('ERR_PROXY_UNREACHABLE', `no proxy answers on ${socketPath}: ${err.message}`, {
    cause: err,
  });
}
