// GET /v1/flows: stored flows matching Hubble-style filters, then (follow=1) new ones as they come,
// as NDJSON: one {"flow":{...}} or {"lost_events":{...}} per line (Hubble's GetFlowsResponse).
// GET /v1/flows/status: flows seen, ring fill, followers and losses by source.
import type { ServerResponse } from 'node:http';
import { compileFilter, DEFAULT_LAST, parseFlowQuery, parseTime } from '../observe/filters.js';
import type { FlowsLine } from '../observe/flow.js';
import type { FlowObserver } from '../observe/stream.js';
import type { Route } from './api-server.js';

export function flowRoutes(observer: FlowObserver): Route[] {
  return [
    { method: 'GET', pattern: '/v1/flows/status', handler: () => observer.status() },
    {
      method: 'GET',
      pattern: '/v1/flows',
      handler: (req, res: ServerResponse) => {
        const q = parseFlowQuery(req.query);
        const now = Date.now();
        const filter = compileFilter(q, now);
        const last = q.last ?? (q.follow || q.since ? undefined : DEFAULT_LAST);
        const lines = observer.read({
          filter,
          ...(q.since ? { since: parseTime('since', q.since, now) } : {}),
          ...(q.until ? { until: parseTime('until', q.until, now) } : {}),
          ...(last !== undefined ? { last } : {}),
        });
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const write = (line: FlowsLine) => res.write(JSON.stringify(line) + '\n');
        for (const line of lines) write(line);
        if (!q.follow) {
          res.end();
          return;
        }
        const stop = observer.follow(
          { write, onDrain: (cb) => res.on('drain', cb), full: () => res.writableNeedDrain },
          filter,
        );
        res.on('close', stop);
      },
    },
  ];
}
