// The error catalogue stays the one source: sorted, documented (docs/errors.md is what it
// generates), every entry used by some source, and every code a source names declared.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { errorFromWire, ValidationError, WeirError } from './errors.js';
import { errorCodes, httpStatus, isErrorCode } from './error-codes.js';
import { errorsDocPath, errorsMarkdown } from './error-docs.js';
import { repoRoot } from './paths.js';

const declared = Object.keys(errorCodes);

/** Every .ts file under the given folders of the checkout. */
function sources(...dirs: string[]): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts'))
        out.push({ path: relative(repoRoot, p), text: readFileSync(p, 'utf8') });
    }
  };
  for (const d of dirs) walk(join(repoRoot, d));
  return out;
}

/** The text without // and /* *\/ comments (a code named only in a comment is not a use). */
const code = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');

describe('error catalogue', () => {
  it('is sorted, and every key is ERR_<AREA>_<WHAT> with a meaning', () => {
    assert.deepEqual(declared, [...declared].sort(), 'keep src/shared/error-codes.ts sorted by code');
    for (const [k, v] of Object.entries(errorCodes)) {
      assert.match(k, /^ERR_[A-Z0-9]+(_[A-Z0-9]+)*$/);
      assert.ok(v.meaning.length > 10, `${k} needs a meaning`);
    }
  });

  it('docs/errors.md is what the catalogue generates (make docs rewrites it)', () => {
    const onDisk = readFileSync(errorsDocPath, 'utf8');
    assert.equal(onDisk, errorsMarkdown(), 'docs/errors.md is stale: run `make docs`');
    for (const k of declared) assert.ok(onDisk.includes(`| \`${k}\` |`), `${k} is missing in docs/errors.md`);
  });

  it('has no dead entries: every code is used by a source in src/ or bench/ (tests do not count)', () => {
    const files = sources('src', 'bench').filter(
      (f) => !f.path.endsWith('.test.ts') && f.path !== join('src', 'shared', 'error-codes.ts'),
    );
    const used = new Set(files.flatMap((f) => code(f.text).match(/\bERR_[A-Z0-9_]+\b/g) ?? []));
    assert.deepEqual(
      declared.filter((k) => !used.has(k)),
      [],
      'declared in error-codes.ts but used nowhere',
    );
  });

  it('declares every code a source or test names as a string', () => {
    const named = new Map<string, string>();
    for (const f of sources('src', 'bench', 'test'))
      for (const m of f.text.matchAll(/['"`](ERR_[A-Z0-9]+(?:_[A-Z0-9]+)+)['"`]/g))
        if (m[1] && !named.has(m[1])) named.set(m[1], f.path);
    const undeclared = [...named].filter(([k]) => !isErrorCode(k)).map(([k, f]) => `${k} (${f})`);
    assert.deepEqual(undeclared, []);
  });

  it('gives the agent API status of a code (400 unless declared)', () => {
    assert.equal(httpStatus('ERR_API_NOT_FOUND'), 404);
    assert.equal(httpStatus('ERR_K8S_FIELD_INVALID'), 400);
    assert.equal(httpStatus('ERR_INTERNAL'), 500);
  });
});

describe('errorFromWire', () => {
  it('keeps a declared code and location, and lists problems', () => {
    const e = errorFromWire({
      code: 'ERR_K8S_NAMESPACE_NOT_FOUND',
      message: 'x',
      problems: [
        { code: 'ERR_K8S_NAMESPACE_NOT_FOUND', message: 'namespaces "a" not found', location: { file: 'f' } },
        { code: 'ERR_POLICY_FIELD_UNKNOWN', message: 'unknown field', location: { field: 'spec.x' } },
      ],
    });
    assert.ok(e instanceof ValidationError);
    assert.deepEqual(
      e.problems.map((p) => [p.code, p.toString()]),
      [
        ['ERR_K8S_NAMESPACE_NOT_FOUND', 'f: namespaces "a" not found'],
        ['ERR_POLICY_FIELD_UNKNOWN', 'spec.x: unknown field'],
      ],
    );
  });

  it('turns a code this build does not declare into ERR_AGENT_BAD_ANSWER, naming it', () => {
    const future = ['ERR', 'FROM', 'THE', 'FUTURE'].join('_'); // not a literal: the test above scans them
    const e = errorFromWire({ code: future, message: 'something new' });
    assert.ok(e instanceof WeirError);
    assert.equal(e.code, 'ERR_AGENT_BAD_ANSWER');
    assert.equal(e.message, 'ERR_FROM_THE_FUTURE: something new');
  });
});
