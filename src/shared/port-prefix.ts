// Port ranges as LPM trie keys: the policy engine writes them (src/policy/entry.ts) and the
// datapath's map tests build them. Pure; no kernel, no policy semantics.
import { WeirError } from './errors.js';

/**
 * The inclusive range [from, to] as the fewest aligned power-of-two blocks an LPM key can hold:
 * 80-81 -> 80/15; 1000-1999 -> 7 blocks; 0-65535 -> 0/0 (any port). `portPrefixLen` counts the
 * port bits the block fixes (16: one port).
 */
export function portRangePrefixes(from: number, to: number): { port: number; portPrefixLen: number }[] {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > 0xffff || from > to)
    throw new WeirError('ERR_PORT_RANGE', `port range ${from}-${to} is not within 0..65535 and ordered`, {
      location: { field: 'port' },
    });
  const out: { port: number; portPrefixLen: number }[] = [];
  let port = from;
  while (port <= to) {
    let size = 1;
    // Grow the block while it stays aligned at `port` and inside the range.
    while (size < 0x10000 && port % (size * 2) === 0 && port + size * 2 - 1 <= to) size *= 2;
    out.push({ port, portPrefixLen: 16 - Math.log2(size) });
    port += size;
  }
  return out;
}
