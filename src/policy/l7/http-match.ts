// Judges one HTTP request against a port's L7 policy (src/policy/l7/types.ts), the way Cilium's
// proxy does (cilium/proxy cilium/network_policy.cc, read for semantics):
//
// - The rule sets that apply are those whose `identities` include the peer's identity (or are
//   undefined). None: denied. One without HTTP rules (`http` undefined or empty): allowed.
// - Otherwise a request is allowed when one HTTP rule matches: rules are OR'ed, a rule's fields are
//   AND'ed. `method`, `path` and `host` are RE2 expressions matched against the whole value
//   (src/policy/l7/regex.ts). `headers` entries are split at the first space like Cilium does:
//   "Name: value" (a trailing ':' is dropped from the name) = that exact value, "Name" = present.
//   Names are case-insensitive; a repeated header is matched as its values joined by ','.
// - `headerMatches`, checked once the rest of the rule matched, all of them: exact value (compared
//   in constant time: it may be a secret) or, without a value, presence. A mismatch without an
//   action fails the rule; LOG only notes it; REPLACE sets the header to the value (added when
//   missing); DELETE removes the header when it is present with another value; ADD adds the value
//   beside the present ones. Header operations take effect in order: a later check sees the result
//   of an earlier one, and they are applied even when another check of the same rule fails.
// - Without any headerMatches among the applicable rules the first match decides; with them every
//   rule is evaluated so that every operation runs (Cilium's `can_short_circuit`).
//
// Compiled forms are cached per PortL7Policy object (a snapshot's objects are immutable: a new
// snapshot brings new objects) and, inside, per peer identity.
import { compileL7Regex, type L7Regex } from './regex.js';
import type { HeaderMatch, HttpRule, L7RuleOrigin, PortL7Policy } from './types.js';

/** One request, as the proxy received it. */
export interface HttpRequestInfo {
  method: string;
  /** The request target as sent (origin-form: path and query). */
  path: string;
  /** The Host header (HTTP/1.1) or :authority (HTTP/2) as sent; '' when absent. */
  host: string;
  /**
   * The header fields as sent, flat: [name, value, name, value, …] (node's `rawHeaders`). Names in
   * any case; HTTP/2 pseudo-headers (':method', …) are read from the fields above instead.
   */
  headers: readonly string[];
}

/** A change to the request headers before it is forwarded (names lower-case). */
export type HeaderOp = { op: 'set' | 'add'; name: string; value: string } | { op: 'delete'; name: string };

/** A headerMatches check that did not match, and what was done about it. */
export interface HeaderMismatch {
  name: string;
  action: 'FAIL' | NonNullable<HeaderMatch['mismatch']>;
}

export type HttpVerdictReason =
  /** An applicable rule set has no HTTP rules. */
  | 'l4_allow'
  /** An HTTP rule matched. */
  | 'http_rule'
  /** Rule sets apply to the peer but no rule matched. */
  | 'no_rule_matched'
  /** No rule set applies to the peer's identity. */
  | 'no_rule_set'
  /** The port has no L7 policy (any more). */
  | 'no_policy';

export interface HttpVerdict {
  allowed: boolean;
  reason: HttpVerdictReason;
  /** Allowed: the origin of the rule set that allowed it. Denied: the port's first origin. */
  origin: L7RuleOrigin | undefined;
  /** Allowed by an HTTP rule: its index in that rule set's `http` list. */
  httpRule?: number;
  /** Denied: every origin of the port's rule sets (what a user must change). Allowed: []. */
  origins: readonly L7RuleOrigin[];
  /** Header operations to apply before forwarding, in order (only when allowed). */
  ops: readonly HeaderOp[];
  /** headerMatches checks that mismatched (logged by the proxy). */
  mismatches: readonly HeaderMismatch[];
}

/** A rule field that cannot be compiled: the rule never matches (fail closed). */
export interface HttpRuleProblem {
  /** JSON path inside the rule, e.g. "path", "headerMatches[1].name". */
  field: string;
  message: string;
}

interface CompiledHeaderMatch {
  name: string;
  /** '' = presence. */
  value: string;
  mismatch: HeaderMatch['mismatch'];
}

interface CompiledRule {
  method: L7Regex | undefined;
  path: L7Regex | undefined;
  host: L7Regex | undefined;
  /** value undefined = presence. */
  headers: { name: string; value: string | undefined }[];
  headerMatches: CompiledHeaderMatch[];
  /** A field failed to compile: the rule never matches. */
  broken: boolean;
}

interface CompiledSet {
  identities: Set<number> | undefined;
  origin: L7RuleOrigin;
  /** undefined: no HTTP rules, every request allowed. */
  rules: CompiledRule[] | undefined;
  effects: boolean;
  /**
   * The verdicts of the common case (no header effects), made once and shared (frozen): [j]
   * allowed by rule j; with no rules, [0] allowed at L4.
   */
  verdicts: (HttpVerdict | undefined)[];
}

/** The rule sets that apply to one peer identity. */
interface Plan {
  sets: CompiledSet[];
  /** Some rule has headerMatches: evaluate everything. */
  effects: boolean;
}

export interface CompiledHttpPolicy {
  readonly policy: PortL7Policy;
  /** Rule fields that failed to compile (those rules never match). */
  readonly problems: readonly (HttpRuleProblem & { ruleSet: number; rule: number })[];
  readonly origins: readonly L7RuleOrigin[];
  plan(identity: number): Plan;
}

const NONE: readonly never[] = Object.freeze([]);
const compiled = new WeakMap<PortL7Policy, CompiledHttpPolicy>();
/** Distinct peer identities remembered per port before the per-identity cache starts over. */
const PLAN_CACHE_MAX = 4096;

/** The problems of one HTTP rule (empty when it compiles), for validation at apply time. */
export function httpRuleProblems(rule: HttpRule): HttpRuleProblem[] {
  const problems: HttpRuleProblem[] = [];
  compileRule(rule, problems);
  return problems;
}

/** Compiles (once per policy object) a port's L7 policy. */
export function compileHttpPolicy(policy: PortL7Policy): CompiledHttpPolicy {
  let c = compiled.get(policy);
  if (c) return c;
  const problems: (HttpRuleProblem & { ruleSet: number; rule: number })[] = [];
  const sets: CompiledSet[] = policy.ruleSets.map((rs, i) => {
    const rules =
      rs.http && rs.http.length > 0
        ? rs.http.map((r, j) => {
            const ps: HttpRuleProblem[] = [];
            const cr = compileRule(r, ps);
            for (const p of ps) problems.push({ ...p, ruleSet: i, rule: j });
            return cr;
          })
        : undefined;
    return {
      identities: rs.identities ? new Set(rs.identities) : undefined,
      origin: rs.origin,
      rules,
      effects: rules?.some((r) => r.headerMatches.length > 0) ?? false,
      verdicts: [],
    };
  });
  const origins: L7RuleOrigin[] = [];
  const seen = new Set<string>();
  for (const s of sets) {
    const k = `${s.origin.kind}/${s.origin.namespace ?? ''}/${s.origin.name}/${s.origin.cookie}`;
    if (!seen.has(k)) {
      seen.add(k);
      origins.push(s.origin);
    }
  }
  const plans = new Map<number, Plan>();
  c = {
    policy,
    problems,
    origins,
    plan(identity: number): Plan {
      let p = plans.get(identity);
      if (p) return p;
      const applicable = sets.filter((s) => !s.identities || s.identities.has(identity));
      p = { sets: applicable, effects: applicable.some((s) => s.effects) };
      if (plans.size >= PLAN_CACHE_MAX) plans.clear();
      plans.set(identity, p);
      return p;
    },
  };
  compiled.set(policy, c);
  return c;
}

/** Judges `req` from a peer of security identity `identity` against `policy`. */
export function judgeHttp(
  policy: PortL7Policy | undefined,
  identity: number,
  req: HttpRequestInfo,
): HttpVerdict {
  if (!policy) return denied('no_policy', NONE);
  const cp = compileHttpPolicy(policy);
  const plan = cp.plan(identity);
  if (plan.sets.length === 0) return denied('no_rule_set', cp.origins);
  if (!plan.effects) {
    // The common case: first match decides, nothing to rewrite.
    for (const set of plan.sets) {
      if (!set.rules) return (set.verdicts[0] ??= Object.freeze(allowed('l4_allow', set.origin, NONE, NONE)));
      const rules = set.rules;
      for (let j = 0; j < rules.length; j++) {
        if (matchesFields(rules[j] as CompiledRule, req, undefined))
          return (set.verdicts[j] ??= Object.freeze(allowed('http_rule', set.origin, NONE, NONE, j)));
      }
    }
    return denied('no_rule_matched', cp.origins);
  }
  const view: Overlay = new Map();
  const ops: HeaderOp[] = [];
  const mismatches: HeaderMismatch[] = [];
  let origin: L7RuleOrigin | undefined;
  let reason: HttpVerdictReason = 'no_rule_matched';
  let httpRule: number | undefined;
  for (const set of plan.sets) {
    if (!set.rules) {
      if (!origin) {
        origin = set.origin;
        reason = 'l4_allow';
      }
      continue;
    }
    for (let j = 0; j < set.rules.length; j++) {
      const rule = set.rules[j] as CompiledRule;
      if (!matchesFields(rule, req, view)) continue;
      const ok = rule.headerMatches.length === 0 || runHeaderMatches(rule, req, view, ops, mismatches);
      if (ok) {
        if (!origin) {
          origin = set.origin;
          reason = 'http_rule';
          httpRule = j;
        }
        // Within a set without headerMatches, the first match ends the set (as in Cilium).
        if (!set.effects) break;
      }
    }
  }
  if (!origin) return { ...denied('no_rule_matched', cp.origins), mismatches };
  return allowed(reason, origin, ops, mismatches, httpRule);
}

function allowed(
  reason: HttpVerdictReason,
  origin: L7RuleOrigin,
  ops: readonly HeaderOp[],
  mismatches: readonly HeaderMismatch[],
  httpRule?: number,
): HttpVerdict {
  return {
    allowed: true,
    reason,
    origin,
    ...(httpRule !== undefined ? { httpRule } : {}),
    origins: NONE,
    ops,
    mismatches,
  };
}

function denied(reason: HttpVerdictReason, origins: readonly L7RuleOrigin[]): HttpVerdict {
  return { allowed: false, reason, origin: origins[0], origins, ops: NONE, mismatches: NONE };
}

function compileRule(rule: HttpRule, problems: HttpRuleProblem[]): CompiledRule {
  let broken = false;
  const regex = (field: 'method' | 'path' | 'host'): L7Regex | undefined => {
    const p = rule[field];
    // Cilium: an empty string is an unset field.
    if (p === undefined || p === '') return undefined;
    try {
      return compileL7Regex(p);
    } catch (err) {
      broken = true;
      problems.push({ field, message: (err as Error).message });
      return undefined;
    }
  };
  const method = regex('method');
  const path = regex('path');
  const host = regex('host');
  const headers = (rule.headers ?? []).map((h, i) => {
    const sp = h.indexOf(' ');
    const name = (sp < 0 ? h : h.slice(0, sp).replace(/:+$/, '')).toLowerCase();
    if (!isToken(name)) {
      broken = true;
      problems.push({ field: `headers[${i}]`, message: `'${h}' is not "Name" or "Name: value"` });
    }
    return { name, value: sp < 0 ? undefined : h.slice(sp + 1) };
  });
  const headerMatches = (rule.headerMatches ?? []).map((m, i) => {
    const name = m.name.toLowerCase();
    if (!isToken(name)) {
      broken = true;
      problems.push({ field: `headerMatches[${i}].name`, message: `'${m.name}' is not a header name` });
    }
    if (m.mismatch !== undefined && !['LOG', 'ADD', 'DELETE', 'REPLACE'].includes(m.mismatch)) {
      broken = true;
      problems.push({
        field: `headerMatches[${i}].mismatch`,
        message: `unknown mismatch action '${m.mismatch}'`,
      });
    }
    if ((m.mismatch === 'ADD' || m.mismatch === 'REPLACE') && !m.value) {
      broken = true;
      problems.push({ field: `headerMatches[${i}].value`, message: `mismatch ${m.mismatch} needs a value` });
    }
    // A value the proxy may write into a request must be a valid field value (no CR, LF, NUL).
    if (m.value !== undefined && !isFieldValue(m.value)) {
      broken = true;
      problems.push({
        field: `headerMatches[${i}].value`,
        message: 'the value holds a control character (CR, LF, NUL, …)',
      });
    }
    return { name, value: m.value ?? '', mismatch: m.mismatch };
  });
  return { method, path, host, headers, headerMatches, broken };
}

/** RFC 9110 field-value characters: visible ASCII, space, tab and obs-text; no CR/LF/NUL. */
function isFieldValue(v: string): boolean {
  return /^[\t\x20-\x7e\x80-\xff]*$/.test(v);
}

/** RFC 9110 token (a header field name), or an HTTP/2 pseudo-header name. */
function isToken(name: string): boolean {
  return /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name);
}

/** Header changes made by earlier headerMatches: lower-case name → value, or null = removed. */
type Overlay = Map<string, string | null>;

function matchesFields(rule: CompiledRule, req: HttpRequestInfo, view: Overlay | undefined): boolean {
  if (rule.broken) return false;
  if (rule.method && !rule.method.test(view ? (pseudo(req, view, ':method') ?? '') : req.method))
    return false;
  if (rule.path && !rule.path.test(view ? (pseudo(req, view, ':path') ?? '') : req.path)) return false;
  if (rule.host && !rule.host.test(view ? (pseudo(req, view, ':authority') ?? '') : req.host)) return false;
  for (const h of rule.headers) {
    const v = headerValue(req, view, h.name);
    if (v === undefined || (h.value !== undefined && v !== h.value)) return false;
  }
  return true;
}

function pseudo(req: HttpRequestInfo, view: Overlay, name: string): string | undefined {
  return headerValue(req, view, name);
}

/** Runs every headerMatches check of a matching rule; true when none failed. */
function runHeaderMatches(
  rule: CompiledRule,
  req: HttpRequestInfo,
  view: Overlay,
  ops: HeaderOp[],
  mismatches: HeaderMismatch[],
): boolean {
  let accepted = true;
  for (const m of rule.headerMatches) {
    const current = headerValue(req, view, m.name);
    const presence = m.value === '';
    const matches = presence
      ? current !== undefined
      : current !== undefined && constantTimeEqual(current, m.value);
    if (matches) continue;
    switch (m.mismatch) {
      case undefined:
        accepted = false;
        mismatches.push({ name: m.name, action: 'FAIL' });
        break;
      case 'LOG':
        mismatches.push({ name: m.name, action: 'LOG' });
        break;
      case 'ADD':
        view.set(m.name, current === undefined ? m.value : `${current},${m.value}`);
        ops.push({ op: 'add', name: m.name, value: m.value });
        mismatches.push({ name: m.name, action: 'ADD' });
        break;
      case 'DELETE':
        // Nothing to remove when only presence was asked for or the header is absent.
        if (presence || current === undefined) break;
        view.set(m.name, null);
        ops.push({ op: 'delete', name: m.name });
        mismatches.push({ name: m.name, action: 'DELETE' });
        break;
      case 'REPLACE':
        view.set(m.name, m.value);
        ops.push({ op: 'set', name: m.name, value: m.value });
        mismatches.push({ name: m.name, action: 'REPLACE' });
        break;
    }
  }
  return accepted;
}

/**
 * The value of header `name` (lower-case) as the matcher sees it: a pseudo-header from the request
 * line, the overlay of earlier header operations, else every field of that name joined by ','.
 */
function headerValue(req: HttpRequestInfo, view: Overlay | undefined, name: string): string | undefined {
  if (view) {
    const o = view.get(name);
    if (o !== undefined) return o === null ? undefined : o;
  }
  if (name.charCodeAt(0) === 58 /* ':' */) {
    switch (name) {
      case ':method':
        return req.method;
      case ':path':
        return req.path;
      case ':authority':
        return req.host === '' ? undefined : req.host;
      case ':scheme':
        return 'http';
      default:
        return undefined;
    }
  }
  if (name === 'host' && req.host !== '') return req.host;
  const hs = req.headers;
  let out: string | undefined;
  for (let i = 0; i + 1 < hs.length; i += 2) {
    if (equalsLower(hs[i] as string, name))
      out = out === undefined ? (hs[i + 1] as string) : `${out},${hs[i + 1]}`;
  }
  return out;
}

/** `a` equals the lower-case `lower` ignoring ASCII case, without allocating. */
export function equalsLower(a: string, lower: string): boolean {
  const n = a.length;
  if (n !== lower.length) return false;
  for (let i = 0; i < n; i++) {
    let c = a.charCodeAt(i);
    if (c >= 65 && c <= 90) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** String equality whose time does not depend on where the strings differ (values may be secrets). */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

/**
 * `headers` (flat [name, value, …]) with `ops` applied in order: 'set' removes every field of that
 * name and appends one, 'delete' removes them, 'add' appends one. Returns `headers` itself when
 * `ops` is empty.
 */
export function applyHeaderOps(headers: readonly string[], ops: readonly HeaderOp[]): readonly string[] {
  if (ops.length === 0) return headers;
  let out = headers.slice();
  for (const op of ops) {
    if (op.op !== 'add') {
      const kept: string[] = [];
      for (let i = 0; i + 1 < out.length; i += 2) {
        if (!equalsLower(out[i] as string, op.name)) kept.push(out[i] as string, out[i + 1] as string);
      }
      out = kept;
    }
    if (op.op !== 'delete') out.push(op.name, op.value);
  }
  return out;
}
