// One HTTP request with a JSON body over a unix socket (the CLI and agent talking to the agent's
// and the node proxy's APIs); the caller says which errors stand for a failed answer, no answer in
// time and no listener.
import { request } from 'node:http';
import { WeirError } from './errors.js';

export interface UnixHttpErrors {
  /** The error for an answer of status ≥ 400 with body `text`. */
  answer(status: number, text: string): Error;
  /** The error when no answer came within the timeout. */
  timeout(): WeirError;
  /** The error when the socket could not be reached (no file, no listener, reset). */
  unreachable(err: NodeJS.ErrnoException): WeirError;
}

/** `method path` on `socketPath` with `body` as JSON (none if undefined); the answer's body. */
export function unixRequest(
  socketPath: string,
  method: string,
  path: string,
  body: unknown,
  timeoutMs: number,
  errors: UnixHttpErrors,
): Promise<string> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise<string>((resolve, reject) => {
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
          : {},
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 500;
          if (status < 400) resolve(text);
          else reject(errors.answer(status, text));
        });
      },
    );
    req.on('timeout', () => req.destroy(errors.timeout()));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(err instanceof WeirError ? err : errors.unreachable(err)),
    );
    req.end(payload);
  });
}
