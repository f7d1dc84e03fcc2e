// Hubble's HTTP metrics, counted by the agent from the L7 flows it ingests: requests by method,
// protocol and reporter (client = egress proxy, server = ingress proxy), responses by status too,
// and the request duration histogram from the responses' latency.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Enricher } from '../observe/enrich.js';
import { l7Flow } from '../observe/l7.js';
import type { L7Record } from '../proxy/types.js';
import { countFlow } from './flows.js';
import { AgentMetrics } from './metrics.js';

const enricher = new Enricher({
  endpointByIfindex: () => undefined,
  endpointByIp: () => undefined,
  identityLabels: () => undefined,
  rule: () => undefined,
});

function rec(
  type: L7Record['type'],
  direction: L7Record['direction'],
  method: string,
  code?: number,
  latencyNs?: number,
): L7Record {
  return {
    timeNs: '1700000000000000000',
    type,
    direction,
    endpointId: 3,
    verdict: code === 403 ? 'DENIED' : 'FORWARDED',
    source: { ip: '10.244.0.2', port: 40000, identity: 257 },
    destination: { ip: '10.244.0.3', port: 80, identity: 256 },
    http: { method, url: 'http://x/', protocol: 'HTTP/1.1', headers: [], ...(code ? { code } : {}) },
    ...(latencyNs !== undefined ? { latencyNs } : {}),
  };
}

describe('hubble http metrics', () => {
  it('count requests, responses by status and their duration, with the reporter', async () => {
    const m = new AgentMetrics();
    const flows = [
      rec('REQUEST', 'ingress', 'GET'),
      rec('RESPONSE', 'ingress', 'GET', 200, 2_000_000),
      rec('REQUEST', 'ingress', 'GET'),
      rec('RESPONSE', 'ingress', 'GET', 403, 100_000),
      rec('REQUEST', 'egress', 'POST'),
      rec('RESPONSE', 'egress', 'POST', 503, 30_000_000),
    ].map((r) => l7Flow(r, { nodeName: 'n', enricher }));
    for (const f of flows) countFlow(m, f);
    const text = await m.registry.metrics();
    const line = (re: RegExp) => assert.match(text, re);
    line(/^hubble_http_requests_total\{method="GET",protocol="HTTP\/1\.1",reporter="server"\} 2$/m);
    line(/^hubble_http_requests_total\{method="POST",protocol="HTTP\/1\.1",reporter="client"\} 1$/m);
    line(
      /^hubble_http_responses_total\{method="GET",protocol="HTTP\/1\.1",status="200",reporter="server"\} 1$/m,
    );
    line(
      /^hubble_http_responses_total\{method="GET",protocol="HTTP\/1\.1",status="403",reporter="server"\} 1$/m,
    );
    line(
      /^hubble_http_responses_total\{method="POST",protocol="HTTP\/1\.1",status="503",reporter="client"\} 1$/m,
    );
    line(/^hubble_http_request_duration_seconds_count\{method="GET",reporter="server"\} 2$/m);
    line(/^hubble_http_request_duration_seconds_bucket\{le="0\.005",method="GET",reporter="server"\} 2$/m);
    line(/^hubble_http_request_duration_seconds_bucket\{le="0\.025",method="POST",reporter="client"\} 0$/m);
    line(/^hubble_http_request_duration_seconds_bucket\{le="0\.05",method="POST",reporter="client"\} 1$/m);
    line(/^hubble_http_request_duration_seconds_sum\{method="GET",reporter="server"\} 0\.0021$/m);
    line(/^hubble_flows_processed_total\{type="L7",subtype="",verdict="DROPPED"\} 1$/m);
    line(/^hubble_flows_processed_total\{type="L7",subtype="",verdict="FORWARDED"\} 5$/m);
  });
});
