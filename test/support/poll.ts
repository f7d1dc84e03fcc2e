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
