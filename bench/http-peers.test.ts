// The L7 benchmark's parsers, on outputs of Debian's wrk 4.1 and h2load 1.52.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseH2load, parseWrk } from './http-peers.js';

const wrkOut = `Running 2s test @ http://10.99.0.2:80/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms    1.26ms  17.53ms   93.09%
    Req/Sec    18.13k     1.71k   20.48k    75.00%
  Latency Distribution
     50%  698.00us
     75%    1.06ms
     90%    1.74ms
     99%    7.61ms
  36075 requests in 2.00s, 7.54MB read
Requests/sec:  18036.14
Transfer/sec:      3.77MB
`;

describe('bench http peers', () => {
  it('reads wrk: requests/s, p50 and p99 in ms whatever the unit, no errors', () => {
    assert.deepEqual(parseWrk(wrkOut), { requestsPerSecond: 18036.14, p50Ms: 0.698, p99Ms: 7.61, errors: 0 });
  });

  it('counts wrk socket errors and non-2xx answers', () => {
    const out = wrkOut.replace(
      'Requests/sec',
      '  Socket errors: connect 2, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec',
    );
    assert.equal(parseWrk(out).errors, 10);
  });

  it('refuses wrk output without a latency distribution', () => {
    assert.throws(() => parseWrk('Requests/sec: 10\n'), { code: 'ERR_BENCH_OUTPUT' });
  });

  it('reads h2load: requests/s and errors from its summary, percentiles from its request log', () => {
    const out = `finished in 2.00s, 23895.00 req/s, 1.49MB/s
requests: 47790 total, 47870 started, 47790 done, 47790 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 47790 2xx, 0 3xx, 0 4xx, 0 5xx
`;
    const log = Array.from({ length: 100 }, (_, i) => `1764694000000000\t200\t${(i + 1) * 100}`).join('\n');
    const r = parseH2load(out, log);
    assert.equal(r.requestsPerSecond, 23895);
    assert.equal(r.errors, 0);
    assert.equal(r.p50Ms, 5);
    assert.equal(r.p99Ms, 9.9);
    const bad = out.replace('0 failed', '3 failed').replace('0 5xx', '2 5xx');
    assert.equal(parseH2load(bad, log).errors, 5);
  });
});
