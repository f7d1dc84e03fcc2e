// The access-log file: one JSON line per request with Envoy's field names, private modes, and a
// size bound (rotation to .1, .2; never more than keep + 1 files).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AccessLog, accessLine, renderAccess } from './access-log.js';
import type { AccessRecord } from './types.js';

const dir = mkdtempSync(join(tmpdir(), 'weir-access-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const entry = (n: number, o: Partial<AccessRecord> = {}): AccessRecord => ({
  startNs: '1790000000123456789',
  durationNs: 1_234_567,
  direction: 'ingress',
  endpoint: { id: 3, namespace: 'app', pod: 'server' },
  source: { ip: '10.244.0.2', port: 40000 + n, identity: 1000 },
  destination: { ip: '10.244.0.3', port: 80, identity: 2000 },
  protocol: 'HTTP/1.1',
  method: 'GET',
  path: `/public/${n}`,
  authority: '10.244.0.3',
  code: 200,
  verdict: 'FORWARDED',
  flags: [],
  bytesReceived: 0,
  bytesSent: 7,
  upstream: { ip: '10.244.0.3', port: 80 },
  policy: { kind: 'CiliumNetworkPolicy', namespace: 'app', name: 'web', cookie: 4 },
  httpRule: 0,
  ...o,
});

describe('access log', () => {
  it('a line has Envoy-like fields', () => {
    assert.deepEqual(accessLine(entry(1, { userAgent: 'curl/8', flags: ['UC', 'DC'] })), {
      start_time: '2026-09-21T14:13:20.123Z',
      direction: 'ingress',
      endpoint: 'app/server',
      method: 'GET',
      path: '/public/1',
      authority: '10.244.0.3',
      protocol: 'HTTP/1.1',
      response_code: 200,
      response_flags: 'UC,DC',
      response_code_details: '-',
      bytes_received: 0,
      bytes_sent: 7,
      duration_ms: 1.235,
      upstream_host: '10.244.0.3:80',
      downstream_remote_address: '10.244.0.2:40001',
      source_identity: 1000,
      destination_identity: 2000,
      verdict: 'FORWARDED',
      policy: 'CiliumNetworkPolicy app/web',
      http_rule: 0,
      user_agent: 'curl/8',
    });
    const denied = accessLine(
      entry(2, {
        code: 403,
        verdict: 'DENIED',
        detail: 'l7_policy_denied',
        upstream: undefined,
        httpRule: undefined,
        source: { ip: 'fd00::2', port: 5, identity: 1 },
      }),
    );
    assert.equal(denied.upstream_host, '-');
    assert.equal(denied.downstream_remote_address, '[fd00::2]:5');
    assert.equal(denied.response_code_details, 'l7_policy_denied');
    assert.equal('http_rule' in denied, false);
  });

  it("a rendered line is pino's: level, time, then the fields of accessLine in order, byte for byte", () => {
    const odd = 'q="a\\b"\t\u0001\u00e9\u{1f600}\ud800x';
    const entries = [
      entry(1),
      entry(2, {
        userAgent: odd,
        requestId: 'r-1',
        flags: ['UF'],
        detail: 'upstream_reset',
        upstream: undefined,
      }),
      entry(3, {
        method: '',
        path: '',
        authority: '',
        policy: undefined,
        httpRule: undefined,
        source: { ip: 'fd00::2', port: 1, identity: 2 },
        startNs: 'not-a-number',
        durationNs: Number.NaN,
      }),
      entry(4, {
        path: `/${odd}`,
        authority: odd,
        policy: { kind: 'CiliumClusterwideNetworkPolicy', name: 'x', cookie: 1 },
      }),
      entry(5, { startNs: '999' }),
    ];
    for (const e of entries) {
      const before = Date.now();
      const line = renderAccess(e);
      assert.ok(line.endsWith('}\n'));
      const m = /^\{"level":"info","time":"([^"]+)",(.*)\n$/s.exec(line);
      assert.ok(m, line);
      const time = Date.parse(m[1] as string);
      assert.ok(time >= before - 1 && time <= Date.now() + 1, m[1]);
      const expected = accessLine(e);
      if (e.startNs === 'not-a-number') {
        // An unreadable start time is shown as the time of writing.
        expected.start_time = (JSON.parse(`{${m[2]}`) as { start_time: string }).start_time;
        assert.ok(Math.abs(Date.parse(expected.start_time) - time) < 1000);
      }
      assert.equal(`{${m[2]}`, JSON.stringify(expected));
    }
  });

  it('writes JSON lines to a root-only file', async () => {
    const path = join(dir, 'a', 'proxy-access.log');
    const log = new AccessLog({ path, sync: true });
    log.write(entry(1));
    await new Promise((r) => setTimeout(r, 20));
    log.write(entry(2, { code: 403, verdict: 'DENIED' }));
    log.close();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.equal(lines.length, 2);
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(a?.path, '/public/1');
    assert.equal(b?.response_code, 403);
    assert.equal(a?.level, 'info');
    assert.ok(Math.abs(Date.parse(a?.time as string) - Date.now()) < 5000, 'the time it was written');
    assert.ok(Date.parse(b?.time as string) > Date.parse(a?.time as string), 'each line its own time');
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'a')).mode & 0o777, 0o700);
    assert.deepEqual(log.stats(), { lines: 2, errors: 0, rotations: 0 });
  });

  it('is bounded in size: rotated to .1 and .2, the oldest dropped', () => {
    const path = join(dir, 'b', 'proxy-access.log');
    const log = new AccessLog({ path, sync: true, maxBytes: 2000, keep: 2 });
    const n = 100;
    for (let i = 0; i < n; i++) log.write(entry(i));
    log.close();
    const files = readdirSync(join(dir, 'b')).sort();
    assert.deepEqual(files, ['proxy-access.log', 'proxy-access.log.1', 'proxy-access.log.2']);
    for (const f of files) {
      assert.ok(statSync(join(dir, 'b', f)).size <= 2000 + 600, `${f} stays near its bound`);
      assert.equal(statSync(join(dir, 'b', f)).mode & 0o777, 0o600, `${f} is private`);
    }
    assert.ok(log.stats().rotations > 2);
    // The newest lines, across .2, .1 and the current file, in order: none torn, none lost.
    const nums = [`${path}.2`, `${path}.1`, path].flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => Number((JSON.parse(l) as { path: string }).path.split('/')[2])),
    );
    assert.equal(nums[nums.length - 1], n - 1);
    assert.ok(nums.length >= 5, 'a few files of lines are kept');
    nums.forEach((v, i) => i > 0 && assert.equal(v, nums[i - 1]! + 1, 'consecutive'));
  });
});
