// Where a new pod runs when its manifest names no node: the node with the fewest pods (ties: the
// first by name), counting the pods placed earlier in the same apply.

export function chooseNode(nodes: readonly string[], podsPerNode: Map<string, number>): string | undefined {
  let best: string | undefined;
  for (const n of [...nodes].sort())
    if (best === undefined || (podsPerNode.get(n) ?? 0) < (podsPerNode.get(best) ?? 0)) best = n;
  if (best !== undefined) podsPerNode.set(best, (podsPerNode.get(best) ?? 0) + 1);
  return best;
}
