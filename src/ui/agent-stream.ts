// A streaming GET to the agent's unix socket: the agent's NDJSON flow stream, line by line.
// (AgentClient reads whole answers; a followed stream never ends.)
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { errorFromWire, WeirError, type WireError } from '../shared/errors.js';

export interface AgentStream {
  /** Stops the stream (the agent sees the connection close). */
  close(): void;
}

export interface StreamHandlers {
  /** The answer's head arrived with a 2xx status. */
  onOpen?(res: IncomingMessage): void;
  onLine(line: string): void;
  /** The stream ended: `err` is set when it failed (agent unreachable, error answer, cut off). */
  onEnd(err?: WeirError): void;
}

function answerError(status: number, text: string, path: string): WeirError {
  try {
    return errorFromWire((JSON.parse(text) as { error: WireError }).error);
  } catch {
    return new WeirError(
      'ERR_AGENT_BAD_ANSWER',
      `agent answered GET ${path} with ${status}: ${text.slice(0, 200)}`,
    );
  }
}

export function streamAgent(socketPath: string, path: string, h: StreamHandlers): AgentStream {
  let closed = false;
  let ended = false;
  const end = (err?: WeirError) => {
    if (ended) return;
    ended = true;
    h.onEnd(closed ? undefined : err);
  };
  const req: ClientRequest = request({ socketPath, method: 'GET', path }, (res) => {
    const status = res.statusCode ?? 500;
    if (status >= 400) {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => end(answerError(status, Buffer.concat(chunks).toString('utf8'), path)));
      return;
    }
    h.onOpen?.(res);
    res.setEncoding('utf8');
    let buf = '';
    res.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line && !closed) h.onLine(line);
      }
    });
    res.on('end', () => end());
    res.on('error', (err) => end(new WeirError('ERR_AGENT_STREAM', `agent stream ${path}: ${err.message}`)));
  });
  req.on('error', (err: NodeJS.ErrnoException) => {
    const unreachable = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
    end(
      new WeirError(
        'ERR_AGENT_UNREACHABLE',
        unreachable
          ? `no agent is listening on ${socketPath} (is the lab up?)`
          : `agent socket ${socketPath}: ${err.message}`,
        { cause: err },
      ),
    );
  });
  req.end();
  return {
    close() {
      closed = true;
      req.destroy();
      end();
    },
  };
}
