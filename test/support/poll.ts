// Bounded waiting for what a test cannot be told about (a node's state, a page's contents).
import assert from 'node:assert/strict';

/** Polls `check` every `stepMs` until it holds and resolves with the time it took; fails after `ms`. */
export async function until(
  what: string,
  check: () => Promise<boolean>,
  ms: number,
  stepMs = 500,
): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return Date.now() - t0;
}

/**
 * Calls `get` until what it gives satisfies `done` or `ms` passed (`stepMs` between calls; with
 * `waitFirst`, also before the first), and resolves with the last value: the caller asserts on it
 * and can show it. For waits whose last answer says why they failed (a curl's body and code).
 */
export async function lastOf<T>(
  get: () => Promise<T>,
  done: (v: T) => boolean,
  ms: number,
  { stepMs = 500, waitFirst = false } = {},
): Promise<T> {
  const deadline = Date.now() + ms;
  const pause = () => new Promise((r) => setTimeout(r, stepMs));
  if (waitFirst) await pause();
  for (;;) {
    const v = await get();
    if (done(v)) return v;
    await pause();
    if (Date.now() >= deadline) return v;
  }
}

/**
 * Calls `get` every `stepMs` until what it gives satisfies `done`, and resolves with that; fails
 * after `ms`, showing the last value.
 */
export async function untilValue<T>(
  what: string,
  get: () => Promise<T>,
  done: (v: T) => boolean,
  ms: number,
  stepMs = 500,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (done(v)) return v;
    if (Date.now() > deadline)
      assert.fail(`timed out waiting for ${what}: ${JSON.stringify(v).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
