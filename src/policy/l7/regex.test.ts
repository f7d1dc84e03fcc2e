// L7 regular expressions: RE2 syntax, anchored, case-sensitive, linear time; the string fast paths
// agree with the RE2 engine on every pattern they take.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RE2JS } from 're2js';
import { isCode } from '../../shared/errors.js';
import { compileL7Regex, l7RegexProblem } from './regex.js';

describe('compileL7Regex', () => {
  it('matches the whole value (anchored), case-sensitively', () => {
    const cases: [string, string, boolean][] = [
      ['/public', '/public', true],
      ['/public', '/public/', false],
      ['/public', '/publicity', false],
      ['/public', '/x/public', false],
      ['/v1/.*', '/v1/', true],
      ['/v1/.*', '/v1/x/y?z=1', true],
      ['/v1/.*', '/v1', false],
      ['/v1/.*', '/api/v1/x', false],
      ['PU', 'PUT', false],
      ['get', 'GET', false],
      ['P(OST|ATCH)', 'POST', true],
      ['P(OST|ATCH)', 'PATCH', true],
      ['P(OST|ATCH)', 'PUT', false],
      ['GET|HEAD', 'HEAD', true],
      ['GET|HEAD', 'GETHEAD', false],
      ['/docs/[0-9]+', '/docs/42', true],
      ['/docs/[0-9]+', '/docs/', false],
      ['/docs/[0-9]+', '/docs/4a', false],
      ['foo.bar.com', 'fooXbar.com', true],
      ['api\\.example\\.com', 'api.example.com', true],
      ['api\\.example\\.com', 'apiXexample.com', false],
      ['/path1$', '/path1', true],
      ['^/path1', '/path1', true],
      ['/a|/b', '/b', true],
      ['/a|/b', '/a|/b', false],
      ['\\d+', '123', true],
      ['(?i)get', 'GET', true],
      ['.*', '', true],
      ['/x.*', '/x\ny', false],
      ['', '', true],
      ['', 'x', false],
    ];
    for (const [p, s, want] of cases) assert.equal(compileL7Regex(p).test(s), want, `'${p}' on '${s}'`);
  });

  it('takes string fast paths for literals, literal prefixes and literal alternations only', () => {
    assert.equal(compileL7Regex('/public').kind, 'literal');
    assert.equal(compileL7Regex('api\\.example\\.com').kind, 'literal');
    assert.equal(compileL7Regex('/v1/.*').kind, 'prefix');
    assert.equal(compileL7Regex('GET|POST|PUT').kind, 'literals');
    assert.equal(compileL7Regex('P(OST|ATCH)').kind, 're2');
    assert.equal(compileL7Regex('/v1\\.*').kind, 're2');
    assert.equal(compileL7Regex('/a\\d').kind, 're2');
  });

  it('agrees with the RE2 engine on every fast-path pattern', () => {
    const patterns = ['/public', '/v1/.*', 'GET|HEAD|', 'a\\.b', 'a\\|b', '/x\\.y.*', '\\*', 'x.*', '|'];
    const inputs = [
      '',
      '/public',
      '/public/',
      '/v1/',
      '/v1/a\nb',
      'GET',
      'HEAD',
      'a.b',
      'aXb',
      'a|b',
      '/x.yz',
      '*',
      'x',
      'xx\n',
      '|',
    ];
    for (const p of patterns) {
      const re = compileL7Regex(p);
      assert.notEqual(re.kind, 're2', p);
      const engine = RE2JS.compile(p);
      for (const s of inputs) assert.equal(re.test(s), engine.matches(s), `'${p}' on ${JSON.stringify(s)}`);
    }
  });

  it('uses RE2 syntax: lookarounds and backreferences are errors with a stable code', () => {
    for (const p of ['(?=x)', '(a)\\1', '[z-a]', '(', 'a**']) {
      assert.throws(
        () => compileL7Regex(p),
        (e: unknown) => isCode(e, 'ERR_POLICY_L7_REGEX') && (e as Error).message.includes(p),
      );
      assert.ok(l7RegexProblem(p));
    }
    assert.equal(l7RegexProblem('/v1/.*'), undefined);
  });

  it('runs in linear time on patterns that make backtracking engines explode', () => {
    const t0 = performance.now();
    assert.equal(compileL7Regex('(a+)+$').test('a'.repeat(50_000) + '!'), false);
    assert.equal(compileL7Regex('(x+x+)+y').test('x'.repeat(50_000)), false);
    assert.equal(compileL7Regex('(.*a){12}').test('a'.repeat(5_000)), true);
    assert.ok(performance.now() - t0 < 2_000, `took ${performance.now() - t0} ms`);
  });

  it('caches compiled expressions by pattern', () => {
    assert.equal(compileL7Regex('/cached/[a-z]+'), compileL7Regex('/cached/[a-z]+'));
  });
});
