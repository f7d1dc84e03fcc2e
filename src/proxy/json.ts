// JSON text for the proxy's per-request lines (L7 records, access-log lines), built by hand: the
// lines have fixed shapes, and rendering them field by field costs half of JSON.stringify on a
// fresh object (bench/micro/http-proxy, docs/proxy.md "Throughput"). Values come out exactly as
// JSON.stringify writes them.

/** Characters JSON.stringify escapes (quote, backslash, controls) or may (surrogates). */
// eslint-disable-next-line no-control-regex -- the control characters are what is looked for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A string as JSON text. */
export function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/** A number as JSON text (null for NaN and infinities, as JSON.stringify). */
export function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** Epoch milliseconds as RFC 3339 (toISOString), remembered for the last millisecond asked. */
export class IsoClock {
  #ms = NaN;
  #iso = '';
  iso(ms: number): string {
    if (ms !== this.#ms) {
      this.#iso = new Date(ms).toISOString();
      this.#ms = ms;
    }
    return this.#iso;
  }
}
