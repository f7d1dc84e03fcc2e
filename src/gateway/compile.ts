// The gateway compiler: Gateway API objects plus the Services and Namespaces they name in, route
// tables and statuses out. Pure (no I/O, no clock): the agent compiles what is stored and hands the
// tables to the node proxy; `weir route trace` and the conformance replay compile the same way.
//
// A table is what one port of the proxy serves: for a Gateway, one per listener port (listeners on
// that port are told apart by hostname, most specific first — listener isolation); for the mesh
// (GAMMA), one per Service port that a route names as its parent. Rules are sorted once, here, by
// the Gateway API's precedence (see `ruleOrder`), so the proxy takes the first entry that matches.
import {
  type BackendTrafficPolicy,
  gatewayGroup,
  weirController,
  type BackendRef,
  type Gateway,
  type GatewayClass,
  type HTTPFilter,
  type HTTPRouteMatch,
  type Listener,
  type ParentRef,
  type ReferenceGrant,
  type Route,
  type RouteRule,
} from './api.js';

export interface ServicePortInfo {
  name?: string;
  port: number;
  targetPort?: number | string;
  appProtocol?: string;
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  clusterIP?: string;
  ports: ServicePortInfo[];
}

/** What the compiler reads. */
export interface GatewayWorld {
  /** Namespace name → its labels. */
  namespaces: Map<string, Record<string, string>>;
  services: ServiceInfo[];
  classes: GatewayClass[];
  gateways: Gateway[];
  routes: Route[];
  grants: ReferenceGrant[];
  /** Gateway "ns/name" → its address (allocated by the API). */
  addresses: Map<string, string>;
  /** Envoy Gateway BackendTrafficPolicies. */
  policies?: BackendTrafficPolicy[];
}

/** The BackendTrafficPolicy in force for a rule: the route's own, else its Gateway's. */
export interface EntryPolicy {
  /** "ns/name" of the policy; with the rule, the key of its rate-limit bucket. */
  policy: string;
  rateLimit?: BackendTrafficPolicy['rateLimit'];
  circuitBreaker?: BackendTrafficPolicy['circuitBreaker'];
  passiveHealthCheck?: BackendTrafficPolicy['passiveHealthCheck'];
  retry?: BackendTrafficPolicy['retry'];
  timeout?: BackendTrafficPolicy['timeout'];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface RouteRef {
  kind: 'HTTPRoute' | 'GRPCRoute';
  namespace: string;
  name: string;
}

export interface CompiledBackend {
  namespace: string;
  name: string;
  port: number;
  weight: number;
  /** Why it cannot be used (the request it is chosen for gets 500), or undefined. */
  invalid?: string;
  appProtocol?: string;
  filters: HTTPFilter[];
}

export interface CompiledMirror {
  namespace: string;
  name: string;
  port: number;
  fraction: number;
  invalid?: string;
}

/** One match of one rule, ready to test: the table's unit. */
export interface TableEntry {
  route: RouteRef;
  ruleIndex: number;
  ruleName?: string;
  matchIndex: number;
  /** Hostnames the entry serves (intersected with the listener's); empty = any. */
  hostnames: string[];
  match: HTTPRouteMatch;
  filters: HTTPFilter[];
  backends: CompiledBackend[];
  mirrors: CompiledMirror[];
  timeouts: RouteRule['timeouts'];
  retry?: RouteRule['retry'];
  /** Mesh: only requests from pods of this namespace (a consumer route). */
  fromNamespace?: string;
  /** BackendTrafficPolicy: rate limit, circuit breaker, outlier detection, retry, timeouts. */
  policy?: EntryPolicy;
}

export interface ListenerTable {
  listener: string;
  /** The listener's hostname; undefined = any. */
  hostname?: string;
  entries: TableEntry[];
}

/** What a Gateway's port serves. */
export interface GatewayPortTable {
  gateway: string;
  address?: string;
  port: number;
  /** Most specific hostname first. */
  listeners: ListenerTable[];
}

/** What a Service port serves when routes name the Service as their parent (GAMMA). */
export interface MeshPortTable {
  service: string;
  clusterIP?: string;
  port: number;
  entries: TableEntry[];
}

export interface ListenerStatus {
  name: string;
  supportedKinds: { group: string; kind: string }[];
  attachedRoutes: number;
  conditions: Condition[];
}

export interface GatewayStatus {
  namespace: string;
  name: string;
  className: string;
  address?: string;
  conditions: Condition[];
  listeners: ListenerStatus[];
}

export interface RouteParentStatus {
  parentRef: ParentRef;
  controllerName: string;
  conditions: Condition[];
}

export interface RouteStatus extends RouteRef {
  parents: RouteParentStatus[];
}

export interface Compiled {
  classes: { name: string; conditions: Condition[] }[];
  gateways: GatewayStatus[];
  routes: RouteStatus[];
  gatewayPorts: GatewayPortTable[];
  meshPorts: MeshPortTable[];
}

const cond = (type: string, ok: boolean, reason: string, message = ''): Condition => ({
  type,
  status: ok ? 'True' : 'False',
  reason,
  message,
});

const key = (ns: string, name: string) => `${ns}/${name}`;

/** Whether `host` (a request's host or a hostname with a wildcard) is matched by `pattern`. */
export function hostMatches(pattern: string | undefined, host: string): boolean {
  if (pattern === undefined || pattern === '') return true;
  if (pattern.startsWith('*.')) {
    const suffix = pattern.slice(1); // ".example.com"
    return host.endsWith(suffix) && host.length > suffix.length;
  }
  return pattern === host;
}

/**
 * The intersection of a listener's hostname and a route's hostnames (Gateway API: a wildcard
 * matches one or more labels): the hostnames of the route that the listener admits, or the
 * listener's own when the route is wider. undefined = no intersection.
 */
export function intersectHostnames(listener: string | undefined, route: string[]): string[] | undefined {
  if (route.length === 0) return listener === undefined ? [] : [listener];
  if (listener === undefined) return route;
  const out = new Set<string>();
  const wild = (h: string) => h.startsWith('*.');
  for (const r of route) {
    if (!wild(r) && !wild(listener)) {
      if (r === listener) out.add(r);
    } else if (wild(r) && !wild(listener)) {
      if (hostMatches(r, listener)) out.add(listener);
    } else if (!wild(r) && wild(listener)) {
      if (hostMatches(listener, r)) out.add(r);
    } else if (r.slice(1).endsWith(listener.slice(1))) out.add(r);
    else if (listener.slice(1).endsWith(r.slice(1))) out.add(listener);
  }
  return out.size === 0 ? undefined : [...out];
}

const routeKinds = ['HTTPRoute', 'GRPCRoute'] as const;

function listenerKinds(l: Listener): { kinds: { group: string; kind: string }[]; invalid: boolean } {
  if (!l.allowedRoutes.kinds) {
    return l.protocol === 'HTTP' || l.protocol === 'HTTPS'
      ? { kinds: routeKinds.map((kind) => ({ group: gatewayGroup, kind })), invalid: false }
      : { kinds: [], invalid: false };
  }
  const ok = l.allowedRoutes.kinds.filter(
    (k) => k.group === gatewayGroup && (routeKinds as readonly string[]).includes(k.kind),
  );
  return { kinds: ok, invalid: ok.length < l.allowedRoutes.kinds.length };
}

/** weir serves plain HTTP listeners; HTTPS/TLS/TCP/UDP are reported, not served. */
const served = (l: Listener) => l.protocol === 'HTTP';

function labelsMatch(sel: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(sel).every(([k, v]) => labels[k] === v);
}

function specificity(h: string | undefined): [number, number] {
  if (h === undefined || h === '') return [0, 0];
  return h.startsWith('*.') ? [1, h.length] : [2, h.length];
}

/** Orders hostnames most specific first: exact before wildcard, longer before shorter, any last. */
export function compareHostnames(a: string | undefined, b: string | undefined): number {
  const [ka, la] = specificity(a);
  const [kb, lb] = specificity(b);
  return kb - ka || lb - la || (a ?? '').localeCompare(b ?? '');
}

/**
 * The Gateway API's precedence among matches: most specific hostname of the entry, then an Exact
 * path, then a RegularExpression path, then the longest PathPrefix; a method; the most header
 * matches; the most query matches; then the oldest route, the route first by namespace/name, the
 * rule and match order within it.
 */
export function ruleOrder(createdAt: Map<string, string>) {
  return (a: TableEntry, b: TableEntry): number => {
    const ha = a.hostnames.length === 0 ? undefined : [...a.hostnames].sort(compareHostnames)[0];
    const hb = b.hostnames.length === 0 ? undefined : [...b.hostnames].sort(compareHostnames)[0];
    const h = compareHostnames(ha, hb);
    if (h !== 0) return h;
    const pk = (m: HTTPRouteMatch) =>
      m.path.type === 'Exact' ? 0 : m.path.type === 'RegularExpression' ? 1 : 2;
    const p = pk(a.match) - pk(b.match);
    if (p !== 0) return p;
    const l = b.match.path.value.length - a.match.path.value.length;
    if (l !== 0) return l;
    const m = Number(b.match.method !== undefined) - Number(a.match.method !== undefined);
    if (m !== 0) return m;
    const hd = b.match.headers.length - a.match.headers.length;
    if (hd !== 0) return hd;
    const q = b.match.queryParams.length - a.match.queryParams.length;
    if (q !== 0) return q;
    const ra = `${a.route.namespace}/${a.route.name}`;
    const rb = `${b.route.namespace}/${b.route.name}`;
    const ca = createdAt.get(`${a.route.kind}/${ra}`) ?? '';
    const cb = createdAt.get(`${b.route.kind}/${rb}`) ?? '';
    if (ca !== cb) return ca === '' ? 1 : cb === '' ? -1 : ca.localeCompare(cb);
    return ra.localeCompare(rb) || a.ruleIndex - b.ruleIndex || a.matchIndex - b.matchIndex;
  };
}

export function compile(world: GatewayWorld): Compiled {
  const out: Compiled = { classes: [], gateways: [], routes: [], gatewayPorts: [], meshPorts: [] };
  const ours = new Set(world.classes.filter((c) => c.controllerName === weirController).map((c) => c.name));
  for (const c of world.classes)
    if (c.controllerName === weirController)
      out.classes.push({
        name: c.name,
        conditions: [cond('Accepted', true, 'Accepted', 'weir gateway controller')],
      });

  const services = new Map(world.services.map((s) => [key(s.namespace, s.name), s]));
  const gateways = world.gateways
    .filter((g) => ours.has(g.className))
    .sort((a, b) => key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)));
  const gatewayByKey = new Map(gateways.map((g) => [key(g.namespace, g.name), g]));
  const createdAt = new Map(world.routes.map((r) => [`${r.kind}/${r.namespace}/${r.name}`, r.createdAt]));

  // listener "gwns/gw/listener" → entries, attached route count
  const attached = new Map<string, { entries: TableEntry[]; routes: Set<string> }>();
  const lkey = (g: Gateway, l: Listener) => `${g.namespace}/${g.name}/${l.name}`;
  for (const g of gateways)
    for (const l of g.listeners) attached.set(lkey(g, l), { entries: [], routes: new Set() });
  const mesh = new Map<string, MeshPortTable>();

  const granted = (from: RouteRef, toNs: string, toKind: string, toName: string) =>
    world.grants.some(
      (g) =>
        g.namespace === toNs &&
        g.from.some(
          (f) => f.group === gatewayGroup && f.kind === from.kind && f.namespace === from.namespace,
        ) &&
        g.to.some((t) => t.group === '' && t.kind === toKind && (t.name === undefined || t.name === toName)),
    );

  const sortedRoutes = [...world.routes].sort(
    (a, b) =>
      a.kind.localeCompare(b.kind) || key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)),
  );
  for (const r of sortedRoutes) {
    const ref: RouteRef = { kind: r.kind, namespace: r.namespace, name: r.name };
    const status: RouteStatus = { ...ref, parents: [] };
    // Backend references, resolved once per route; the reason of the first bad one goes to ResolvedRefs.
    let refProblem: { reason: string; message: string } | undefined;
    const resolve = (b: Omit<BackendRef, 'weight' | 'filters'>, meshParent?: string) => {
      const ns = b.namespace ?? r.namespace;
      const where = `${b.kind} ${ns}/${b.name}`;
      let invalid: { reason: string; message: string } | undefined;
      let appProtocol: string | undefined;
      if (b.group !== '' || b.kind !== 'Service')
        invalid = {
          reason: 'InvalidKind',
          message: `${b.group || 'core'}/${b.kind} is not a kind weir routes to`,
        };
      else if (ns !== r.namespace && meshParent !== key(ns, b.name) && !granted(ref, ns, 'Service', b.name))
        invalid = {
          reason: 'RefNotPermitted',
          message: `${where}: no ReferenceGrant in ${ns} allows ${r.kind}s from ${r.namespace}`,
        };
      else {
        const s = services.get(key(ns, b.name));
        if (!s) invalid = { reason: 'BackendNotFound', message: `${where} does not exist` };
        else if (b.port === undefined)
          invalid = { reason: 'BackendNotFound', message: `${where}: port is required` };
        else {
          const p = s.ports.find((x) => x.port === b.port);
          if (!p) invalid = { reason: 'BackendNotFound', message: `${where} has no port ${b.port}` };
          else appProtocol = p.appProtocol;
        }
      }
      if (invalid && !refProblem) refProblem = invalid;
      return {
        namespace: ns,
        name: b.name,
        port: b.port ?? 0,
        ...(invalid ? { invalid: invalid.message } : {}),
        ...(appProtocol ? { appProtocol } : {}),
      };
    };
    const entriesFor = (hostnames: string[], meshParent?: string, fromNamespace?: string): TableEntry[] => {
      const entries: TableEntry[] = [];
      r.rules.forEach((rule, ruleIndex) => {
        const backends: CompiledBackend[] = rule.backendRefs.map((b) => ({
          ...resolve(b, meshParent),
          weight: b.weight,
          filters: b.filters,
        }));
        const mirrors: CompiledMirror[] = [];
        for (const f of rule.filters)
          if (f.type === 'RequestMirror')
            mirrors.push({
              ...resolve(f.requestMirror.backendRef, meshParent),
              fraction: f.requestMirror.fraction,
            });
        rule.matches.forEach((match, matchIndex) =>
          entries.push({
            route: ref,
            ruleIndex,
            ...(rule.name !== undefined ? { ruleName: rule.name } : {}),
            matchIndex,
            hostnames,
            match,
            filters: rule.filters.filter((f) => f.type !== 'RequestMirror'),
            backends,
            mirrors,
            timeouts: rule.timeouts,
            ...(rule.retry ? { retry: rule.retry } : {}),
            ...(fromNamespace ? { fromNamespace } : {}),
          }),
        );
      });
      return entries;
    };

    for (const p of r.parentRefs) {
      const pns = p.namespace ?? r.namespace;
      const parentRef: ParentRef = { ...p, namespace: pns };
      const conditions: Condition[] = [];
      if (p.group === gatewayGroup && p.kind === 'Gateway') {
        const g = gatewayByKey.get(key(pns, p.name));
        if (!g) continue; // not a Gateway of weir's class: another controller's business
        let candidates = g.listeners;
        let reason = '';
        if (p.sectionName !== undefined) candidates = candidates.filter((l) => l.name === p.sectionName);
        if (p.port !== undefined) candidates = candidates.filter((l) => l.port === p.port);
        if (candidates.length === 0) reason = 'NoMatchingParent';
        const allowed = candidates.filter((l) => {
          const kinds = listenerKinds(l).kinds;
          if (!kinds.some((k) => k.kind === r.kind)) return false;
          const from = l.allowedRoutes.from;
          if (from === 'Same') return r.namespace === g.namespace;
          if (from === 'All') return true;
          return labelsMatch(
            l.allowedRoutes.selector?.matchLabels ?? {},
            world.namespaces.get(r.namespace) ?? {},
          );
        });
        if (!reason && allowed.length === 0) reason = 'NotAllowedByListeners';
        const hosted = allowed
          .map((l) => ({ l, hosts: intersectHostnames(l.hostname, r.hostnames) }))
          .filter((x) => x.hosts !== undefined);
        if (!reason && hosted.length === 0) reason = 'NoMatchingListenerHostname';
        if (reason) {
          conditions.push(cond('Accepted', false, reason, acceptedMessage(reason)));
        } else {
          conditions.push(cond('Accepted', true, 'Accepted'));
          for (const { l, hosts } of hosted) {
            const a = attached.get(lkey(g, l));
            if (!a) continue;
            a.routes.add(`${r.kind}/${r.namespace}/${r.name}`);
            if (served(l)) a.entries.push(...entriesFor(hosts ?? []));
          }
        }
      } else if ((p.group === '' || p.group === 'core') && p.kind === 'Service') {
        const s = services.get(key(pns, p.name));
        const ports = s ? s.ports.filter((x) => p.port === undefined || x.port === p.port) : [];
        if (!s || ports.length === 0) {
          conditions.push(
            cond(
              'Accepted',
              false,
              'NoMatchingParent',
              s
                ? `Service ${pns}/${p.name} has no port ${p.port}`
                : `Service ${pns}/${p.name} does not exist`,
            ),
          );
        } else {
          conditions.push(cond('Accepted', true, 'Accepted'));
          const consumer = r.namespace !== pns ? r.namespace : undefined;
          for (const sp of ports) {
            const mk = `${pns}/${p.name}:${sp.port}`;
            let t = mesh.get(mk);
            if (!t) {
              t = {
                service: key(pns, p.name),
                ...(s.clusterIP ? { clusterIP: s.clusterIP } : {}),
                port: sp.port,
                entries: [],
              };
              mesh.set(mk, t);
            }
            t.entries.push(...entriesFor([], key(pns, p.name), consumer));
          }
        }
      } else {
        conditions.push(
          cond(
            'Accepted',
            false,
            'InvalidKind',
            `parent kind ${p.group || 'core'}/${p.kind} is not supported`,
          ),
        );
      }
      status.parents.push({ parentRef, controllerName: weirController, conditions });
    }
    // ResolvedRefs is the same for every parent: the route's references, checked once.
    // Every reference checked, also when no parent accepted the route.
    const svcParent = r.parentRefs.find(
      (p) => (p.group === '' || p.group === 'core') && p.kind === 'Service',
    );
    if (status.parents.length > 0)
      entriesFor([], svcParent ? key(svcParent.namespace ?? r.namespace, svcParent.name) : undefined);
    const problem = refProblem as { reason: string; message: string } | undefined;
    for (const ps of status.parents)
      ps.conditions.push(
        problem
          ? cond('ResolvedRefs', false, problem.reason, problem.message)
          : cond('ResolvedRefs', true, 'ResolvedRefs'),
      );
    out.routes.push(status);
  }

  const order = ruleOrder(createdAt);
  for (const g of gateways) {
    const gk = key(g.namespace, g.name);
    const address = world.addresses.get(gk);
    const listeners: ListenerStatus[] = [];
    const portCount = new Map<string, number>();
    for (const l of g.listeners) {
      const k = `${l.port}/${l.hostname ?? ''}`;
      portCount.set(k, (portCount.get(k) ?? 0) + 1);
    }
    const byPort = new Map<number, ListenerTable[]>();
    for (const l of g.listeners) {
      const a = attached.get(lkey(g, l));
      const { kinds, invalid } = listenerKinds(l);
      const conflicted = (portCount.get(`${l.port}/${l.hostname ?? ''}`) ?? 0) > 1;
      const ok = served(l) && !conflicted;
      const conditions = [
        served(l)
          ? cond('Accepted', true, 'Accepted')
          : cond(
              'Accepted',
              false,
              'UnsupportedProtocol',
              `weir serves HTTP listeners; ${l.protocol} is not served`,
            ),
        conflicted
          ? cond('Conflicted', true, 'HostnameConflict', 'another listener has the same port and hostname')
          : cond('Conflicted', false, 'NoConflicts'),
        invalid
          ? cond('ResolvedRefs', false, 'InvalidRouteKinds', 'weir serves HTTPRoute and GRPCRoute')
          : cond('ResolvedRefs', true, 'ResolvedRefs'),
        ok && address
          ? cond('Programmed', true, 'Programmed')
          : cond('Programmed', false, address ? 'Invalid' : 'AddressNotAssigned'),
      ];
      listeners.push({
        name: l.name,
        supportedKinds: kinds,
        attachedRoutes: a?.routes.size ?? 0,
        conditions,
      });
      if (!ok || !a) continue;
      const list = byPort.get(l.port) ?? [];
      list.push({
        listener: l.name,
        ...(l.hostname !== undefined ? { hostname: l.hostname } : {}),
        entries: a.entries.sort(order),
      });
      byPort.set(l.port, list);
    }
    const anyServed = g.listeners.some(served);
    out.gateways.push({
      namespace: g.namespace,
      name: g.name,
      className: g.className,
      ...(address ? { address } : {}),
      conditions: [
        cond('Accepted', true, 'Accepted'),
        address && anyServed
          ? cond('Programmed', true, 'Programmed')
          : cond(
              'Programmed',
              false,
              address ? 'Invalid' : 'AddressNotAssigned',
              address ? 'no listener weir serves' : 'no address assigned yet',
            ),
      ],
      listeners,
    });
    for (const [port, ls] of [...byPort].sort((a, b) => a[0] - b[0]))
      out.gatewayPorts.push({
        gateway: gk,
        ...(address ? { address } : {}),
        port,
        listeners: ls.sort((a, b) => compareHostnames(a.hostname, b.hostname)),
      });
  }
  out.meshPorts = [...mesh.values()].sort((a, b) => a.service.localeCompare(b.service) || a.port - b.port);
  for (const t of out.meshPorts) t.entries.sort(order);

  // BackendTrafficPolicies, the most specific target first: the route's own (same namespace), then
  // a Service's — the mesh parent the route is attached to, or a backend of the rule — then the
  // Gateway's; among policies of one kind of target the oldest wins.
  const policies = [...(world.policies ?? [])].sort(
    (a, b) =>
      a.createdAt.localeCompare(b.createdAt) ||
      key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)),
  );
  const targetsService = (x: BackendTrafficPolicy, service: string) =>
    x.targetRefs.some((t) => t.kind === 'Service' && key(x.namespace, t.name) === service);
  const policyOf = (e: TableEntry, gateway?: string, meshService?: string): EntryPolicy | undefined => {
    const services = [
      ...(meshService ? [meshService] : []),
      ...e.backends.filter((b) => !b.invalid).map((b) => key(b.namespace, b.name)),
    ];
    const p =
      policies.find(
        (x) =>
          x.namespace === e.route.namespace &&
          x.targetRefs.some((t) => t.kind === e.route.kind && t.name === e.route.name),
      ) ??
      policies.find((x) => services.some((s) => targetsService(x, s))) ??
      (gateway
        ? policies.find((x) =>
            x.targetRefs.some((t) => t.kind === 'Gateway' && key(x.namespace, t.name) === gateway),
          )
        : undefined);
    if (!p) return undefined;
    return {
      policy: key(p.namespace, p.name),
      ...(p.rateLimit ? { rateLimit: p.rateLimit } : {}),
      ...(p.circuitBreaker ? { circuitBreaker: p.circuitBreaker } : {}),
      ...(p.passiveHealthCheck ? { passiveHealthCheck: p.passiveHealthCheck } : {}),
      ...(p.retry ? { retry: p.retry } : {}),
      ...(p.timeout ? { timeout: p.timeout } : {}),
    };
  };
  if (policies.length > 0) {
    for (const t of out.gatewayPorts)
      for (const l of t.listeners)
        l.entries = l.entries.map((e) => {
          const p = policyOf(e, t.gateway);
          return p ? { ...e, policy: p } : e;
        });
    for (const t of out.meshPorts)
      t.entries = t.entries.map((e) => {
        const p = policyOf(e, undefined, t.service);
        return p ? { ...e, policy: p } : e;
      });
  }
  return out;
}

function acceptedMessage(reason: string): string {
  switch (reason) {
    case 'NoMatchingParent':
      return 'no listener matches the parentRef’s sectionName or port';
    case 'NotAllowedByListeners':
      return 'no listener allows this route (allowedRoutes namespaces or kinds)';
    case 'NoMatchingListenerHostname':
      return 'no listener hostname intersects the route’s hostnames';
    default:
      return reason;
  }
}

/** The object `weir get … -o yaml` shows for a route: the manifest with its status. */
export function routeStatusObject(s: RouteStatus) {
  return {
    parents: s.parents.map((p) => ({
      parentRef: p.parentRef,
      controllerName: p.controllerName,
      conditions: p.conditions,
    })),
  };
}
