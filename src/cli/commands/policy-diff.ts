// `weir policy diff -f FILE… [--replace | --delete]` and `weir apply --dry-run=server`: which
// connections between the lab's pods would change verdict if the files were applied (merged by
// name: the default), replaced every policy, or were deleted. The agent computes it (its API
// validates the files as apply does: bad input is the same error, and no diff), nothing changes.
import { agentClient } from '../../agent/client.js';
import type { DiffMode } from '../../agent/policy-diff.js';
import { toDeleteRef, toDesired } from '../../cluster/objects.js';
import type { Manifest } from '../../k8s/index.js';
import type { VerdictDiff } from '../../policy/verdict-diff.js';
import { formatTable, printResult, type OutputFormat } from '../output.js';

/** Asks the agent of `lab` for the diff of `manifests` under `mode`. */
export async function fetchDiff(
  lab: string,
  manifests: Manifest[],
  mode: DiffMode,
  entities: boolean,
): Promise<VerdictDiff> {
  const objects = manifests.map(mode === 'delete' ? toDeleteRef : toDesired);
  return agentClient(lab).call<VerdictDiff>('POST', '/v1/policy/diff', { objects, mode, entities });
}

/** The diff as a table (one row per connection that changes) and a count line. */
export function diffText(d: VerdictDiff): string {
  const total = d.changes.length + d.unchanged;
  const summary = `${d.changes.length} of ${total} connections change verdict (${d.changes.filter((c) => c.after === 'denied').length} newly denied, ${d.changes.filter((c) => c.after === 'allowed').length} newly allowed); ${d.unchanged} unchanged\n`;
  if (d.changes.length === 0) return summary;
  const arrow = (c: VerdictDiff['changes'][number]) => (c.after === 'denied' ? '-' : '+');
  return (
    formatTable(d.changes, [
      { header: '', get: arrow },
      { header: 'from', get: (c) => c.from },
      { header: 'to', get: (c) => c.to },
      { header: 'port', get: (c) => `${c.port}/${c.protocol}` },
      { header: 'before', get: (c) => c.before },
      { header: 'after', get: (c) => c.after },
      { header: 'rule before', get: (c) => c.beforeRule },
      { header: 'rule after', get: (c) => c.afterRule },
    ]) + summary
  );
}

export function printDiff(d: VerdictDiff, format: OutputFormat): void {
  if (format === 'json' || format === 'yaml') printResult(format, d, [], []);
  else process.stdout.write(diffText(d));
}
