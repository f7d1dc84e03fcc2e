// The CLI's side of the agent API: requests over the agent's unix socket. Errors that the agent
// reports come back as WeirError with the agent's code and location.
import { request } from 'node:http';
import { errorFromWire as toError, WeirError, type WireError as ErrorJson } from '../shared/errors.js';
import { unixRequest } from '../shared/unix-http.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentDir, agentSocket } from './paths.js';

type Method = 'GET' | 'POST' | 'DELETE';

export class AgentClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 120_000,
  ) {}

  /** A JSON request; the answer's JSON body. */
  async call<T = unknown>(method: Method, path: string, body?: unknown): Promise<T> {
    const changes = method === 'POST' && (path === '/v1/apply' || path === '/v1/delete');
    const text = await this.request(method, path, body, changes ? changeTimeoutMs : this.timeoutMs);
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
    return this.request('GET', path, undefined, this.timeoutMs);
  }

  /**
   * A GET whose answer is NDJSON, streamed: `onLine` gets each line as it arrives. Resolves when the
   * agent ends the answer or `signal` aborts (Ctrl-C of `weir observe -f`).
   */
  stream(path: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: this.socketPath, method: 'GET', path }, (res) => {
        const status = res.statusCode ?? 500;
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          if (status >= 400) return;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line) onLine(line);
          }
        });
        res.on('end', () => {
          if (status < 400) return resolve();
          try {
            reject(toError((JSON.parse(buf) as { error: ErrorJson }).error));
          } catch {
            reject(new WeirError('ERR_AGENT_BAD_ANSWER', `agent answered ${status}: ${buf.slice(0, 200)}`));
          }
        });
        res.on('error', reject);
      });
      signal?.addEventListener('abort', () => {
        req.destroy();
        resolve();
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (signal?.aborted) return resolve();
        reject(
          new WeirError('ERR_AGENT_UNREACHABLE', `agent socket ${this.socketPath}: ${err.message}`, {
            cause: err,
          }),
        );
      });
      req.end();
    });
  }

  private request(method: Method, path: string, body: unknown, timeoutMs: number): Promise<string> {
    return unixRequest(this.socketPath, method, path, body, timeoutMs, {
      answer: (status, text) => {
        try {
          return toError((JSON.parse(text) as { error: ErrorJson }).error);
        } catch {
          return new WeirError('ERR_AGENT_BAD_ANSWER', `agent answered ${status}: ${text.slice(0, 200)}`);
        }
      },
      timeout: () => new WeirError('ERR_AGENT_TIMEOUT', `agent did not answer ${method} ${path}`),
      unreachable: (err) =>
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new WeirError(
              'ERR_AGENT_UNREACHABLE',
              `no agent is listening on ${this.socketPath} (is the lab up?)`,
              {
                cause: err,
              },
            )
          : new WeirError('ERR_AGENT_UNREACHABLE', `agent socket ${this.socketPath}: ${err.message}`, {
              cause: err,
            }),
    });
  }
}

/** The client of a lab's agent (its unix socket). */
/**
 * How long a client waits for /v1/apply and /v1/delete: the API bounds its own wait for the nodes
 * (longer for more pods) and always answers, so only a hung agent makes this matter.
 */
export const changeTimeoutMs = 3_600_000;

/**
 * The client of the agent of a lab's node: the first node's unless `node` (or env WEIR_NODE) names
 * another. Any node's API serves the whole cluster's desired state; flows, endpoints and the
 * datapath are the node's own.
 */
export function agentClient(lab: string, timeoutMs?: number, node = process.env.WEIR_NODE): AgentClient {
  return new AgentClient(agentSocketOf(lab, node), timeoutMs);
}

/** The socket of the agent of `node` (undefined: the lab's first node). */
export function agentSocketOf(lab: string, node: string | undefined): string {
  if (!node || existsSync(agentDir(lab, node))) return agentSocket(lab, node);
  let nodes: string[] = [];
  try {
    const cfg = JSON.parse(readFileSync(join(agentDir(lab), '..', 'lab.json'), 'utf8')) as {
      spec: { nodes: { name: string }[] };
    };
    nodes = cfg.spec.nodes.map((n) => n.name);
  } catch {
    // no lab configuration: the node is unknown
  }
  if (nodes[0] === node) return agentSocket(lab);
  throw new WeirError(
    'ERR_LAB_NODE_NOT_FOUND',
    `lab ${lab} has no node '${node}' with an agent${nodes.length ? ` (nodes: ${nodes.join(', ')})` : ''}`,
    { location: { field: '--node' } },
  );
}
