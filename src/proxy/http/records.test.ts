// Records, the access-log line, header selection and limits validation of the HTTP engine.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isCode } from '../../shared/errors.js';
import type { L7Record } from '../types.js';
import { forwardRequestHeaders, recordHeaders, relayResponseHeaders } from './headers.js';
import { defaultHttpLimits, resolveLimits } from './limits.js';
import { formatAccessLog, recordUrl, wallNs } from './records.js';

describe('records', () => {
  it('formats an Envoy-like access-log line', () => {
    const r: L7Record = {
      timeNs: '1790000000123456789',
      type: 'RESPONSE',
      direction: 'ingress',
      endpointId: 7,
      verdict: 'DENIED',
      source: { ip: '10.0.0.1', port: 40000, identity: 1000 },
      destination: { ip: '10.0.0.2', port: 80, identity: 2000 },
      http: { method: 'PUT', url: 'http://svc/x', protocol: 'HTTP/1.1', code: 403, headers: [] },
      latencyNs: 1_500_000,
      policy: { kind: 'CiliumNetworkPolicy', namespace: 'x', name: 'l7', cookie: 3 },
      detail: 'l7_policy_denied',
    };
    assert.equal(
      formatAccessLog(r),
      '2026-09-21T14:13:20.123Z ingress RESPONSE DENIED "PUT http://svc/x HTTP/1.1" 403 10.0.0.1:40000(1000) -> ' +
        '10.0.0.2:80(2000) 1.500ms policy="CNP x/l7" detail=l7_policy_denied',
    );
    const bare: L7Record = {
      ...r,
      type: 'REQUEST',
      latencyNs: undefined,
      policy: undefined,
      detail: undefined,
    };
    delete bare.http!.code;
    assert.match(formatAccessLog(bare), /"PUT http:\/\/svc\/x HTTP\/1\.1" - .* - policy=- detail=-$/);
  });

  it('gives performance.now() values as exact wall-clock ns (timeOrigin + t)', () => {
    // The exact sum, in BigInt, of timeOrigin and t, each rounded to whole ns as wallNs does.
    const originMs = Math.floor(performance.timeOrigin);
    const originNs = Math.min(999_999, Math.round((performance.timeOrigin - originMs) * 1e6));
    const exact = (t: number) => {
      const whole = Math.floor(t);
      return (
        BigInt(originMs + whole) * 1_000_000n +
        BigInt(originNs) +
        BigInt(Math.round((t - whole) * 1e6))
      ).toString();
    };
    const ts = [0, 0.000001, 0.000999, 0.001, 0.5, 0.999999, 1, 12.3456789, 999.999999, performance.now()];
    for (let i = 0; i < 2000; i++) ts.push(Math.random() * 1e7);
    for (const t of ts) assert.equal(wallNs(t), exact(t), `t=${t}`);
  });

  it('builds Hubble-style URLs', () => {
    assert.equal(recordUrl('http', 'svc:8080', '/a?b=1'), 'http://svc:8080/a?b=1');
    assert.equal(recordUrl('http', 'svc', 'http://other/x'), 'http://other/x');
    assert.equal(recordUrl('http', 'svc', '*'), 'http://svc/*');
  });

  it('redacts credentials and bounds what records carry', () => {
    const raw = [
      'Authorization',
      'Bearer x',
      'Cookie',
      'a=b',
      'Proxy-Authorization',
      'Basic y',
      'X-Long',
      'v'.repeat(1000),
    ];
    for (let i = 0; i < 40; i++) raw.push(`X-${i}`, 'v');
    const h = recordHeaders([':path', '/x', ...raw]);
    assert.equal(h.length, 32);
    assert.deepEqual(h.slice(0, 3), [
      { key: 'authorization', value: '[redacted]' },
      { key: 'cookie', value: '[redacted]' },
      { key: 'proxy-authorization', value: '[redacted]' },
    ]);
    assert.equal(h[3]!.value.length, 256);
  });
});

describe('headers', () => {
  it('drops hop-by-hop fields and the ones Connection names (never Host) and applies header operations', () => {
    const out = forwardRequestHeaders(
      [
        'Host',
        'svc',
        'Connection',
        'close, X-A, host',
        'X-A',
        '1',
        'Keep-Alive',
        '5',
        'TE',
        'trailers',
        'X-B',
        '2',
      ],
      [{ op: 'set', name: 'x-b', value: '3' }],
    );
    assert.deepEqual(out, ['Host', 'svc', 'x-b', '3']);
  });

  it('relays response fields without hop-by-hop ones; keeps Upgrade/Connection on a 101', () => {
    const raw = [
      'Content-Type',
      'text/plain',
      'Transfer-Encoding',
      'chunked',
      'Connection',
      'Upgrade',
      'Upgrade',
      'websocket',
    ].map((s) => Buffer.from(s));
    assert.deepEqual(relayResponseHeaders(raw), ['Content-Type', 'text/plain']);
    assert.deepEqual(relayResponseHeaders(raw, true), [
      'Content-Type',
      'text/plain',
      'Connection',
      'Upgrade',
      'Upgrade',
      'websocket',
    ]);
  });
});

describe('limits', () => {
  it('fills defaults and rejects bad values naming the field', () => {
    assert.equal(resolveLimits({ maxConcurrentStreams: 7 }).maxConcurrentStreams, 7);
    assert.equal(resolveLimits(undefined).maxHeaderBytes, defaultHttpLimits.maxHeaderBytes);
    assert.throws(
      () => resolveLimits({ idleTimeoutMs: 0 }),
      (e: unknown) => isCode(e, 'ERR_PROXY_LIMITS') && (e as Error).message.includes('limits.idleTimeoutMs'),
    );
    assert.throws(() => resolveLimits({ maxUriBytes: 70_000 }), /maxUriBytes must be below/);
    assert.throws(() => resolveLimits({ headersTimeoutMs: 400_000 }), /headersTimeoutMs must not exceed/);
  });
});
