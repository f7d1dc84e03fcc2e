// POST /v1/policy/diff: what would change if the given objects were applied (merged by name, or
// replacing every policy), or deleted — without writing anything. The objects are validated by the
// intake exactly as apply/delete validate them (bad input: the same errors, no diff); the engine
// then computes the node's policy with the change, next to what is in force, and verdictDiff()
// compares every connection between the node's pods (and world/host with `entities`).
//
// What the change can touch: policies (NetworkPolicy, CNP, CCNP), the labels of existing
// namespaces and of pods running on this node. Pods that do not run yet have no address and are
// not in the diff; Services and EndpointSlices do not change verdicts (policy judges pod -> backend).
import { desiredKey } from '../cluster/keys.js';
import { namespaceOf, podOf } from '../cluster/desired.js';
import type { DesiredObject } from '../cluster/objects.js';
import { isPolicyKind } from '../policy/api/index.js';
import { computePolicy, type EngineInput } from '../policy/engine.js';
import { verdictDiff, type VerdictDiff } from '../policy/verdict-diff.js';
import { WeirError } from '../shared/errors.js';
import type { Agent } from './agent.js';
import type { DeleteRequest, Intake } from './intake.js';

export type DiffMode = 'apply' | 'replace' | 'delete';
export const diffModes: readonly DiffMode[] = ['apply', 'replace', 'delete'];

export interface DiffRequest {
  objects: unknown[];
  mode?: DiffMode;
  entities?: boolean;
}

/** The engine input with `changed` objects merged in (by key) or, for policies, replacing all. */
export function changedInput(
  agent: Pick<Agent, 'policies' | 'objects'>,
  before: EngineInput,
  changed: DesiredObject[],
  mode: DiffMode,
): EngineInput {
  const policies = new Map<string, DesiredObject>();
  if (mode !== 'replace') for (const o of agent.objects()) policies.set(desiredKey(o), o);
  if (mode === 'delete') for (const o of changed) policies.delete(desiredKey(o));
  else for (const o of changed) if (isPolicyKind(o.kind)) policies.set(desiredKey(o), o);
  const input: EngineInput = { ...before, policies: agent.policies([...policies.values()]) };
  if (mode === 'delete') return input;
  // Labels of namespaces and of the node's pods, as the apply would store them.
  const nsLabels = new Map(before.namespaces.map((n) => [n.name, n.labels]));
  for (const o of changed) if (o.kind === 'Namespace') nsLabels.set(o.name, namespaceOf(o).labels);
  input.namespaces = [...nsLabels].map(([name, labels]) => ({ name, labels }));
  const podLabels = new Map<string, Record<string, string>>();
  for (const o of changed)
    if (o.kind === 'Pod') podLabels.set(`${o.namespace ?? 'default'}/${o.name}`, podOf(o, 0).labels);
  input.endpoints = before.endpoints.map((e) => {
    const labels = podLabels.get(`${e.namespace}/${e.pod}`);
    return labels ? { ...e, labels } : e;
  });
  return input;
}

export function policyDiff(agent: Agent, intake: Intake, body: unknown): VerdictDiff {
  const b = (body ?? {}) as Partial<DiffRequest>;
  const mode = b.mode ?? 'apply';
  if (!diffModes.includes(mode))
    throw new WeirError(
      'ERR_API_BAD_REQUEST',
      `mode must be one of ${diffModes.join(', ')}, not '${String(mode)}'`,
    );
  if (!Array.isArray(b.objects))
    throw new WeirError('ERR_API_BAD_REQUEST', 'body must be {"objects": [...], "mode": ...}');
  const changed =
    mode === 'delete'
      ? intake.dryRunDelete(b.objects as DeleteRequest[])
      : intake.dryRunApply(b.objects as DesiredObject[]);
  const before = agent.engineView();
  const input = changedInput(agent, before.input, changed, mode);
  // On a copy of the agent's allocator: the pods keep their identities, and label sets it holds
  // (thousands of CIDRs) are found rather than allocated again.
  const after = computePolicy(input, { allocator: agent.allocatorCopy() });
  return verdictDiff({ pods: agent.diffPods(), before: before.output, after, entities: b.entities === true });
}
