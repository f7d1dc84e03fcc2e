// What the agent must change in one endpoint's policy map to go from old to new entries:
// only keys whose value changed or that appeared are written, only vanished keys deleted.
import { compareEntries, entryKey, type PolicyMapEntry } from './entry.js';

export interface EntryDiff {
  upserts: PolicyMapEntry[];
  deletes: PolicyMapEntry[];
}

const sameValue = (a: PolicyMapEntry, b: PolicyMapEntry) =>
  a.deny === b.deny && a.proxyPort === b.proxyPort && a.cookie === b.cookie && a.l4Prefix === b.l4Prefix;

export function diff(
  oldEntries: readonly PolicyMapEntry[],
  newEntries: readonly PolicyMapEntry[],
): EntryDiff {
  const before = new Map(oldEntries.map((e) => [entryKey(e), e]));
  const after = new Set<string>();
  const upserts: PolicyMapEntry[] = [];
  for (const e of newEntries) {
    const k = entryKey(e);
    after.add(k);
    const old = before.get(k);
    if (!old || !sameValue(old, e)) upserts.push(e);
  }
  const deletes = oldEntries.filter((e) => !after.has(entryKey(e)));
  return { upserts: upserts.sort(compareEntries), deletes: [...deletes].sort(compareEntries) };
}
