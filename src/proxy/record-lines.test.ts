// The records stream's lines (records.ts recordLine): an HTTP record goes as a compact line unless a
// field holds what a compact line cannot carry (a tab, a newline, a lone surrogate): then as JSON.
// Either way the line reads back as the same record.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMPACT_HTTP, parseRecordLine, recordLine } from './records.js';
import type { L7Record } from './types.js';

const base: L7Record = {
  timeNs: '1764800000123456789',
  type: 'RESPONSE',
  direction: 'egress',
  endpointId: 12,
  verdict: 'FORWARDED',
  source: { ip: '10.0.0.1', port: 40000, identity: 1000 },
  destination: { ip: '10.0.0.2', port: 8080, identity: 2000 },
  http: {
    method: 'GET',
    url: 'http://server/a?b=c',
    protocol: 'HTTP/1.1',
    code: 200,
    headers: [{ key: 'content-type', value: 'text/plain' }],
  },
  latencyNs: 1234,
  policy: { kind: 'CiliumNetworkPolicy', namespace: 'default', name: 'l7', cookie: 3 },
  detail: 'upgraded',
};

const withHttp = (h: Partial<NonNullable<L7Record['http']>>, rest: Partial<L7Record> = {}): L7Record => ({
  ...base,
  ...rest,
  http: { ...base.http!, ...h },
});

function roundTrip(r: L7Record): string {
  const line = recordLine(r);
  assert.deepEqual(parseRecordLine(line), { record: r });
  return line;
}

describe('record lines', () => {
  it('an HTTP record is a compact line', () => {
    assert.equal(roundTrip(base)[0], COMPACT_HTTP);
    // Paired surrogates (an emoji) are fine in a compact line.
    assert.equal(roundTrip(withHttp({ url: 'http://server/\u{1F600}' }))[0], COMPACT_HTTP);
  });

  it('a tab, a newline or a lone surrogate in any field makes it a JSON line', () => {
    const cases: L7Record[] = [
      withHttp({ url: 'http://server/a\tb' }),
      withHttp({ url: 'http://server/a\nb' }),
      withHttp({ method: 'G\tET' }),
      withHttp({ headers: [{ key: 'x-a', value: 'v\tw' }] }),
      withHttp({ headers: [{ key: 'x\na', value: 'v' }] }),
      withHttp({ headers: [{ key: 'x-a', value: 'lone \ud800 high' }] }),
      withHttp({ headers: [{ key: 'x-a', value: 'lone \udc00 low' }] }),
      // A paired surrogate before a tab in the same field: the tab still counts.
      withHttp({ url: 'http://server/\u{1F600}\tx' }),
      withHttp({}, { detail: 'a\tb' }),
      withHttp({}, { detail: 'a\nb' }),
      withHttp(
        {},
        { policy: { kind: 'CiliumNetworkPolicy', namespace: 'default', name: 'n\tm', cookie: 1 } },
      ),
      withHttp({}, { source: { ip: '10.0.0.1\t', port: 1, identity: 2 } }),
      withHttp({}, { timeNs: '17648\n' }),
    ];
    for (const r of cases) {
      const line = recordLine(r);
      assert.ok(line.startsWith('{"record":'), `JSON for ${JSON.stringify(r)}: ${line}`);
      assert.ok(!line.includes('\n'), 'one line');
      assert.deepEqual(parseRecordLine(line), { record: r });
    }
  });
});
