// Lab names for tests. Several checkouts may run tests on one machine at once (e.g. git worktrees
// of parallel work): WEIR_TEST_LAB_SUFFIX keeps their labs, netns, pins and state apart.

/** `base`, or `base-<suffix>` with WEIR_TEST_LAB_SUFFIX set (lab names stay ≤ 24 characters). */
export function testLab(base: string): string {
  const suffix = process.env.WEIR_TEST_LAB_SUFFIX;
  if (!suffix) return base;
  const name = `${base}-${suffix}`;
  if (name.length > 24) throw new Error(`test lab name ${name} is longer than 24 characters`);
  return name;
}
