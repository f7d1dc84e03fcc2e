// Validation of Service v1 and EndpointSlice discovery.k8s.io/v1 (the fields the load balancer
// reads; the rest of a real manifest is kept as written). Every problem names file, object and field.
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { zodValidate, type ObjectLocation } from '../../k8s/registry.js';
import { dnsLabelSchema, labelsSchema, portNameProblem, type IssueParams } from '../../k8s/labels.js';
import {
  defaultAffinityTimeout,
  nodePortRange,
  serviceNameLabel,
  type EndpointSlice,
  type Service,
} from './types.js';

const issue = (weirCode: string) => ({ weirCode }) satisfies IssueParams;

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
      clusterIP: z
        .string()
        .refine((ip) => ip === 'None' || ip === '' || isIPv4(ip), {
          message: "must be an IPv4 address or 'None' (headless)",
          params: issue('ERR_SERVICE_CLUSTERIP_INVALID'),
        })
        .optional(),
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
      const headless = spec.clusterIP === 'None';
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

const endpointSliceSchema = z.looseObject({
  apiVersion: z.literal('discovery.k8s.io/v1'),
  kind: z.literal('EndpointSlice'),
  metadata: metadataSchema.extend({
    labels: labelsSchema.refine((l) => !!l[serviceNameLabel], {
      message: `label ${serviceNameLabel} (the service these endpoints back) is required`,
      params: issue('ERR_SERVICE_SLICE_SERVICE'),
    }),
  }),
  addressType: z.literal('IPv4', { message: "weir's load balancer takes addressType 'IPv4'" }),
  endpoints: z
    .array(
      z.looseObject({
        addresses: z
          .array(z.string().refine((a) => isIPv4(a), { message: 'must be an IPv4 address' }))
          .min(1, 'an endpoint needs an address'),
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
});

function where(loc: ObjectLocation): { namespace: string } {
  const m = /^\S+ ([^/]+)\//.exec(loc.object);
  return { namespace: m?.[1] ?? 'default' };
}

export function validateService(obj: unknown, loc: ObjectLocation): Service {
  const s = zodValidate(serviceSchema, obj, loc);
  const spec = s.spec;
  return {
    namespace: s.metadata.namespace ?? where(loc).namespace,
    name: s.metadata.name,
    type: spec.type,
    ...(spec.clusterIP ? { clusterIP: spec.clusterIP } : {}),
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
        addresses: e.addresses,
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
