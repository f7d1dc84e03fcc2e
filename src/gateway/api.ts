// Gateway API v1 (gateway.networking.k8s.io): GatewayClass, Gateway, HTTPRoute, GRPCRoute and
// ReferenceGrant, accepted as users write them. Validation names file, object and field; a field of
// the Gateway API that weir does not implement is refused by name (ERR_GATEWAY_UNSUPPORTED) rather
// than ignored, and a field the API does not have at all is ERR_K8S_FIELD_INVALID. What the spec
// answers in status instead of refusing (a listener protocol weir does not serve, a backend that does
// not exist) is accepted here and reported by the compiler (compile.ts) as conditions.
import type { ObjectLocation } from '../k8s/registry.js';
import { dnsLabelSchema } from '../k8s/labels.js';
import type { ErrorCode } from '../shared/error-codes.js';
import { ValidationError, WeirError } from '../shared/errors.js';
import { l7RegexProblem } from '../policy/l7/regex.js';
import { parseCidr4 } from '../lab/cidr.js';

export const gatewayGroup = 'gateway.networking.k8s.io';
/** The controllerName of weir's GatewayClasses. */
export const weirController = 'weir.dev/gateway-controller';

// ---- the model (what the compiler reads) ----

export interface ParentRef {
  group: string;
  kind: string;
  namespace?: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface BackendRef {
  group: string;
  kind: string;
  namespace?: string;
  name: string;
  port?: number;
  weight: number;
  filters: HTTPFilter[];
}

export interface HeaderValue {
  name: string;
  value: string;
}

export interface HeaderModifier {
  set: HeaderValue[];
  add: HeaderValue[];
  remove: string[];
}

export interface PathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  replaceFullPath?: string;
  replacePrefixMatch?: string;
}

export interface RequestRedirect {
  scheme?: 'http' | 'https';
  hostname?: string;
  path?: PathModifier;
  port?: number;
  statusCode: number;
}

export interface URLRewrite {
  hostname?: string;
  path?: PathModifier;
}

export interface RequestMirror {
  backendRef: Omit<BackendRef, 'weight' | 'filters'>;
  /** The share of requests mirrored, 0..1. */
  fraction: number;
}

export interface CORSFilter {
  allowOrigins: string[];
  allowMethods: string[];
  allowHeaders: string[];
  exposeHeaders: string[];
  allowCredentials: boolean;
  maxAge: number;
}

export type HTTPFilter =
  | { type: 'RequestHeaderModifier'; requestHeaderModifier: HeaderModifier }
  | { type: 'ResponseHeaderModifier'; responseHeaderModifier: HeaderModifier }
  | { type: 'RequestRedirect'; requestRedirect: RequestRedirect }
  | { type: 'URLRewrite'; urlRewrite: URLRewrite }
  | { type: 'RequestMirror'; requestMirror: RequestMirror }
  | { type: 'CORS'; cors: CORSFilter };

export interface StringMatch {
  type: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface HTTPRouteMatch {
  path: { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  headers: StringMatch[];
  queryParams: StringMatch[];
  method?: string;
}

export interface GRPCRouteMatch {
  method?: { type: 'Exact' | 'RegularExpression'; service?: string; method?: string };
  headers: StringMatch[];
}

export interface RouteRule {
  name?: string;
  /** HTTP matches; a GRPCRoute's matches are turned into these (POST /service/method). */
  matches: HTTPRouteMatch[];
  filters: HTTPFilter[];
  backendRefs: BackendRef[];
  /** Milliseconds; undefined = none. */
  timeouts: { request?: number; backendRequest?: number };
  retry?: { attempts: number; codes: number[]; backoffMs?: number };
}

export interface Route {
  kind: 'HTTPRoute' | 'GRPCRoute';
  namespace: string;
  name: string;
  createdAt: string;
  parentRefs: ParentRef[];
  hostnames: string[];
  rules: RouteRule[];
}

export interface Listener {
  name: string;
  port: number;
  protocol: string;
  hostname?: string;
  allowedRoutes: {
    from: 'Same' | 'All' | 'Selector';
    selector?: { matchLabels: Record<string, string> };
    kinds?: { group: string; kind: string }[];
  };
  hasTLS: boolean;
}

export interface Gateway {
  namespace: string;
  name: string;
  createdAt: string;
  className: string;
  listeners: Listener[];
}

export interface GatewayClass {
  name: string;
  controllerName: string;
}

export interface ReferenceGrant {
  namespace: string;
  name: string;
  from: { group: string; kind: string; namespace: string }[];
  to: { group: string; kind: string; name?: string }[];
}

// ---- validation ----

/** Collects problems with their field paths. */
class Checker {
  readonly problems: WeirError[] = [];
  constructor(private readonly loc: ObjectLocation) {}

  bad(field: string, message: string, code: ErrorCode = 'ERR_K8S_FIELD_INVALID'): undefined {
    this.problems.push(new WeirError(code, message, { location: { ...this.loc, field } }));
    return undefined;
  }

  obj(v: unknown, field: string, required = false): Record<string, unknown> | undefined {
    if (v === undefined || v === null) {
      if (required) this.bad(field, 'required field is missing', 'ERR_K8S_FIELD_MISSING');
      return undefined;
    }
    if (typeof v !== 'object' || Array.isArray(v)) return this.bad(field, 'must be an object');
    return v as Record<string, unknown>;
  }

  arr(v: unknown, field: string, max?: number): unknown[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return this.bad(field, 'must be a list') ?? [];
    if (max !== undefined && v.length > max) this.bad(field, `at most ${max} entries`);
    return v;
  }

  str(v: unknown, field: string, required = false): string | undefined {
    if (v === undefined || v === null) {
      if (required) this.bad(field, 'required field is missing', 'ERR_K8S_FIELD_MISSING');
      return undefined;
    }
    if (typeof v !== 'string') return this.bad(field, 'must be a string');
    return v;
  }

  int(v: unknown, field: string, min: number, max: number, required = false): number | undefined {
    if (v === undefined || v === null) {
      if (required) this.bad(field, 'required field is missing', 'ERR_K8S_FIELD_MISSING');
      return undefined;
    }
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.bad(field, 'must be an integer');
    if (v < min || v > max) return this.bad(field, `must be between ${min} and ${max}`);
    return v;
  }

  oneOf<T extends string>(v: unknown, field: string, values: readonly T[], dflt?: T): T | undefined {
    if (v === undefined || v === null) {
      if (dflt === undefined) this.bad(field, 'required field is missing', 'ERR_K8S_FIELD_MISSING');
      return dflt;
    }
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v))
      return this.bad(field, `must be ${values.map((x) => `'${x}'`).join(', ')}`);
    return v as T;
  }

  /**
   * Every key of `o` must be in `known` (fields weir implements) or is refused: by name as
   * unsupported when the Gateway API has it (`unsupported`), as unknown otherwise.
   */
  keys(
    o: Record<string, unknown>,
    field: string,
    known: readonly string[],
    unsupported: readonly string[] = [],
  ) {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const f = field ? `${field}.${k}` : k;
      if (unsupported.includes(k))
        this.bad(f, `${f} is not supported by weir's gateway controller`, 'ERR_GATEWAY_UNSUPPORTED');
      else this.bad(f, `unknown field '${k}'`);
    }
  }
}

const hostnameRe = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function hostname(c: Checker, v: unknown, field: string): string | undefined {
  const h = c.str(v, field);
  if (h === undefined) return undefined;
  if (h.length > 253 || !hostnameRe.test(h))
    return c.bad(field, `'${h}' is not a hostname (lower-case DNS name, optionally starting with '*.')`);
  return h;
}

function objectName(c: Checker, v: unknown, field: string, required = true): string | undefined {
  const n = c.str(v, field, required);
  if (n === undefined) return undefined;
  if (n.length === 0 || n.length > 253 || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n))
    return c.bad(field, `'${n}' is not a valid object name`);
  return n;
}

function namespaceName(c: Checker, v: unknown, field: string): string | undefined {
  const n = c.str(v, field);
  if (n === undefined) return undefined;
  const r = dnsLabelSchema.safeParse(n);
  if (!r.success) return c.bad(field, `'${n}' is not a valid namespace name`);
  return n;
}

/** Go's time.ParseDuration subset the Gateway API allows (GEP-2257): 1h, 10s, 500ms, 1m30s. */
export function parseDuration(s: string): number | undefined {
  if (!/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(s)) return undefined;
  let ms = 0;
  for (const [, n, u] of s.matchAll(/([0-9]+)(h|ms|m|s)/g)) {
    const v = Number(n);
    ms += u === 'h' ? v * 3_600_000 : u === 'm' ? v * 60_000 : u === 's' ? v * 1000 : v;
  }
  return ms;
}

function meta(c: Checker, o: Record<string, unknown>, namespaced: boolean) {
  const m = c.obj(o.metadata, 'metadata', true) ?? {};
  const name = objectName(c, m.name, 'metadata.name') ?? '';
  const namespace = namespaced ? (namespaceName(c, m.namespace, 'metadata.namespace') ?? 'default') : '';
  const createdAt = typeof m.creationTimestamp === 'string' ? m.creationTimestamp : '';
  return { name, namespace, createdAt };
}

function top(c: Checker, obj: unknown, kind: string) {
  const o = c.obj(obj, '', true) ?? {};
  c.keys(o, '', ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  if (o.kind !== kind) c.bad('kind', `must be ${kind}`);
  return o;
}

function finish<T>(c: Checker, v: T): T {
  if (c.problems.length > 0) throw new ValidationError(c.problems);
  return v;
}

export function validateGatewayClass(obj: unknown, loc: ObjectLocation): GatewayClass {
  const c = new Checker(loc);
  const o = top(c, obj, 'GatewayClass');
  const { name } = meta(c, o, false);
  const spec = c.obj(o.spec, 'spec', true) ?? {};
  c.keys(spec, 'spec', ['controllerName', 'description'], ['parametersRef']);
  const controllerName = c.str(spec.controllerName, 'spec.controllerName', true) ?? '';
  return finish(c, { name, controllerName });
}

const listenerProtocols = ['HTTP', 'HTTPS', 'TLS', 'TCP', 'UDP'] as const;

export function validateGateway(obj: unknown, loc: ObjectLocation): Gateway {
  const c = new Checker(loc);
  const o = top(c, obj, 'Gateway');
  const { name, namespace, createdAt } = meta(c, o, true);
  const spec = c.obj(o.spec, 'spec', true) ?? {};
  c.keys(
    spec,
    'spec',
    ['gatewayClassName', 'listeners'],
    ['addresses', 'infrastructure', 'backendTLS', 'allowedListeners'],
  );
  const className = objectName(c, spec.gatewayClassName, 'spec.gatewayClassName') ?? '';
  const listeners: Listener[] = [];
  const raw = c.arr(spec.listeners, 'spec.listeners', 64);
  if (spec.listeners === undefined)
    c.bad('spec.listeners', 'required field is missing', 'ERR_K8S_FIELD_MISSING');
  const names = new Set<string>();
  raw.forEach((l, i) => {
    const f = `spec.listeners[${i}]`;
    const lo = c.obj(l, f, true) ?? {};
    c.keys(lo, f, ['name', 'port', 'protocol', 'hostname', 'allowedRoutes', 'tls']);
    const lname = c.str(lo.name, `${f}.name`, true) ?? '';
    if (lname && names.has(lname)) c.bad(`${f}.name`, `listener name '${lname}' is used twice`);
    names.add(lname);
    const port = c.int(lo.port, `${f}.port`, 1, 65535, true) ?? 0;
    // Protocols other than HTTP are kept and reported as unsupported in the listener's status.
    const protocol = c.str(lo.protocol, `${f}.protocol`, true) ?? 'HTTP';
    if (
      !listenerProtocols.includes(protocol as (typeof listenerProtocols)[number]) &&
      !protocol.includes('/')
    )
      c.bad(`${f}.protocol`, `must be one of ${listenerProtocols.join(', ')} or a domain-prefixed protocol`);
    const h = hostname(c, lo.hostname, `${f}.hostname`);
    if (h !== undefined && (protocol === 'TCP' || protocol === 'UDP'))
      c.bad(`${f}.hostname`, `a ${protocol} listener has no hostname`);
    const ar = c.obj(lo.allowedRoutes, `${f}.allowedRoutes`) ?? {};
    c.keys(ar, `${f}.allowedRoutes`, ['namespaces', 'kinds']);
    const ns = c.obj(ar.namespaces, `${f}.allowedRoutes.namespaces`) ?? {};
    c.keys(ns, `${f}.allowedRoutes.namespaces`, ['from', 'selector']);
    const from =
      c.oneOf(ns.from, `${f}.allowedRoutes.namespaces.from`, ['Same', 'All', 'Selector'], 'Same') ?? 'Same';
    let selector: { matchLabels: Record<string, string> } | undefined;
    if (from === 'Selector') {
      const so = c.obj(ns.selector, `${f}.allowedRoutes.namespaces.selector`, true) ?? {};
      c.keys(so, `${f}.allowedRoutes.namespaces.selector`, ['matchLabels'], ['matchExpressions']);
      const ml = c.obj(so.matchLabels, `${f}.allowedRoutes.namespaces.selector.matchLabels`) ?? {};
      const matchLabels: Record<string, string> = {};
      for (const [k, v] of Object.entries(ml))
        matchLabels[k] = c.str(v, `${f}.allowedRoutes.namespaces.selector.matchLabels["${k}"]`) ?? '';
      selector = { matchLabels };
    }
    let kinds: { group: string; kind: string }[] | undefined;
    if (ar.kinds !== undefined) {
      kinds = c.arr(ar.kinds, `${f}.allowedRoutes.kinds`, 8).map((k, j) => {
        const ko = c.obj(k, `${f}.allowedRoutes.kinds[${j}]`, true) ?? {};
        c.keys(ko, `${f}.allowedRoutes.kinds[${j}]`, ['group', 'kind']);
        return {
          group: c.str(ko.group, `${f}.allowedRoutes.kinds[${j}].group`) ?? gatewayGroup,
          kind: c.str(ko.kind, `${f}.allowedRoutes.kinds[${j}].kind`, true) ?? '',
        };
      });
    }
    listeners.push({
      name: lname,
      port,
      protocol,
      ...(h !== undefined ? { hostname: h } : {}),
      allowedRoutes: { from, ...(selector ? { selector } : {}), ...(kinds ? { kinds } : {}) },
      hasTLS: lo.tls !== undefined,
    });
  });
  return finish(c, { namespace, name, createdAt, className, listeners });
}

function parentRefs(c: Checker, v: unknown, field: string): ParentRef[] {
  return c.arr(v, field, 32).map((p, i) => {
    const f = `${field}[${i}]`;
    const o = c.obj(p, f, true) ?? {};
    c.keys(o, f, ['group', 'kind', 'namespace', 'name', 'sectionName', 'port']);
    const ns = namespaceName(c, o.namespace, `${f}.namespace`);
    const section = c.str(o.sectionName, `${f}.sectionName`);
    const port = c.int(o.port, `${f}.port`, 1, 65535);
    return {
      group: c.str(o.group, `${f}.group`) ?? gatewayGroup,
      kind: c.str(o.kind, `${f}.kind`) ?? 'Gateway',
      ...(ns !== undefined ? { namespace: ns } : {}),
      name: objectName(c, o.name, `${f}.name`) ?? '',
      ...(section !== undefined ? { sectionName: section } : {}),
      ...(port !== undefined ? { port } : {}),
    };
  });
}

function headerName(c: Checker, v: unknown, field: string): string {
  const n = c.str(v, field, true) ?? '';
  if (n && !/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(n)) c.bad(field, `'${n}' is not an HTTP header name`);
  return n;
}

function headerModifier(c: Checker, v: unknown, field: string): HeaderModifier {
  const o = c.obj(v, field, true) ?? {};
  c.keys(o, field, ['set', 'add', 'remove']);
  const pairs = (x: unknown, f: string) =>
    c.arr(x, f, 16).map((e, i) => {
      const eo = c.obj(e, `${f}[${i}]`, true) ?? {};
      c.keys(eo, `${f}[${i}]`, ['name', 'value']);
      return {
        name: headerName(c, eo.name, `${f}[${i}].name`),
        value: c.str(eo.value, `${f}[${i}].value`, true) ?? '',
      };
    });
  return {
    set: pairs(o.set, `${field}.set`),
    add: pairs(o.add, `${field}.add`),
    remove: c.arr(o.remove, `${field}.remove`, 16).map((r, i) => headerName(c, r, `${field}.remove[${i}]`)),
  };
}

function pathModifier(c: Checker, v: unknown, field: string): PathModifier | undefined {
  const o = c.obj(v, field);
  if (!o) return undefined;
  c.keys(o, field, ['type', 'replaceFullPath', 'replacePrefixMatch']);
  const type =
    c.oneOf(o.type, `${field}.type`, ['ReplaceFullPath', 'ReplacePrefixMatch']) ?? 'ReplaceFullPath';
  const full = c.str(o.replaceFullPath, `${field}.replaceFullPath`, type === 'ReplaceFullPath');
  const prefix = c.str(o.replacePrefixMatch, `${field}.replacePrefixMatch`, type === 'ReplacePrefixMatch');
  for (const [val, f] of [
    [full, 'replaceFullPath'],
    [prefix, 'replacePrefixMatch'],
  ] as const)
    if (val !== undefined && !val.startsWith('/')) c.bad(`${field}.${f}`, "must start with '/'");
  return {
    type,
    ...(full !== undefined ? { replaceFullPath: full } : {}),
    ...(prefix !== undefined ? { replacePrefixMatch: prefix } : {}),
  };
}

function plainBackendRef(c: Checker, o: Record<string, unknown>, f: string) {
  const ns = namespaceName(c, o.namespace, `${f}.namespace`);
  const port = c.int(o.port, `${f}.port`, 1, 65535);
  return {
    group: c.str(o.group, `${f}.group`) ?? '',
    kind: c.str(o.kind, `${f}.kind`) ?? 'Service',
    ...(ns !== undefined ? { namespace: ns } : {}),
    name: objectName(c, o.name, `${f}.name`) ?? '',
    ...(port !== undefined ? { port } : {}),
  };
}

const filterTypes = [
  'RequestHeaderModifier',
  'ResponseHeaderModifier',
  'RequestRedirect',
  'URLRewrite',
  'RequestMirror',
  'CORS',
] as const;

function filters(c: Checker, v: unknown, field: string, grpc: boolean, backend: boolean): HTTPFilter[] {
  const out: HTTPFilter[] = [];
  const seen = new Set<string>();
  c.arr(v, field, 16).forEach((x, i) => {
    const f = `${field}[${i}]`;
    const o = c.obj(x, f, true) ?? {};
    const allowed: readonly string[] = grpc
      ? ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror']
      : backend
        ? ['RequestHeaderModifier', 'ResponseHeaderModifier']
        : filterTypes;
    const t = c.str(o.type, `${f}.type`, true) ?? '';
    if (t === 'ExtensionRef') {
      c.bad(`${f}.type`, 'filter type ExtensionRef is not supported by weir', 'ERR_GATEWAY_UNSUPPORTED');
      return;
    }
    if (!allowed.includes(t)) {
      c.bad(`${f}.type`, `must be one of ${allowed.join(', ')}`);
      return;
    }
    const key = t[0]!.toLowerCase() + t.slice(1);
    const actual = t === 'CORS' ? 'cors' : t === 'URLRewrite' ? 'urlRewrite' : key;
    c.keys(o, f, ['type', actual]);
    if (t !== 'RequestMirror' && seen.has(t)) c.bad(`${f}.type`, `filter ${t} appears twice in one rule`);
    seen.add(t);
    const body = o[actual];
    switch (t) {
      case 'RequestHeaderModifier':
        out.push({ type: t, requestHeaderModifier: headerModifier(c, body, `${f}.requestHeaderModifier`) });
        break;
      case 'ResponseHeaderModifier':
        out.push({ type: t, responseHeaderModifier: headerModifier(c, body, `${f}.responseHeaderModifier`) });
        break;
      case 'RequestRedirect': {
        const b = c.obj(body, `${f}.requestRedirect`, true) ?? {};
        c.keys(b, `${f}.requestRedirect`, ['scheme', 'hostname', 'path', 'port', 'statusCode']);
        const scheme =
          b.scheme === undefined
            ? undefined
            : c.oneOf(b.scheme, `${f}.requestRedirect.scheme`, ['http', 'https']);
        const h = hostname(c, b.hostname, `${f}.requestRedirect.hostname`);
        const path = pathModifier(c, b.path, `${f}.requestRedirect.path`);
        const port = c.int(b.port, `${f}.requestRedirect.port`, 1, 65535);
        const statusCode = c.int(b.statusCode, `${f}.requestRedirect.statusCode`, 300, 399) ?? 302;
        if (![301, 302, 303, 307, 308].includes(statusCode))
          c.bad(`${f}.requestRedirect.statusCode`, 'must be 301, 302, 303, 307 or 308');
        out.push({
          type: t,
          requestRedirect: {
            ...(scheme ? { scheme } : {}),
            ...(h !== undefined ? { hostname: h } : {}),
            ...(path ? { path } : {}),
            ...(port !== undefined ? { port } : {}),
            statusCode,
          },
        });
        break;
      }
      case 'URLRewrite': {
        const b = c.obj(body, `${f}.urlRewrite`, true) ?? {};
        c.keys(b, `${f}.urlRewrite`, ['hostname', 'path']);
        const h = hostname(c, b.hostname, `${f}.urlRewrite.hostname`);
        const path = pathModifier(c, b.path, `${f}.urlRewrite.path`);
        out.push({
          type: t,
          urlRewrite: { ...(h !== undefined ? { hostname: h } : {}), ...(path ? { path } : {}) },
        });
        break;
      }
      case 'RequestMirror': {
        const b = c.obj(body, `${f}.requestMirror`, true) ?? {};
        c.keys(b, `${f}.requestMirror`, ['backendRef', 'percent', 'fraction']);
        const br = c.obj(b.backendRef, `${f}.requestMirror.backendRef`, true) ?? {};
        c.keys(br, `${f}.requestMirror.backendRef`, ['group', 'kind', 'namespace', 'name', 'port']);
        let fraction = 1;
        if (b.percent !== undefined)
          fraction = (c.int(b.percent, `${f}.requestMirror.percent`, 0, 100) ?? 100) / 100;
        if (b.fraction !== undefined) {
          const fo = c.obj(b.fraction, `${f}.requestMirror.fraction`) ?? {};
          c.keys(fo, `${f}.requestMirror.fraction`, ['numerator', 'denominator']);
          const num = c.int(fo.numerator, `${f}.requestMirror.fraction.numerator`, 0, 1_000_000, true) ?? 0;
          const den = c.int(fo.denominator, `${f}.requestMirror.fraction.denominator`, 1, 1_000_000) ?? 100;
          if (num > den) c.bad(`${f}.requestMirror.fraction`, 'numerator must not exceed denominator');
          fraction = num / den;
        }
        out.push({
          type: t,
          requestMirror: { backendRef: plainBackendRef(c, br, `${f}.requestMirror.backendRef`), fraction },
        });
        break;
      }
      case 'CORS': {
        const b = c.obj(body, `${f}.cors`, true) ?? {};
        c.keys(b, `${f}.cors`, [
          'allowOrigins',
          'allowMethods',
          'allowHeaders',
          'exposeHeaders',
          'allowCredentials',
          'maxAge',
        ]);
        const list = (k: string) =>
          c.arr(b[k], `${f}.cors.${k}`, 64).map((s, j) => c.str(s, `${f}.cors.${k}[${j}]`, true) ?? '');
        const cred = b.allowCredentials;
        if (cred !== undefined && typeof cred !== 'boolean')
          c.bad(`${f}.cors.allowCredentials`, 'must be true or false');
        out.push({
          type: t,
          cors: {
            allowOrigins: list('allowOrigins'),
            allowMethods: list('allowMethods'),
            allowHeaders: list('allowHeaders'),
            exposeHeaders: list('exposeHeaders'),
            allowCredentials: cred === true,
            maxAge: c.int(b.maxAge, `${f}.cors.maxAge`, 1, 86_400 * 365) ?? 5,
          },
        });
        break;
      }
    }
  });
  const has = (t: string) => out.some((x) => x.type === t);
  if (has('RequestRedirect') && has('URLRewrite'))
    c.bad(field, 'RequestRedirect and URLRewrite cannot be used in the same rule');
  return out;
}

function stringMatches(c: Checker, v: unknown, field: string): StringMatch[] {
  return c.arr(v, field, 16).map((x, i) => {
    const f = `${field}[${i}]`;
    const o = c.obj(x, f, true) ?? {};
    c.keys(o, f, ['type', 'name', 'value']);
    const type = c.oneOf(o.type, `${f}.type`, ['Exact', 'RegularExpression'], 'Exact') ?? 'Exact';
    const value = c.str(o.value, `${f}.value`, true) ?? '';
    if (type === 'RegularExpression') {
      const p = l7RegexProblem(value);
      if (p) c.bad(`${f}.value`, p);
    }
    return { type, name: headerName(c, o.name, `${f}.name`), value };
  });
}

const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

function backendRefs(c: Checker, v: unknown, field: string, grpc: boolean): BackendRef[] {
  return c.arr(v, field, 16).map((x, i) => {
    const f = `${field}[${i}]`;
    const o = c.obj(x, f, true) ?? {};
    c.keys(o, f, ['group', 'kind', 'namespace', 'name', 'port', 'weight', 'filters']);
    return {
      ...plainBackendRef(c, o, f),
      weight: c.int(o.weight, `${f}.weight`, 0, 1_000_000) ?? 1,
      filters: filters(c, o.filters, `${f}.filters`, grpc, true),
    };
  });
}

function routeCommon(c: Checker, obj: unknown, kind: 'HTTPRoute' | 'GRPCRoute') {
  const o = top(c, obj, kind);
  const m = meta(c, o, true);
  const spec = c.obj(o.spec, 'spec', true) ?? {};
  c.keys(spec, 'spec', ['parentRefs', 'hostnames', 'rules'], ['useDefaultGateways']);
  const hostnames = c
    .arr(spec.hostnames, 'spec.hostnames', 16)
    .map((h, i) => hostname(c, h, `spec.hostnames[${i}]`) ?? '');
  return { kind, o, m, spec, parentRefs: parentRefs(c, spec.parentRefs, 'spec.parentRefs'), hostnames };
}

/** A rule's name, filters and backends, checked after its matches; `extra` (timeouts, retry) goes last. */
function routeRule(
  c: Checker,
  ro: Record<string, unknown>,
  f: string,
  grpc: boolean,
  matches: HTTPRouteMatch[],
  extra: Pick<RouteRule, 'timeouts' | 'retry'>,
): RouteRule {
  const name = c.str(ro.name, `${f}.name`);
  return {
    ...(name !== undefined ? { name } : {}),
    matches,
    filters: filters(c, ro.filters, `${f}.filters`, grpc, false),
    backendRefs: backendRefs(c, ro.backendRefs, `${f}.backendRefs`, grpc),
    ...extra,
  };
}

/** The route of `routeCommon`'s parts and its rules: the one default rule when spec.rules is absent. */
function finishRoute(c: Checker, common: ReturnType<typeof routeCommon>, rules: RouteRule[]): Route {
  const { kind, m, spec, parentRefs, hostnames } = common;
  if (spec.rules === undefined) rules.push(defaultRule());
  return finish(c, {
    kind,
    namespace: m.namespace,
    name: m.name,
    createdAt: m.createdAt,
    parentRefs,
    hostnames,
    rules,
  });
}

export function validateHTTPRoute(obj: unknown, loc: ObjectLocation): Route {
  const c = new Checker(loc);
  const common = routeCommon(c, obj, 'HTTPRoute');
  const { spec } = common;
  const rules = c.arr(spec.rules, 'spec.rules', 64).map((r, i): RouteRule => {
    const f = `spec.rules[${i}]`;
    const ro = c.obj(r, f, true) ?? {};
    c.keys(ro, f, ['name', 'matches', 'filters', 'backendRefs', 'timeouts', 'retry'], ['sessionPersistence']);
    const rawMatches = ro.matches === undefined ? [{}] : c.arr(ro.matches, `${f}.matches`, 64);
    const matches = rawMatches.map((x, j): HTTPRouteMatch => {
      const mf = `${f}.matches[${j}]`;
      const mo = c.obj(x, mf, true) ?? {};
      c.keys(mo, mf, ['path', 'headers', 'queryParams', 'method']);
      const po = c.obj(mo.path, `${mf}.path`) ?? {};
      c.keys(po, `${mf}.path`, ['type', 'value']);
      const ptype =
        c.oneOf(po.type, `${mf}.path.type`, ['Exact', 'PathPrefix', 'RegularExpression'], 'PathPrefix') ??
        'PathPrefix';
      const pvalue = c.str(po.value, `${mf}.path.value`) ?? '/';
      if (ptype !== 'RegularExpression' && !pvalue.startsWith('/'))
        c.bad(`${mf}.path.value`, "must start with '/'");
      if (ptype === 'RegularExpression') {
        const p = l7RegexProblem(pvalue);
        if (p) c.bad(`${mf}.path.value`, p);
      }
      const method = mo.method === undefined ? undefined : c.oneOf(mo.method, `${mf}.method`, methods);
      return {
        path: { type: ptype, value: pvalue },
        headers: stringMatches(c, mo.headers, `${mf}.headers`),
        queryParams: stringMatches(c, mo.queryParams, `${mf}.queryParams`),
        ...(method ? { method } : {}),
      };
    });
    const to = c.obj(ro.timeouts, `${f}.timeouts`) ?? {};
    c.keys(to, `${f}.timeouts`, ['request', 'backendRequest']);
    const timeouts: RouteRule['timeouts'] = {};
    for (const k of ['request', 'backendRequest'] as const) {
      const s = c.str(to[k], `${f}.timeouts.${k}`);
      if (s === undefined) continue;
      const ms = parseDuration(s);
      if (ms === undefined) c.bad(`${f}.timeouts.${k}`, `'${s}' is not a duration (e.g. 500ms, 10s, 1m)`);
      else if (ms > 0) timeouts[k] = ms;
    }
    if (
      timeouts.request !== undefined &&
      timeouts.backendRequest !== undefined &&
      timeouts.backendRequest > timeouts.request
    )
      c.bad(`${f}.timeouts.backendRequest`, 'must not be longer than timeouts.request');
    let retry: RouteRule['retry'];
    const re = c.obj(ro.retry, `${f}.retry`);
    if (re) {
      c.keys(re, `${f}.retry`, ['attempts', 'codes', 'backoff']);
      const b = c.str(re.backoff, `${f}.retry.backoff`);
      const backoffMs = b === undefined ? undefined : parseDuration(b);
      if (b !== undefined && backoffMs === undefined) c.bad(`${f}.retry.backoff`, `'${b}' is not a duration`);
      retry = {
        attempts: c.int(re.attempts, `${f}.retry.attempts`, 0, 100) ?? 1,
        codes: c
          .arr(re.codes, `${f}.retry.codes`, 32)
          .map((x, j) => c.int(x, `${f}.retry.codes[${j}]`, 400, 599, true) ?? 0),
        ...(backoffMs !== undefined ? { backoffMs } : {}),
      };
    }
    return routeRule(c, ro, f, false, matches, { timeouts, ...(retry ? { retry } : {}) });
  });
  return finishRoute(c, common, rules);
}

const defaultRule = (): RouteRule => ({
  matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }],
  filters: [],
  backendRefs: [],
  timeouts: {},
});

const grpcName = /^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$/;

export function validateGRPCRoute(obj: unknown, loc: ObjectLocation): Route {
  const c = new Checker(loc);
  const common = routeCommon(c, obj, 'GRPCRoute');
  const { spec } = common;
  const rules = c.arr(spec.rules, 'spec.rules', 16).map((r, i): RouteRule => {
    const f = `spec.rules[${i}]`;
    const ro = c.obj(r, f, true) ?? {};
    c.keys(ro, f, ['name', 'matches', 'filters', 'backendRefs'], ['sessionPersistence']);
    const rawMatches = ro.matches === undefined ? [{}] : c.arr(ro.matches, `${f}.matches`, 64);
    const matches = rawMatches.map((x, j): HTTPRouteMatch => {
      const mf = `${f}.matches[${j}]`;
      const mo = c.obj(x, mf, true) ?? {};
      c.keys(mo, mf, ['method', 'headers']);
      const me = c.obj(mo.method, `${mf}.method`);
      let path: HTTPRouteMatch['path'] = { type: 'PathPrefix', value: '/' };
      if (me) {
        c.keys(me, `${mf}.method`, ['type', 'service', 'method']);
        const type =
          c.oneOf(me.type, `${mf}.method.type`, ['Exact', 'RegularExpression'], 'Exact') ?? 'Exact';
        const service = c.str(me.service, `${mf}.method.service`);
        const method = c.str(me.method, `${mf}.method.method`);
        if (service === undefined && method === undefined)
          c.bad(`${mf}.method`, 'one of service or method must be given');
        if (type === 'Exact') {
          if (service !== undefined && !grpcName.test(service))
            c.bad(`${mf}.method.service`, `'${service}' is not a gRPC service name`);
          if (method !== undefined && !/^[A-Za-z_][A-Za-z_0-9]*$/.test(method))
            c.bad(`${mf}.method.method`, `'${method}' is not a gRPC method name`);
          const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
          if (service !== undefined && method !== undefined)
            path = { type: 'Exact', value: `/${service}/${method}` };
          else if (service !== undefined) path = { type: 'PathPrefix', value: `/${service}` };
          else path = { type: 'RegularExpression', value: `/[^/]+/${esc(method ?? '')}` };
        } else {
          for (const [v, k] of [
            [service, 'service'],
            [method, 'method'],
          ] as const)
            if (v !== undefined) {
              const p = l7RegexProblem(v);
              if (p) c.bad(`${mf}.method.${k}`, p);
            }
          path = { type: 'RegularExpression', value: `/${service ?? '[^/]+'}/${method ?? '[^/]+'}` };
        }
      }
      return { path, headers: stringMatches(c, mo.headers, `${mf}.headers`), queryParams: [] };
    });
    return routeRule(c, ro, f, true, matches, { timeouts: {} });
  });
  return finishRoute(c, common, rules);
}

export function validateReferenceGrant(obj: unknown, loc: ObjectLocation): ReferenceGrant {
  const c = new Checker(loc);
  const o = top(c, obj, 'ReferenceGrant');
  const { name, namespace } = meta(c, o, true);
  const spec = c.obj(o.spec, 'spec', true) ?? {};
  c.keys(spec, 'spec', ['from', 'to']);
  const from = c.arr(spec.from, 'spec.from', 16).map((x, i) => {
    const f = `spec.from[${i}]`;
    const fo = c.obj(x, f, true) ?? {};
    c.keys(fo, f, ['group', 'kind', 'namespace']);
    return {
      group: c.str(fo.group, `${f}.group`, true) ?? '',
      kind: c.str(fo.kind, `${f}.kind`, true) ?? '',
      namespace: namespaceName(c, fo.namespace, `${f}.namespace`) ?? '',
    };
  });
  const to = c.arr(spec.to, 'spec.to', 16).map((x, i) => {
    const f = `spec.to[${i}]`;
    const tobj = c.obj(x, f, true) ?? {};
    c.keys(tobj, f, ['group', 'kind', 'name']);
    const n = c.str(tobj.name, `${f}.name`);
    return {
      group: c.str(tobj.group, `${f}.group`, true) ?? '',
      kind: c.str(tobj.kind, `${f}.kind`, true) ?? '',
      ...(n !== undefined ? { name: n } : {}),
    };
  });
  if (from.length === 0) c.bad('spec.from', 'at least one entry', 'ERR_K8S_FIELD_MISSING');
  if (to.length === 0) c.bad('spec.to', 'at least one entry', 'ERR_K8S_FIELD_MISSING');
  return finish(c, { namespace, name, from, to });
}

const v1 = `${gatewayGroup}/v1`;
const v1beta1 = `${gatewayGroup}/v1beta1`;

/** The kinds, for the manifest loader (v1, and v1beta1 where the API still serves it). */
export const gatewayKinds = [
  { apiVersion: v1, kind: 'GatewayClass', namespaced: false, validate: validateGatewayClass },
  { apiVersion: v1beta1, kind: 'GatewayClass', namespaced: false, validate: validateGatewayClass },
  { apiVersion: v1, kind: 'Gateway', namespaced: true, validate: validateGateway },
  { apiVersion: v1beta1, kind: 'Gateway', namespaced: true, validate: validateGateway },
  { apiVersion: v1, kind: 'HTTPRoute', namespaced: true, validate: validateHTTPRoute },
  { apiVersion: v1beta1, kind: 'HTTPRoute', namespaced: true, validate: validateHTTPRoute },
  { apiVersion: v1, kind: 'GRPCRoute', namespaced: true, validate: validateGRPCRoute },
  { apiVersion: v1beta1, kind: 'ReferenceGrant', namespaced: true, validate: validateReferenceGrant },
  { apiVersion: v1, kind: 'ReferenceGrant', namespaced: true, validate: validateReferenceGrant },
  {
    apiVersion: 'gateway.envoyproxy.io/v1alpha1',
    kind: 'BackendTrafficPolicy',
    namespaced: true,
    validate: (obj: unknown, loc: ObjectLocation) => validateBackendTrafficPolicy(obj, loc),
  },
] as const;

export function isGatewayKind(kind: unknown): boolean {
  return gatewayKinds.some((k) => k.kind === kind);
}

// ---- Envoy Gateway's BackendTrafficPolicy (gateway.envoyproxy.io/v1alpha1), the part weir runs ----

export interface BackendTrafficPolicy {
  namespace: string;
  name: string;
  createdAt: string;
  targetRefs: {
    group: string;
    kind: 'Gateway' | 'HTTPRoute' | 'GRPCRoute' | 'Service';
    name: string;
    sectionName?: string;
  }[];
  /** Local rate limit: buckets per policy and route rule (Envoy's local rate limit descriptors). */
  rateLimit?: LocalRateLimit;
  /** Envoy's circuit breaker thresholds per backend (Envoy Gateway's defaults: 1024 each). */
  circuitBreaker?: CircuitBreaker;
  /** Outlier detection (Envoy Gateway's healthCheck.passive). */
  passiveHealthCheck?: PassiveHealthCheck;
  retry?: BackendRetry;
  timeout?: BackendTimeout;
}

export interface LocalRateLimit {
  /** The rule without clientSelectors: requests matching no selector rule count here. */
  default?: { requests: number; unitMs: number };
  /** Rules with clientSelectors, ORed: a request counts in every rule it matches (each selector's conditions ANDed). */
  selectors: RateLimitSelectorRule[];
}

export interface RateLimitSelectorRule {
  requests: number;
  unitMs: number;
  /** Any of these matches (Envoy Gateway's clientSelectors list). */
  clientSelectors: {
    headers: { name: string; type: 'Exact' | 'RegularExpression' | 'Distinct'; value?: string }[];
    /** Distinct: a bucket per client address inside the CIDR. */
    sourceCIDR?: { type: 'Exact' | 'Distinct'; value: string };
  }[];
}

export interface CircuitBreaker {
  maxConnections: number;
  maxPendingRequests: number;
  maxParallelRequests: number;
  maxParallelRetries: number;
}

export interface PassiveHealthCheck {
  /** 0 = off. */
  consecutive5xx: number;
  /** 0 = off (Envoy Gateway's default). */
  consecutiveGateway: number;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionPercent: number;
}

/** The HTTP retry triggers of Envoy (x-envoy-retry-on) that weir runs. */
export const retryTriggers = [
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
] as const;
export type RetryTrigger = (typeof retryTriggers)[number];

export interface BackendRetry {
  numRetries: number;
  triggers: RetryTrigger[];
  statusCodes: number[];
  /** Each attempt's own deadline (Envoy's per_try_timeout). */
  perTryTimeoutMs?: number;
  /** Fully jittered exponential back-off: retry n waits uniform [0, min(max, base·(2^n − 1))). */
  baseIntervalMs: number;
  maxIntervalMs: number;
  /** Envoy's retry_budget: outstanding retries ≤ max(minRetryConcurrency, percent % of active requests). */
  budget?: { percent: number; minRetryConcurrency: number };
}

export interface BackendTimeout {
  connectMs?: number;
  requestMs?: number;
  idleMs?: number;
  maxConnectionDurationMs?: number;
}

const rateUnits: Record<string, number> = { Second: 1000, Minute: 60_000, Hour: 3_600_000, Day: 86_400_000 };
const u32 = 4_294_967_295;

/** metav1.Duration as Envoy Gateway takes it (Go's time.ParseDuration: 1.5s, 300ms, 1h2m). */
export function parseGoDuration(s: string): number | undefined {
  if (!/^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|µs|ns))+$/.test(s)) return undefined;
  const unit: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    us: 1e-3,
    µs: 1e-3,
    ns: 1e-6,
  };
  let ms = 0;
  for (const [, n, u] of s.matchAll(/([0-9]+(?:\.[0-9]+)?)(h|ms|m|s|us|µs|ns)/g))
    ms += Number(n) * (unit[u ?? ''] ?? 0);
  return ms;
}

function duration(c: Checker, v: unknown, field: string, min = 0): number | undefined {
  const s = c.str(v, field);
  if (s === undefined) return undefined;
  const ms = parseGoDuration(s);
  if (ms === undefined) return c.bad(field, `'${s}' is not a duration (e.g. 500ms, 1.5s, 1m)`);
  if (ms < min) return c.bad(field, `must be at least ${min}ms`);
  return ms;
}

export function validateBackendTrafficPolicy(obj: unknown, loc: ObjectLocation): BackendTrafficPolicy {
  const c = new Checker(loc);
  const o = top(c, obj, 'BackendTrafficPolicy');
  const m = meta(c, o, true);
  const spec = c.obj(o.spec, 'spec', true) ?? {};
  c.keys(
    spec,
    'spec',
    ['targetRefs', 'targetRef', 'rateLimit', 'circuitBreaker', 'healthCheck', 'retry', 'timeout'],
    [
      'targetSelectors',
      'mergeType',
      'loadBalancer',
      'proxyProtocol',
      'tcpKeepalive',
      'faultInjection',
      'connection',
      'dns',
      'http2',
      'responseOverride',
      'compression',
      'useClientProtocol',
      'requestBuffer',
      'httpUpgrade',
      'telemetry',
    ],
  );
  const refs =
    spec.targetRefs !== undefined
      ? c.arr(spec.targetRefs, 'spec.targetRefs', 16)
      : spec.targetRef !== undefined
        ? [spec.targetRef]
        : [];
  if (refs.length === 0) c.bad('spec.targetRefs', 'required field is missing', 'ERR_K8S_FIELD_MISSING');
  const targetRefs = refs.map((r, i) => {
    const f = spec.targetRefs !== undefined ? `spec.targetRefs[${i}]` : 'spec.targetRef';
    const ro = c.obj(r, f, true) ?? {};
    c.keys(ro, f, ['group', 'kind', 'name', 'sectionName']);
    const kind =
      c.oneOf(ro.kind, `${f}.kind`, ['Gateway', 'HTTPRoute', 'GRPCRoute', 'Service'] as const) ?? 'Gateway';
    const section = c.str(ro.sectionName, `${f}.sectionName`);
    if (section !== undefined)
      c.bad(`${f}.sectionName`, `${f}.sectionName is not supported by weir`, 'ERR_GATEWAY_UNSUPPORTED');
    // A Service is a core object (group ""); the others are Gateway API's.
    const group = c.str(ro.group, `${f}.group`) ?? (kind === 'Service' ? '' : gatewayGroup);
    if (group !== (kind === 'Service' ? '' : gatewayGroup))
      c.bad(
        `${f}.group`,
        `group ${JSON.stringify(group)} does not hold kind ${kind}`,
        'ERR_GATEWAY_UNSUPPORTED',
      );
    return {
      group,
      kind,
      name: objectName(c, ro.name, `${f}.name`) ?? '',
    };
  });
  let rateLimit: BackendTrafficPolicy['rateLimit'];
  const rl = c.obj(spec.rateLimit, 'spec.rateLimit');
  if (rl) {
    c.keys(rl, 'spec.rateLimit', ['type', 'local'], ['global']);
    if (rl.type !== undefined && rl.type !== 'Local')
      c.bad(
        'spec.rateLimit.type',
        `rate limit type ${String(rl.type)} is not supported by weir (Local only)`,
        'ERR_GATEWAY_UNSUPPORTED',
      );
    const local = c.obj(rl.local, 'spec.rateLimit.local', true);
    const rules = local ? c.arr(local.rules, 'spec.rateLimit.local.rules', 64) : [];
    if (local) c.keys(local, 'spec.rateLimit.local', ['rules']);
    if (local && rules.length === 0)
      c.bad('spec.rateLimit.local.rules', 'required field is missing', 'ERR_K8S_FIELD_MISSING');
    const out: LocalRateLimit = { selectors: [] };
    rules.forEach((r, ri) => {
      const f = `spec.rateLimit.local.rules[${ri}]`;
      const ro = c.obj(r, f, true) ?? {};
      c.keys(ro, f, ['limit', 'clientSelectors'], ['cost', 'shared', 'shadowMode']);
      const lim = c.obj(ro.limit, `${f}.limit`, true) ?? {};
      c.keys(lim, `${f}.limit`, ['requests', 'unit']);
      const requests = c.int(lim.requests, `${f}.limit.requests`, 1, 1_000_000_000, true) ?? 1;
      const unit = c.oneOf(lim.unit, `${f}.limit.unit`, Object.keys(rateUnits)) ?? 'Second';
      const unitMs = rateUnits[unit] ?? 1000;
      const sels = c.arr(ro.clientSelectors, `${f}.clientSelectors`, 8);
      if (sels.length === 0) {
        if (out.default) c.bad(f, 'only one rule may go without clientSelectors');
        out.default = { requests, unitMs };
        return;
      }
      const clientSelectors = sels.map((sel, si) => {
        const sf = `${f}.clientSelectors[${si}]`;
        const so = c.obj(sel, sf, true) ?? {};
        c.keys(so, sf, ['headers', 'sourceCIDR'], ['methods', 'path', 'queryParams']);
        const headers = c.arr(so.headers, `${sf}.headers`, 16).map((h, hi) => {
          const hf = `${sf}.headers[${hi}]`;
          const ho = c.obj(h, hf, true) ?? {};
          c.keys(ho, hf, ['name', 'type', 'value'], ['invert']);
          const type =
            c.oneOf(ho.type, `${hf}.type`, ['Exact', 'RegularExpression', 'Distinct'] as const, 'Exact') ??
            'Exact';
          const value = c.str(ho.value, `${hf}.value`, type !== 'Distinct');
          if (type === 'Distinct' && value !== undefined)
            c.bad(`${hf}.value`, 'a Distinct header match takes no value');
          if (type === 'RegularExpression' && value !== undefined) {
            const problem = l7RegexProblem(value);
            if (problem) c.bad(`${hf}.value`, problem);
          }
          return {
            name: (c.str(ho.name, `${hf}.name`, true) ?? '').toLowerCase(),
            type,
            ...(value !== undefined && type !== 'Distinct' ? { value } : {}),
          };
        });
        let sourceCIDR: RateLimitSelectorRule['clientSelectors'][number]['sourceCIDR'];
        const cidr = c.obj(so.sourceCIDR, `${sf}.sourceCIDR`);
        if (cidr) {
          c.keys(cidr, `${sf}.sourceCIDR`, ['type', 'value']);
          const value = c.str(cidr.value, `${sf}.sourceCIDR.value`, true) ?? '';
          if (value && !parseCidr4(value)) c.bad(`${sf}.sourceCIDR.value`, `'${value}' is not an IPv4 CIDR`);
          sourceCIDR = {
            type:
              c.oneOf(cidr.type, `${sf}.sourceCIDR.type`, ['Exact', 'Distinct'] as const, 'Exact') ?? 'Exact',
            value,
          };
        }
        if (headers.length === 0 && !sourceCIDR) c.bad(sf, 'a client selector needs headers or sourceCIDR');
        return { headers, ...(sourceCIDR ? { sourceCIDR } : {}) };
      });
      out.selectors.push({ requests, unitMs, clientSelectors });
    });
    rateLimit = out;
  }
  let circuitBreaker: CircuitBreaker | undefined;
  const cb = c.obj(spec.circuitBreaker, 'spec.circuitBreaker');
  if (cb) {
    const f = 'spec.circuitBreaker';
    c.keys(
      cb,
      f,
      ['maxConnections', 'maxPendingRequests', 'maxParallelRequests', 'maxParallelRetries'],
      ['maxRequestsPerConnection', 'perEndpoint'],
    );
    const n = (k: string) => c.int(cb[k], `${f}.${k}`, 0, u32) ?? 1024;
    circuitBreaker = {
      maxConnections: n('maxConnections'),
      maxPendingRequests: n('maxPendingRequests'),
      maxParallelRequests: n('maxParallelRequests'),
      maxParallelRetries: n('maxParallelRetries'),
    };
  }
  let passiveHealthCheck: PassiveHealthCheck | undefined;
  const hc = c.obj(spec.healthCheck, 'spec.healthCheck');
  if (hc) {
    c.keys(hc, 'spec.healthCheck', ['passive'], ['active', 'panicThreshold']);
    const pa = c.obj(hc.passive, 'spec.healthCheck.passive');
    if (pa) {
      const f = 'spec.healthCheck.passive';
      c.keys(
        pa,
        f,
        [
          'interval',
          'consecutive5XxErrors',
          'consecutiveGatewayErrors',
          'baseEjectionTime',
          'maxEjectionPercent',
          'splitExternalLocalOriginErrors',
        ],
        ['consecutiveLocalOriginFailures', 'failurePercentageThreshold'],
      );
      if (pa.splitExternalLocalOriginErrors === true)
        c.bad(
          `${f}.splitExternalLocalOriginErrors`,
          `${f}.splitExternalLocalOriginErrors: true is not supported by weir (local-origin errors count as 5xx)`,
          'ERR_GATEWAY_UNSUPPORTED',
        );
      else if (pa.splitExternalLocalOriginErrors !== undefined && pa.splitExternalLocalOriginErrors !== false)
        c.bad(`${f}.splitExternalLocalOriginErrors`, 'must be a boolean');
      passiveHealthCheck = {
        consecutive5xx: c.int(pa.consecutive5XxErrors, `${f}.consecutive5XxErrors`, 0, u32) ?? 5,
        consecutiveGateway: c.int(pa.consecutiveGatewayErrors, `${f}.consecutiveGatewayErrors`, 0, u32) ?? 0,
        intervalMs: duration(c, pa.interval, `${f}.interval`, 1) ?? 3000,
        baseEjectionMs: duration(c, pa.baseEjectionTime, `${f}.baseEjectionTime`, 1) ?? 30_000,
        maxEjectionPercent: c.int(pa.maxEjectionPercent, `${f}.maxEjectionPercent`, 0, 100) ?? 10,
      };
    }
  }
  let retry: BackendRetry | undefined;
  const re = c.obj(spec.retry, 'spec.retry');
  if (re) {
    const f = 'spec.retry';
    // `budget` is weir's: Envoy's retry_budget, which Envoy Gateway's CRD does not expose.
    c.keys(re, f, ['numRetries', 'retryOn', 'perRetry', 'budget'], ['numAttemptsPerPriority']);
    const on = c.obj(re.retryOn, `${f}.retryOn`);
    let triggers: RetryTrigger[] = ['connect-failure', 'refused-stream', 'retriable-status-codes'];
    let statusCodes = [503];
    if (on) {
      c.keys(on, `${f}.retryOn`, ['triggers', 'httpStatusCodes']);
      triggers = [];
      c.arr(on.triggers, `${f}.retryOn.triggers`, 16).forEach((t, i) => {
        const tf = `${f}.retryOn.triggers[${i}]`;
        if (
          ['cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable'].includes(
            String(t),
          )
        )
          c.bad(tf, `gRPC retry trigger '${String(t)}' is not supported by weir`, 'ERR_GATEWAY_UNSUPPORTED');
        else {
          const v = c.oneOf(t, tf, retryTriggers);
          if (v) triggers.push(v);
        }
      });
      statusCodes = c
        .arr(on.httpStatusCodes, `${f}.retryOn.httpStatusCodes`, 64)
        .map((x, i) => c.int(x, `${f}.retryOn.httpStatusCodes[${i}]`, 100, 599) ?? 0);
      if (statusCodes.length > 0 && !triggers.includes('retriable-status-codes'))
        c.bad(
          `${f}.retryOn.httpStatusCodes`,
          "needs the 'retriable-status-codes' trigger (as Envoy: the codes alone retry nothing)",
        );
    }
    const per = c.obj(re.perRetry, `${f}.perRetry`);
    if (per) c.keys(per, `${f}.perRetry`, ['timeout', 'backOff']);
    const bo = c.obj(per?.backOff, `${f}.perRetry.backOff`);
    if (bo) c.keys(bo, `${f}.perRetry.backOff`, ['baseInterval', 'maxInterval']);
    const baseIntervalMs = duration(c, bo?.baseInterval, `${f}.perRetry.backOff.baseInterval`, 1) ?? 25;
    const maxIntervalMs =
      duration(c, bo?.maxInterval, `${f}.perRetry.backOff.maxInterval`, 1) ?? 10 * baseIntervalMs;
    if (maxIntervalMs < baseIntervalMs)
      c.bad(`${f}.perRetry.backOff.maxInterval`, 'must not be shorter than baseInterval');
    const perTryTimeoutMs = duration(c, per?.timeout, `${f}.perRetry.timeout`, 1);
    let budget: BackendRetry['budget'];
    const bu = c.obj(re.budget, `${f}.budget`);
    if (bu) {
      c.keys(bu, `${f}.budget`, ['budgetPercent', 'minRetryConcurrency']);
      budget = {
        percent: c.int(bu.budgetPercent, `${f}.budget.budgetPercent`, 0, 100) ?? 20,
        minRetryConcurrency: c.int(bu.minRetryConcurrency, `${f}.budget.minRetryConcurrency`, 0, u32) ?? 3,
      };
    }
    retry = {
      numRetries: c.int(re.numRetries, `${f}.numRetries`, 0, 100) ?? 2,
      triggers,
      statusCodes,
      ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}),
      baseIntervalMs,
      maxIntervalMs,
      ...(budget ? { budget } : {}),
    };
  }
  let timeout: BackendTimeout | undefined;
  const to = c.obj(spec.timeout, 'spec.timeout');
  if (to) {
    c.keys(to, 'spec.timeout', ['tcp', 'http']);
    const tcp = c.obj(to.tcp, 'spec.timeout.tcp');
    if (tcp) c.keys(tcp, 'spec.timeout.tcp', ['connectTimeout']);
    const ht = c.obj(to.http, 'spec.timeout.http');
    if (ht)
      c.keys(ht, 'spec.timeout.http', ['requestTimeout', 'connectionIdleTimeout', 'maxConnectionDuration']);
    const t: BackendTimeout = {};
    const connectMs = duration(c, tcp?.connectTimeout, 'spec.timeout.tcp.connectTimeout', 1);
    const requestMs = duration(c, ht?.requestTimeout, 'spec.timeout.http.requestTimeout');
    const idleMs = duration(c, ht?.connectionIdleTimeout, 'spec.timeout.http.connectionIdleTimeout');
    const maxMs = duration(c, ht?.maxConnectionDuration, 'spec.timeout.http.maxConnectionDuration');
    // 0 = no limit, as in Envoy.
    if (connectMs) t.connectMs = connectMs;
    if (requestMs) t.requestMs = requestMs;
    if (idleMs) t.idleMs = idleMs;
    if (maxMs) t.maxConnectionDurationMs = maxMs;
    timeout = t;
  }
  return finish(c, {
    namespace: m.namespace,
    name: m.name,
    createdAt: m.createdAt,
    targetRefs,
    ...(rateLimit ? { rateLimit } : {}),
    ...(circuitBreaker ? { circuitBreaker } : {}),
    ...(passiveHealthCheck ? { passiveHealthCheck } : {}),
    ...(retry ? { retry } : {}),
    ...(timeout ? { timeout } : {}),
  });
}
