// The regular expressions of L7 HTTP rules (`method`, `path`, `host`), with Envoy's `safe_regex`
// semantics: RE2 syntax, matched against the WHOLE value (anchored), case-sensitive, in time linear
// in the input whatever the pattern — a policy author or a request cannot make the proxy backtrack.
//
// Engine: re2js (a pure-JS port of RE2; no native build). Patterns that are plain literals, a literal
// followed by `.*`, or an alternation of literals (the usual `GET`, `/public`, `/v1/.*`, `GET|HEAD`)
// skip the engine and compare strings, with exactly the semantics RE2 would give them. Compiled
// expressions are cached by pattern text, so a snapshot that repeats a pattern compiles it once.
import { RE2JS } from 're2js';
import { WeirError } from '../../shared/errors.js';

export interface L7Regex {
  readonly pattern: string;
  /** How the pattern is evaluated: string comparisons or the RE2 engine. */
  readonly kind: 'literal' | 'prefix' | 'literals' | 're2';
  /** True when the pattern matches the whole of `s`. */
  test(s: string): boolean;
}

const cache = new Map<string, L7Regex>();
/** Patterns come from policies; the cache is cleared when a flood of distinct patterns fills it. */
const CACHE_MAX = 10_000;

/** RE2 metacharacters: a pattern without them (unescaped) is a literal. */
const META = new Set(['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$']);

/**
 * Compiles (or returns the cached) anchored RE2 expression `pattern`. Throws
 * ERR_POLICY_L7_REGEX when RE2 rejects the pattern.
 */
export function compileL7Regex(pattern: string): L7Regex {
  let re = cache.get(pattern);
  if (re) return re;
  re = build(pattern);
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(pattern, re);
  return re;
}

/** The problem with `pattern` as an L7 regular expression, or undefined when RE2 accepts it. */
export function l7RegexProblem(pattern: string): string | undefined {
  try {
    compileL7Regex(pattern);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function build(pattern: string): L7Regex {
  const fast = literalForm(pattern);
  if (fast) return fast;
  let engine: RE2JS;
  try {
    engine = RE2JS.compile(pattern);
  } catch (err) {
    throw new WeirError(
      'ERR_POLICY_L7_REGEX',
      `invalid regular expression '${pattern}': ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return { pattern, kind: 're2', test: (s) => engine.matches(s) };
}

/**
 * The literal text of `src` when it has no unescaped metacharacter (an escaped punctuation
 * character, like `\.`, is that character), else undefined.
 */
function unescapeLiteral(src: string): string | undefined {
  let out = '';
  for (let i = 0; i < src.length; i++) {
    const c = src[i] as string;
    if (c === '\\') {
      const n = src[i + 1];
      // RE2: a backslash before any ASCII punctuation is that character; before a letter or digit
      // it is a class, an assertion or an escape sequence (left to the engine).
      if (n === undefined || !/^[!-/:-@[-`{-~]$/.test(n)) return undefined;
      out += n;
      i++;
    } else if (META.has(c)) {
      return undefined;
    } else {
      out += c;
    }
  }
  return out;
}

/** Splits `src` at its unescaped top-level `|` (undefined when it has groups or classes). */
function splitAlternatives(src: string): string[] | undefined {
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') i++;
    else if (c === '(' || c === '[') return undefined;
    else if (c === '|') {
      parts.push(src.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(src.slice(start));
  return parts;
}

function literalForm(pattern: string): L7Regex | undefined {
  const lit = unescapeLiteral(pattern);
  if (lit !== undefined) return { pattern, kind: 'literal', test: (s) => s === lit };
  // `<literal>.*`: RE2's `.` is any character but a newline.
  if (pattern.endsWith('.*') && !pattern.endsWith('\\.*')) {
    const prefix = unescapeLiteral(pattern.slice(0, -2));
    if (prefix !== undefined) {
      const n = prefix.length;
      return { pattern, kind: 'prefix', test: (s) => s.startsWith(prefix) && s.indexOf('\n', n) < 0 };
    }
  }
  const alts = splitAlternatives(pattern);
  if (alts && alts.length > 1) {
    const lits = alts.map(unescapeLiteral);
    if (lits.every((l): l is string => l !== undefined)) {
      const set = new Set(lits);
      return { pattern, kind: 'literals', test: (s) => set.has(s) };
    }
  }
  return undefined;
}
