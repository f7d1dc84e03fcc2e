// Kubernetes LabelSelectors (matchLabels + matchExpressions) as used by both policy kinds,
// compiled into requirements over identity labels. Cilium keys may name a label source
// ("k8s:app", "reserved:host", "any:app"); a key without one matches any source.
import type { LabelIndex } from '../../identity/labels.js';
import type { Checker, Path } from './check.js';
import type { LabelSelector, SelectorRequirement } from './types.js';

const operators = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;
const selectorSources = ['k8s', 'any', 'reserved', 'cidr', 'container', 'unspec'];
const keyName =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export interface SelectorOptions {
  /** Cilium selectors accept "source:" key prefixes; NetworkPolicy ones do not. */
  allowSource: boolean;
  /** Source for keys without a prefix ('k8s' for NetworkPolicy, 'any' for Cilium). */
  defaultSource: string;
}

function splitKey(
  c: Checker,
  raw: string,
  path: Path,
  opts: SelectorOptions,
): { source: string; key: string } | undefined {
  let source = opts.defaultSource;
  let key = raw;
  const colon = raw.indexOf(':');
  if (colon >= 0) {
    source = raw.slice(0, colon);
    key = raw.slice(colon + 1);
    if (!opts.allowSource || !selectorSources.includes(source)) {
      c.fail(
        'ERR_POLICY_INVALID_SELECTOR',
        path,
        opts.allowSource
          ? `label key '${raw}' has an unknown source '${source}' (one of ${selectorSources.join(', ')})`
          : `label key '${raw}' is not a valid label key`,
      );
      return undefined;
    }
  }
  // Reserved and CIDR labels have their own key syntax (e.g. cidr:10.0.0.0/8).
  if (
    source !== 'reserved' &&
    source !== 'cidr' &&
    (key.length === 0 || key.length > 317 || !keyName.test(key))
  ) {
    c.fail('ERR_POLICY_INVALID_SELECTOR', path, `label key '${raw}' is not a valid label key`);
    return undefined;
  }
  return { source, key };
}

function checkValue(c: Checker, v: unknown, path: Path): string | undefined {
  if (typeof v !== 'string') {
    c.fail('ERR_POLICY_INVALID_SELECTOR', path, 'label values must be strings');
    return undefined;
  }
  if (v.length > 63 || !labelValue.test(v)) {
    c.fail('ERR_POLICY_INVALID_SELECTOR', path, `'${v}' is not a valid label value`);
    return undefined;
  }
  return v;
}

/** Validates and compiles a selector; undefined (with problems recorded) if invalid. */
export function parseSelector(
  c: Checker,
  value: unknown,
  path: Path,
  opts: SelectorOptions,
): LabelSelector | undefined {
  if (value === undefined || value === null) return { requirements: [] };
  const obj = c.object(value, path, ['matchLabels', 'matchExpressions'], { what: 'a label selector' });
  if (!obj) return undefined;
  const requirements: SelectorRequirement[] = [];
  let ok = true;
  if (obj.matchLabels !== undefined && obj.matchLabels !== null) {
    const ml = c.object(obj.matchLabels, [...path, 'matchLabels'], Object.keys(obj.matchLabels as object));
    for (const [k, v] of Object.entries(ml ?? {})) {
      const p = [...path, 'matchLabels', k];
      const sk = splitKey(c, k, p, opts);
      const val = checkValue(c, v, p);
      if (!sk || val === undefined) ok = false;
      else requirements.push({ ...sk, operator: 'In', values: [val] });
    }
    if (!ml) ok = false;
  }
  const exprs = c.array(obj.matchExpressions, [...path, 'matchExpressions']) ?? [];
  exprs.forEach((e, i) => {
    const p = [...path, 'matchExpressions', i];
    const eo = c.object(e, p, ['key', 'operator', 'values'], { what: 'a selector requirement' });
    if (!eo) return void (ok = false);
    const key = c.string(eo.key, [...p, 'key'], { required: true });
    const op = c.string(eo.operator, [...p, 'operator'], { required: true });
    const sk = key === undefined ? undefined : splitKey(c, key, [...p, 'key'], opts);
    if (!sk || op === undefined) return void (ok = false);
    if (!(operators as readonly string[]).includes(op)) {
      c.fail(
        'ERR_POLICY_INVALID_SELECTOR',
        [...p, 'operator'],
        `invalid operator '${op}' (one of ${operators.join(', ')})`,
      );
      return void (ok = false);
    }
    const vals = c.array(eo.values, [...p, 'values']) ?? [];
    const values: string[] = [];
    vals.forEach((v, vi) => {
      const s = checkValue(c, v, [...p, 'values', vi]);
      if (s === undefined) ok = false;
      else values.push(s);
    });
    if ((op === 'In' || op === 'NotIn') && vals.length === 0) {
      c.fail('ERR_POLICY_INVALID_SELECTOR', [...p, 'values'], `operator ${op} needs at least one value`);
      return void (ok = false);
    }
    if ((op === 'Exists' || op === 'DoesNotExist') && vals.length > 0) {
      c.fail('ERR_POLICY_INVALID_SELECTOR', [...p, 'values'], `operator ${op} takes no values`);
      return void (ok = false);
    }
    requirements.push({
      ...sk,
      operator: op as SelectorRequirement['operator'],
      values: [...new Set(values)].sort(),
    });
  });
  return ok ? { requirements } : undefined;
}

export function matchesSelector(sel: LabelSelector, labels: LabelIndex): boolean {
  for (const r of sel.requirements) {
    const v = labels.get(r.source, r.key);
    switch (r.operator) {
      case 'In':
        if (v === undefined || !r.values.includes(v)) return false;
        break;
      case 'NotIn':
        if (v !== undefined && r.values.includes(v)) return false;
        break;
      case 'Exists':
        if (v === undefined) return false;
        break;
      case 'DoesNotExist':
        if (v !== undefined) return false;
        break;
    }
  }
  return true;
}

/** A canonical string, equal for selectors that select the same labels (used as a cache key). */
export function selectorKey(sel: LabelSelector): string {
  return sel.requirements
    .map((r) => `${r.source}:${r.key} ${r.operator} ${r.values.join(',')}`)
    .sort()
    .join(';');
}

export function selectorMentions(sel: LabelSelector, key: string): boolean {
  return sel.requirements.some((r) => r.key === key && (r.source === 'k8s' || r.source === 'any'));
}

export function andSelectors(...sels: LabelSelector[]): LabelSelector {
  return { requirements: sels.flatMap((s) => s.requirements) };
}
