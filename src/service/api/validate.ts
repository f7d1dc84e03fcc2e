// Validation of Service v1 and EndpointSlice discovery.k8s.io/v1 (the fields the load balancer
// reads; the rest of a real manifest is kept as written). Every problem names file, object and field.
import { z } from 'zod';
import type { ErrorCode } from '../../shared/error-codes.js';
import { zodValidate, type ObjectLocation } from '../../k8s/registry.js';
import { dnsLabelSchema, labelsSchema, portNameProblem, type IssueParams } from '../../k8s/labels.js';
import { canonicalIP, ipFamilyOf } from '../ip.js';
import {
  defaultAffinityTimeout,
  nodePortRange,
  serviceNameLabel,
  type EndpointSlice,
  type IPFamily,
  type Service,
} from './types.js';

const issue = (weirCode: ErrorCode) => ({ weirCode }) satisfies IssueParams;

const portNumber = z
  .number()
  .int('must be an integer')
  .min(1, 'must be between 1 and 65535')
  .max(65535, 'must be between 1 and 65535');

const portName = z.string().superRefine((name, ctx) => {
  const problem = portNameProblem(name);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

// SCTP is a valid Kubernetes protocol, but the socket hooks translate only TCP and UDP.
const protocol = z.enum(['TCP', 'UDP'], { message: "must be 'TCP' or 'UDP'" }).default('TCP');

const servicePortSchema = z.looseObject({
  // A Service port's own name is a DNS label (≤ 63, e.g. 'service-port-tcp-80'); a named
  // targetPort refers to a container port, whose names follow the IANA service-name rule (≤ 15).
  name: dnsLabelSchema.optional(),
  protocol,
  port: portNumber,
  targetPort: z.union([portNumber, portName]).optional(),
  nodePort: z
    .number()
    .int('must be an integer')
    .min(nodePortRange.min, `must be in ${nodePortRange.min}-${nodePortRange.max}`)
    .max(nodePortRange.max, `must be in ${nodePortRange.min}-${nodePortRange.max}`)
    .optional(),
});

const clusterIPText = z.string().refine((ip) => ip === 'None' || ip === '' || !!ipFamilyOf(ip), {
  message: "must be an IPv4 or IPv6 address or 'None' (headless)",
  params: issue('ERR_SERVICE_CLUSTERIP_INVALID'),
});

/** An enum whose bad values get a weir code (z.enum's own issue carries none). */
const oneOf = <T extends string>(values: readonly T[], code: ErrorCode) =>
  z
    .string()
    .refine((v) => (values as readonly string[]).includes(v), {
      message: `must be ${values.map((v) => `'${v}'`).join(' or ')}`,
      params: issue(code),
    })
    .transform((v) => v as T);

const atMostTwo = (what: string, code: ErrorCode) => ({
  message: `at most two (${what})`,
  params: issue(code),
});

const metadataSchema = z.looseObject({
  name: dnsLabelSchema,
  namespace: dnsLabelSchema.optional(),
  labels: labelsSchema.optional(),
});

const serviceSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata: metadataSchema,
  spec: z
    .looseObject({
      type: z
        .enum(['ClusterIP', 'NodePort'], { message: "must be 'ClusterIP' or 'NodePort'" })
        .default('ClusterIP'),
      clusterIP: clusterIPText.optional(),
      clusterIPs: z
        .array(clusterIPText)
        .refine((a) => a.length <= 2, atMostTwo('one per family', 'ERR_SERVICE_CLUSTERIP_INVALID'))
        .optional(),
      ipFamilies: z
        .array(oneOf(['IPv4', 'IPv6'] as const, 'ERR_SERVICE_IPFAMILY_INVALID'))
        .refine((a) => a.length <= 2, atMostTwo('IPv4, IPv6', 'ERR_SERVICE_IPFAMILY_INVALID'))
        .optional(),
      ipFamilyPolicy: oneOf(
        ['SingleStack', 'PreferDualStack', 'RequireDualStack'] as const,
        'ERR_SERVICE_IPFAMILYPOLICY_INVALID',
      ).optional(),
      ports: z.array(servicePortSchema).default([]),
      selector: labelsSchema.optional(),
      sessionAffinity: z
        .enum(['None', 'ClientIP'], { message: "must be 'None' or 'ClientIP'" })
        .default('None'),
      sessionAffinityConfig: z
        .looseObject({
          clientIP: z
            .looseObject({
              timeoutSeconds: z
                .number()
                .int('must be an integer')
                .min(1, 'must be between 1 and 86400')
                .max(86400, 'must be between 1 and 86400')
                .optional(),
            })
            .optional(),
        })
        .optional(),
      externalTrafficPolicy: z
        .enum(['Cluster', 'Local'], { message: "must be 'Cluster' or 'Local'" })
        .default('Cluster'),
      internalTrafficPolicy: z
        .enum(['Cluster', 'Local'], { message: "must be 'Cluster' or 'Local'" })
        .default('Cluster'),
    })
    .superRefine((spec, ctx) => {
      checkFamilies(spec, ctx);
      const headless = spec.clusterIP === 'None' || spec.clusterIPs?.[0] === 'None';
      if (headless && spec.type === 'NodePort')
        ctx.addIssue({
          code: 'custom',
          path: ['clusterIP'],
          message: "a NodePort service cannot be headless (clusterIP 'None')",
          params: issue('ERR_SERVICE_CLUSTERIP_INVALID'),
        });
      if (!headless && spec.ports.length === 0)
        ctx.addIssue({
          code: 'custom',
          path: ['ports'],
          message: 'a service needs at least one port (only a headless service may have none)',
          params: issue('ERR_SERVICE_PORT_MISSING'),
        });
      const names = new Set<string>();
      const keys = new Set<string>();
      spec.ports.forEach((p, i) => {
        if (spec.ports.length > 1 && !p.name)
          ctx.addIssue({
            code: 'custom',
            path: ['ports', i, 'name'],
            message: 'every port needs a name when the service has more than one',
            params: issue('ERR_SERVICE_PORT_NAME'),
          });
        if (p.name && names.has(p.name))
          ctx.addIssue({
            code: 'custom',
            path: ['ports', i, 'name'],
            message: `port name '${p.name}' is used twice`,
            params: issue('ERR_SERVICE_PORT_DUPLICATE'),
          });
        const key = `${p.port}/${p.protocol}`;
        if (keys.has(key))
          ctx.addIssue({
            code: 'custom',
            path: ['ports', i, 'port'],
            message: `port ${key} is declared twice`,
            params: issue('ERR_SERVICE_PORT_DUPLICATE'),
          });
        if (p.nodePort !== undefined && spec.type !== 'NodePort')
          ctx.addIssue({
            code: 'custom',
            path: ['ports', i, 'nodePort'],
            message: 'nodePort is allowed only with type NodePort',
            params: issue('ERR_SERVICE_NODEPORT_INVALID'),
          });
        if (p.name) names.add(p.name);
        keys.add(key);
      });
      const nodePorts = new Set<string>();
      spec.ports.forEach((p, i) => {
        if (p.nodePort === undefined) return;
        const key = `${p.nodePort}/${p.protocol}`;
        if (nodePorts.has(key))
          ctx.addIssue({
            code: 'custom',
            path: ['ports', i, 'nodePort'],
            message: `nodePort ${key} is used twice`,
            params: issue('ERR_SERVICE_NODEPORT_INVALID'),
          });
        nodePorts.add(key);
      });
    }),
});

interface FamilySpec {
  type: string;
  clusterIP?: string | undefined;
  clusterIPs?: string[] | undefined;
  ipFamilies?: IPFamily[] | undefined;
  ipFamilyPolicy?: string | undefined;
}

/** The addresses given: clusterIPs, else clusterIP ('' means "allocate"). */
const givenIPs = (spec: FamilySpec) =>
  (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).map(canonicalIP);

/** ipFamilies as given, then the families of given addresses beyond them (an IPv6 clusterIP alone: [IPv6]). */
function familiesOf(spec: FamilySpec): IPFamily[] {
  const out = [...(spec.ipFamilies ?? [])];
  givenIPs(spec).forEach((ip, i) => {
    const f = ipFamilyOf(ip);
    if (f && i >= out.length && !out.includes(f)) out.push(f);
  });
  return out;
}

/**
 * Kubernetes' rules for clusterIP/clusterIPs/ipFamilies/ipFamilyPolicy that need no cluster
 * configuration (whether the cluster has an IPv6 service CIDR is the allocator's business).
 */
function checkFamilies(spec: FamilySpec, ctx: z.RefinementCtx): void {
  const add = (path: (string | number)[], message: string, code: ErrorCode) =>
    ctx.addIssue({ code: 'custom', path, message, params: issue(code) });
  const ips = spec.clusterIPs ?? [];
  ips.forEach((ip, i) => {
    if (ip === '')
      add(
        ['clusterIPs', i],
        "must be an IPv4 or IPv6 address or 'None' (headless)",
        'ERR_SERVICE_CLUSTERIP_INVALID',
      );
    else if (ip === 'None' && ips.length > 1)
      add(['clusterIPs', i], "'None' (headless) must be the only entry", 'ERR_SERVICE_CLUSTERIP_INVALID');
  });
  const first = ips[0];
  if (spec.clusterIP && first && canonicalIP(first) !== canonicalIP(spec.clusterIP))
    add(['clusterIPs', 0], `must equal spec.clusterIP (${spec.clusterIP})`, 'ERR_SERVICE_CLUSTERIP_INVALID');
  const addrs = givenIPs(spec).filter((ip) => ip !== 'None' && ip !== '');
  const addrFamilies = addrs.map(ipFamilyOf);
  if (addrFamilies.length === 2 && addrFamilies[0] === addrFamilies[1])
    add(
      ['clusterIPs', 1],
      `two ${addrFamilies[0]} addresses: a dual-stack service has one IPv4 and one IPv6 address`,
      'ERR_SERVICE_CLUSTERIP_INVALID',
    );
  const fams = spec.ipFamilies ?? [];
  if (fams.length === 2 && fams[0] === fams[1])
    add(['ipFamilies', 1], `${fams[1]} is given twice`, 'ERR_SERVICE_IPFAMILY_INVALID');
  addrs.forEach((ip, i) => {
    const want = fams[i];
    const got = addrFamilies[i];
    if (want && got && want !== got)
      add(
        ['ipFamilies', i],
        `${want} does not match spec.clusterIPs[${i}] ${ip} (an ${got} address)`,
        'ERR_SERVICE_IPFAMILY_INVALID',
      );
  });
  const two = fams.length === 2 || addrs.length === 2;
  if (two && spec.ipFamilyPolicy === 'SingleStack')
    add(
      ['ipFamilyPolicy'],
      'SingleStack allows one family, but two ipFamilies or clusterIPs are given',
      'ERR_SERVICE_IPFAMILYPOLICY_INVALID',
    );
  if (two && !spec.ipFamilyPolicy)
    add(
      ['ipFamilyPolicy'],
      'two ipFamilies or clusterIPs need ipFamilyPolicy PreferDualStack or RequireDualStack',
      'ERR_SERVICE_IPFAMILYPOLICY_INVALID',
    );
  const policy = spec.ipFamilyPolicy ?? 'SingleStack';
  if (spec.type === 'NodePort' && policy === 'SingleStack' && familiesOf(spec)[0] === 'IPv6')
    add(
      ['ipFamilies'],
      "weir's NodePort datapath is IPv4-only: a NodePort service needs IPv4 among its ipFamilies " +
        '(a dual-stack ipFamilyPolicy, or IPv4)',
      'ERR_SERVICE_IPFAMILY_UNSUPPORTED',
    );
}

const endpointSliceSchema = z
  .looseObject({
    apiVersion: z.literal('discovery.k8s.io/v1'),
    kind: z.literal('EndpointSlice'),
    metadata: metadataSchema.extend({
      labels: labelsSchema.refine((l) => !!l[serviceNameLabel], {
        message: `label ${serviceNameLabel} (the service these endpoints back) is required`,
        params: issue('ERR_SERVICE_SLICE_SERVICE'),
      }),
    }),
    addressType: z.enum(['IPv4', 'IPv6'], {
      message: "weir's load balancer takes addressType 'IPv4' or 'IPv6' (not FQDN)",
    }),
    endpoints: z
      .array(
        z.looseObject({
          addresses: z.array(z.string()).min(1, 'an endpoint needs an address'),
          conditions: z
            .looseObject({
              ready: z.boolean().optional(),
              serving: z.boolean().optional(),
              terminating: z.boolean().optional(),
            })
            .optional(),
          nodeName: z.string().optional(),
        }),
      )
      .default([]),
    ports: z
      .array(
        z.looseObject({
          name: z.union([dnsLabelSchema, z.literal('')]).optional(),
          protocol,
          port: portNumber,
        }),
      )
      .default([]),
  })
  .superRefine((slice, ctx) => {
    if (slice.addressType !== 'IPv4' && slice.addressType !== 'IPv6') return; // already reported
    slice.endpoints.forEach((e, i) =>
      e.addresses.forEach((a, j) => {
        if (ipFamilyOf(a) !== slice.addressType)
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'addresses', j],
            message: `must be an ${slice.addressType} address (addressType ${slice.addressType})`,
            params: issue('ERR_SERVICE_SLICE_ADDRESS'),
          });
      }),
    );
  });

function where(loc: ObjectLocation): { namespace: string } {
  const m = /^\S+ ([^/]+)\//.exec(loc.object);
  return { namespace: m?.[1] ?? 'default' };
}

export function validateService(obj: unknown, loc: ObjectLocation): Service {
  const s = zodValidate(serviceSchema, obj, loc);
  const spec = s.spec;
  const clusterIPs = givenIPs(spec);
  return {
    namespace: s.metadata.namespace ?? where(loc).namespace,
    name: s.metadata.name,
    type: spec.type,
    ...(clusterIPs[0] ? { clusterIP: clusterIPs[0] } : {}),
    clusterIPs,
    ipFamilies: familiesOf(spec),
    ipFamilyPolicy: spec.ipFamilyPolicy ?? 'SingleStack',
    ports: spec.ports.map((p) => ({
      name: p.name ?? '',
      protocol: p.protocol,
      port: p.port,
      targetPort: p.targetPort ?? p.port,
      ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }),
    })),
    ...(spec.selector ? { selector: spec.selector } : {}),
    sessionAffinity: spec.sessionAffinity,
    affinityTimeoutSeconds: spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? defaultAffinityTimeout,
    externalTrafficPolicy: spec.externalTrafficPolicy,
    internalTrafficPolicy: spec.internalTrafficPolicy,
  };
}

export function validateEndpointSlice(obj: unknown, loc: ObjectLocation): EndpointSlice {
  const s = zodValidate(endpointSliceSchema, obj, loc);
  return {
    namespace: s.metadata.namespace ?? where(loc).namespace,
    name: s.metadata.name,
    serviceName: s.metadata.labels[serviceNameLabel] as string,
    addressType: s.addressType,
    endpoints: s.endpoints.map((e) => {
      const ready = e.conditions?.ready ?? true;
      return {
        addresses: e.addresses.map(canonicalIP),
        conditions: {
          ready,
          serving: e.conditions?.serving ?? ready,
          terminating: e.conditions?.terminating ?? false,
        },
        ...(e.nodeName ? { nodeName: e.nodeName } : {}),
      };
    }),
    ports: s.ports.map((p) => ({ name: p.name ?? '', protocol: p.protocol, port: p.port })),
  };
}
