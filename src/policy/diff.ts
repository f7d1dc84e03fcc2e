// What the agent must change in one endpoint's policy map to go from old to new entries:
// only keys whose value changed or that appeared are written, only vanished keys deleted.
import { compareEntries, PREFIX_PROTO_ANY, type PolicyMapEntry } from './entry.js';

export interface EntryDiff {
  upserts: PolicyMapEntry[];
  deletes: PolicyMapEntry[];
}

const sameValue = (a: PolicyMapEntry, b: PolicyMapEntry) =>
  a.deny === b.deny &&
  !a.auth === !b.auth &&
  a.proxyPort === b.proxyPort &&
  a.cookie === b.cookie &&
  a.l4Prefix === b.l4Prefix;

/** The map key without the identity, as one number (direction, protocol, port, prefix length). */
const l4Key = (e: PolicyMapEntry) =>
  ((e.direction * 256 + e.protocol) * 65536 + e.port) * 32 + (e.prefixLen - PREFIX_PROTO_ANY);

/** Entries keyed by identity, then by l4Key: numbers, no key strings built per entry. */
function byKey(entries: readonly PolicyMapEntry[]): Map<number, Map<number, PolicyMapEntry>> {
  const m = new Map<number, Map<number, PolicyMapEntry>>();
  for (const e of entries) {
    let inner = m.get(e.identity);
    if (!inner) m.set(e.identity, (inner = new Map()));
    inner.set(l4Key(e), e);
  }
  return m;
}

export function diff(
  oldEntries: readonly PolicyMapEntry[],
  newEntries: readonly PolicyMapEntry[],
): EntryDiff {
  if (oldEntries === newEntries) return { upserts: [], deletes: [] };
  const before = byKey(oldEntries);
  const after = byKey(newEntries);
  const upserts: PolicyMapEntry[] = [];
  for (const e of newEntries) {
    const old = before.get(e.identity)?.get(l4Key(e));
    if (!old || !sameValue(old, e)) upserts.push(e);
  }
  const deletes = oldEntries.filter((e) => !after.get(e.identity)?.has(l4Key(e)));
  return { upserts: upserts.sort(compareEntries), deletes: deletes.sort(compareEntries) };
}
