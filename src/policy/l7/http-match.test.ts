// The HTTP matcher's semantics, item by item of conformance/l7/README.md (2-7) and Cilium's proxy:
// rule sets by identity, L4-only sets, OR over rules and AND over fields, anchored case-sensitive
// regexes, headers, headerMatches with every mismatch action, caching and failing closed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyHeaderOps,
  compileHttpPolicy,
  httpRuleProblems,
  judgeHttp,
  type HttpRequestInfo,
  type HttpVerdict,
} from './http-match.js';
import type { HttpRule, L7RuleOrigin, L7RuleSet, PortL7Policy } from './types.js';

const origin = (name: string, cookie = 1): L7RuleOrigin => ({
  kind: 'CiliumNetworkPolicy',
  namespace: 'x',
  name,
  cookie,
});
const O1 = origin('one', 1);
const O2 = origin('two', 2);

function port(ruleSets: L7RuleSet[]): PortL7Policy {
  return { protocol: 'TCP', port: 80, parser: 'http', proxyPort: 15001, ruleSets };
}
function set(http: HttpRule[] | undefined, o: L7RuleOrigin = O1, identities?: number[]): L7RuleSet {
  return identities ? { identities, http, origin: o } : { http, origin: o };
}
function req(method: string, path: string, headers: string[] = [], host = '10.0.0.2'): HttpRequestInfo {
  return { method, path, host, headers };
}
const allow = (v: HttpVerdict) => v.allowed;

describe('judgeHttp: rule sets by identity', () => {
  it('denies without a policy or without a rule set for the peer (fail closed)', () => {
    assert.deepEqual(
      [judgeHttp(undefined, 1, req('GET', '/')).allowed, judgeHttp(undefined, 1, req('GET', '/')).reason],
      [false, 'no_policy'],
    );
    const p = port([set([{}], O1, [100])]);
    const v = judgeHttp(p, 200, req('GET', '/'));
    assert.equal(v.allowed, false);
    assert.equal(v.reason, 'no_rule_set');
    assert.deepEqual(v.origins, [O1]);
    assert.equal(v.origin, O1);
  });

  it('checks a peer only against the sets whose identities include it (021)', () => {
    const p = port([set([{ path: '/a' }], O1, [100]), set([{ path: '/c' }], O2, [300])]);
    assert.equal(judgeHttp(p, 100, req('GET', '/a')).allowed, true);
    assert.equal(judgeHttp(p, 100, req('GET', '/c')).allowed, false);
    assert.equal(judgeHttp(p, 300, req('GET', '/c')).origin, O2);
    assert.equal(judgeHttp(p, 300, req('GET', '/a')).allowed, false);
  });

  it('allows everything when an applicable set has no HTTP rules (L4 overrides L7), not for others', () => {
    const p = port([set([{ method: 'GET' }], O1), set(undefined, O2, [7])]);
    const v = judgeHttp(p, 7, req('DELETE', '/x'));
    assert.deepEqual([v.allowed, v.reason, v.origin], [true, 'l4_allow', O2]);
    assert.equal(judgeHttp(p, 8, req('DELETE', '/x')).allowed, false);
    // An empty http list is no HTTP rule at all, as in Cilium's proxy.
    assert.equal(judgeHttp(port([set([])]), 1, req('PATCH', '/z')).allowed, true);
  });

  it('unions the rules of several sets and policies (020)', () => {
    const p = port([set([{ method: 'GET', path: '/a' }], O1), set([{ method: 'GET', path: '/b' }], O2)]);
    assert.equal(judgeHttp(p, 1, req('GET', '/a')).origin, O1);
    assert.equal(judgeHttp(p, 1, req('GET', '/b')).origin, O2);
    const d = judgeHttp(p, 1, req('GET', '/c'));
    assert.deepEqual([d.allowed, d.reason, d.origins], [false, 'no_rule_matched', [O1, O2]]);
  });
});

describe('judgeHttp: fields', () => {
  it('ORs rules and ANDs the fields of a rule; omitted fields do not constrain (010, 009)', () => {
    const p = port([
      set([
        { method: 'GET', path: '/path1$' },
        { method: 'PUT', path: '/path2$', headers: ['X-My-Header: true'] },
      ]),
    ]);
    const cases: [HttpRequestInfo, boolean][] = [
      [req('GET', '/path1'), true],
      [req('GET', '/path1/x'), false],
      [req('PUT', '/path2', ['X-My-Header', 'true']), true],
      [req('PUT', '/path2', ['x-my-header', 'true']), true],
      [req('PUT', '/path2'), false],
      [req('PUT', '/path2', ['X-My-Header', 'false']), false],
      [req('PUT', '/path2', ['X-My-Header', 'TRUE']), false],
      [req('GET', '/path2', ['X-My-Header', 'true']), false],
      [req('POST', '/path1'), false],
    ];
    for (const [r, want] of cases)
      assert.equal(allow(judgeHttp(p, 1, r)), want, `${r.method} ${r.path} ${r.headers}`);
    assert.equal(judgeHttp(port([set([{ path: '/only' }])]), 1, req('DELETE', '/only')).allowed, true);
  });

  it('an empty rule matches every request (022)', () => {
    const p = port([set([{}])]);
    for (const m of ['GET', 'POST', 'BREW'])
      assert.equal(judgeHttp(p, 1, req(m, '/anything?x=1')).allowed, true);
  });

  it('matches method, path and host as whole-value case-sensitive regexes (003, 007, 009, 017)', () => {
    const p = port([
      set([
        { method: 'PU' },
        { method: 'P(OST|ATCH)' },
        { path: '/v1/.*' },
        { host: 'foo.bar.com', method: 'GET' },
      ]),
    ]);
    assert.equal(judgeHttp(p, 1, req('PUT', '/')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('PATCH', '/')).allowed, true);
    assert.equal(judgeHttp(p, 1, req('post', '/')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/v1/x')).allowed, true);
    assert.equal(judgeHttp(p, 1, req('GET', '/v1')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/api/v1/x')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/', [], 'fooXbar.com')).allowed, true);
    assert.equal(judgeHttp(p, 1, req('GET', '/', [], 'foo.bar.com:80')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/', [], 'FOO.BAR.COM')).allowed, false);
  });

  it('matches the path with its query string, as sent', () => {
    const p = port([set([{ path: '/public' }, { path: '/q\\?a=1' }])]);
    assert.equal(judgeHttp(p, 1, req('GET', '/public?x=1')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/q?a=1')).allowed, true);
  });

  it('headers: presence, exact value, repeated fields joined by a comma, Cilium splitting at the first space', () => {
    const p = port([
      set([{ headers: ['X-Token'] }, { headers: ['X-Multi: a,b'] }, { headers: ['X-Sp: two words'] }]),
    ]);
    assert.equal(judgeHttp(p, 1, req('GET', '/', ['x-token', ''])).allowed, true);
    assert.equal(judgeHttp(p, 1, req('GET', '/', ['X-TOKEN', 'v'])).allowed, true);
    assert.equal(
      judgeHttp(p, 1, req('GET', '/', ['X-Multi', 'a', 'X-Other', '1', 'x-multi', 'b'])).allowed,
      true,
    );
    assert.equal(judgeHttp(p, 1, req('GET', '/', ['X-Multi', 'a'])).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/', ['X-Sp', 'two words'])).allowed, true);
    assert.equal(judgeHttp(p, 1, req('GET', '/')).allowed, false);
  });

  it('reads pseudo-headers from the request line, and the host header from the Host/:authority', () => {
    const p = port([set([{ headers: [':method: GET', 'host: svc'] }])]);
    assert.equal(judgeHttp(p, 1, req('GET', '/', [':method', 'GET'], 'svc')).allowed, true);
    assert.equal(judgeHttp(p, 1, req('POST', '/', [], 'svc')).allowed, false);
  });
});

describe('judgeHttp: headerMatches', () => {
  it('without mismatch: exact value or presence, a mismatch fails the rule (013)', () => {
    const p = port([
      set([
        { method: 'GET', headerMatches: [{ name: 'X-Token' }] },
        { headerMatches: [{ name: 'k', value: 'v' }] },
      ]),
    ]);
    assert.equal(judgeHttp(p, 1, req('GET', '/', ['x-token', 'anything'])).allowed, true);
    const d = judgeHttp(p, 1, req('GET', '/'));
    assert.equal(d.allowed, false);
    assert.deepEqual(d.mismatches, [
      { name: 'x-token', action: 'FAIL' },
      { name: 'k', action: 'FAIL' },
    ]);
    assert.equal(judgeHttp(p, 1, req('PUT', '/', ['K', 'v'])).allowed, true);
    assert.equal(judgeHttp(p, 1, req('PUT', '/', ['K', 'V'])).allowed, false);
  });

  it('LOG forwards unchanged and notes the mismatch (014)', () => {
    const p = port([
      set([{ method: 'GET', headerMatches: [{ name: 'X-Token', value: 'abc', mismatch: 'LOG' }] }]),
    ]);
    const v = judgeHttp(p, 1, req('GET', '/', ['X-Token', 'nope']));
    assert.deepEqual([v.allowed, v.ops, v.mismatches], [true, [], [{ name: 'x-token', action: 'LOG' }]]);
    const ok = judgeHttp(p, 1, req('GET', '/', ['X-Token', 'abc']));
    assert.deepEqual([ok.allowed, ok.mismatches], [true, []]);
    assert.equal(judgeHttp(p, 1, req('POST', '/', ['X-Token', 'abc'])).allowed, false);
  });

  it('REPLACE sets the header (added when missing) and allows (015)', () => {
    const p = port([
      set([
        {
          method: 'POST',
          path: '/auth-header-required$',
          headerMatches: [{ name: 'Authorization', mismatch: 'REPLACE', value: 'Bearer 123456' }],
        },
      ]),
    ]);
    for (const h of [[], ['Authorization', 'Bearer wrong'], ['authorization', 'a', 'Authorization', 'b']]) {
      const v = judgeHttp(p, 1, req('POST', '/auth-header-required', h));
      assert.equal(v.allowed, true);
      assert.deepEqual(v.ops, [{ op: 'set', name: 'authorization', value: 'Bearer 123456' }]);
      assert.deepEqual(applyHeaderOps(['Accept', '*/*', ...h], v.ops), [
        'Accept',
        '*/*',
        'authorization',
        'Bearer 123456',
      ]);
    }
    const right = judgeHttp(p, 1, req('POST', '/auth-header-required', ['Authorization', 'Bearer 123456']));
    assert.deepEqual([right.allowed, right.ops], [true, []]);
    assert.equal(judgeHttp(p, 1, req('GET', '/auth-header-required')).allowed, false);
  });

  it('DELETE removes a header present with another value; nothing when absent or presence-only', () => {
    const p = port([
      set([
        {
          headerMatches: [
            { name: 'X-Debug', value: 'on', mismatch: 'DELETE' },
            { name: 'X-P', mismatch: 'DELETE' },
          ],
        },
      ]),
    ]);
    const v = judgeHttp(p, 1, req('GET', '/', ['X-Debug', 'off', 'A', '1']));
    assert.deepEqual([v.allowed, v.ops], [true, [{ op: 'delete', name: 'x-debug' }]]);
    assert.deepEqual(applyHeaderOps(['X-Debug', 'off', 'A', '1'], v.ops), ['A', '1']);
    const none = judgeHttp(p, 1, req('GET', '/'));
    assert.deepEqual([none.allowed, none.ops], [true, []]);
  });

  it('ADD appends the value beside the present ones', () => {
    const p = port([set([{ headerMatches: [{ name: 'X-Tag', value: 'mesh', mismatch: 'ADD' }] }])]);
    const v = judgeHttp(p, 1, req('GET', '/', ['X-Tag', 'app']));
    assert.deepEqual(v.ops, [{ op: 'add', name: 'x-tag', value: 'mesh' }]);
    assert.deepEqual(applyHeaderOps(['X-Tag', 'app'], v.ops), ['X-Tag', 'app', 'x-tag', 'mesh']);
    assert.deepEqual(judgeHttp(p, 1, req('GET', '/', ['X-Tag', 'mesh'])).ops, []);
  });

  it('evaluates every rule when some rule has headerMatches; operations take effect in order', () => {
    const p = port([
      set([{ path: '/a' }], O1),
      set([{ headerMatches: [{ name: 'X-Id', value: 'proxy', mismatch: 'REPLACE' }] }], O2),
      set(
        [{ headers: ['X-Id: proxy'], headerMatches: [{ name: 'X-Seen', value: '1', mismatch: 'ADD' }] }],
        O2,
      ),
    ]);
    const v = judgeHttp(p, 1, req('GET', '/a', ['X-Id', 'client']));
    assert.equal(v.origin, O1, 'the first allowing set decides the origin');
    assert.deepEqual(v.ops, [
      { op: 'set', name: 'x-id', value: 'proxy' },
      { op: 'add', name: 'x-seen', value: '1' },
    ]);
    // An L4-only set allows, and header operations of other rules still run.
    const q = port([
      set(undefined, O1),
      set([{ headerMatches: [{ name: 'X-Id', value: 'p', mismatch: 'REPLACE' }] }], O2),
    ]);
    const w = judgeHttp(q, 1, req('GET', '/'));
    assert.deepEqual([w.allowed, w.reason, w.origin, w.ops.length], [true, 'l4_allow', O1, 1]);
  });
});

describe('compileHttpPolicy', () => {
  it('compiles once per policy object and once per identity', () => {
    const p = port([set([{ path: '/x.*' }], O1, [5]), set([{ method: 'GET' }], O2)]);
    const c = compileHttpPolicy(p);
    assert.equal(compileHttpPolicy(p), c);
    assert.equal(c.plan(5), c.plan(5));
    assert.equal(c.plan(5).sets.length, 2);
    assert.equal(c.plan(6).sets.length, 1);
  });

  it('a rule with an invalid field never matches (fail closed) and is reported', () => {
    const p = port([set([{ path: '(' }, { method: 'GET', headers: ['X-Key:value'] }, { method: 'PUT' }])]);
    const c = compileHttpPolicy(p);
    assert.deepEqual(
      c.problems.map((x) => [x.rule, x.field]),
      [
        [0, 'path'],
        [1, 'headers[0]'],
      ],
    );
    assert.equal(judgeHttp(p, 1, req('GET', '(')).allowed, false);
    assert.equal(judgeHttp(p, 1, req('GET', '/', ['X-Key', 'value'])).allowed, false);
    assert.equal(judgeHttp(p, 1, req('PUT', '/')).allowed, true);
  });

  it('httpRuleProblems names each bad field', () => {
    assert.deepEqual(httpRuleProblems({ method: 'GET', path: '/v1/.*' }), []);
    assert.deepEqual(
      httpRuleProblems({
        method: '[',
        headerMatches: [{ name: 'bad name' }, { name: 'ok', mismatch: 'REPLACE' }],
      }).map((p) => p.field),
      ['method', 'headerMatches[0].name', 'headerMatches[1].value'],
    );
    assert.deepEqual(
      httpRuleProblems({
        headerMatches: [{ name: 'x', value: 'a\r\nInjected: 1', mismatch: 'REPLACE' }],
      }).map((p) => p.field),
      ['headerMatches[0].value'],
    );
  });
});
