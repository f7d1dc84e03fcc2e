// The CLI's side of the agent API: requests over the agent's unix socket. Errors that the agent
// reports come back as WeirError with the agent's code and location.
import { request } from 'node:http';
import { ValidationError, WeirError } from '../shared/errors.js';

interface ErrorJson {
  code: string;
  message: string;
  location?: { file?: string; object?: string; field?: string };
  problems?: ErrorJson[];
}

function toError(e: ErrorJson): WeirError {
  if (e.problems && e.problems.length > 0) {
    return new ValidationError(
      e.problems.map((p) => new WeirError(p.code, p.message, { location: p.location ?? {} })),
    );
  }
  return new WeirError(e.code, e.message, { location: e.location ?? {} });
}

type Method = 'GET' | 'POST' | 'DELETE';

export class AgentClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 120_000,
  ) {}

  /** A JSON request; the answer's JSON body. */
  async call<T = unknown>(method: Method, path: string, body?: unknown): Promise<T> {
    const text = await this.request(method, path, body);
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      throw new WeirError(
        'ERR_AGENT_BAD_ANSWER',
        `agent answered ${method} ${path} with: ${text.slice(0, 200)}`,
      );
    }
  }

  /** A GET whose answer is text (e.g. /metrics in Prometheus' format). */
  text(path: string): Promise<string> {
    return this.request('GET', path, undefined);
  }

  private request(method: Method, path: string, body: unknown): Promise<string> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<string>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: payload
            ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
            : {},
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 500;
            if (status < 400) return resolve(text);
            try {
              reject(toError((JSON.parse(text) as { error: ErrorJson }).error));
            } catch {
              reject(
                new WeirError('ERR_AGENT_BAD_ANSWER', `agent answered ${status}: ${text.slice(0, 200)}`),
              );
            }
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(new WeirError('ERR_AGENT_TIMEOUT', `agent did not answer ${method} ${path}`)),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof WeirError) reject(err);
        else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
          reject(
            new WeirError(
              'ERR_AGENT_UNREACHABLE',
              `no agent is listening on ${this.socketPath} (is the lab up?)`,
              {
                cause: err,
              },
            ),
          );
        else
          reject(
            new WeirError('ERR_AGENT_UNREACHABLE', `agent socket ${this.socketPath}: ${err.message}`, {
              cause: err,
            }),
          );
      });
      req.end(payload);
    });
  }
}
