// The core/v1 kinds the lab runs: Namespace and Pod (only the fields weir uses are checked;
// the rest of a real manifest is kept as it is).
import { z } from 'zod';
import {
  dnsLabelSchema,
  dnsSubdomainSchema,
  labelsSchema,
  portNameProblem,
  type IssueParams,
} from './labels.js';
import { registerKind, zodValidate } from './registry.js';

export const protocols = ['TCP', 'UDP', 'SCTP'] as const;

/**
 * Pod annotation: "none" makes the lab create the pod (netns, veth, cgroup, endpoint) without its
 * workload process, so scale tests can have a thousand real endpoints cheaply.
 */
export const workloadAnnotation = 'weir.dev/workload';

/**
 * Pod annotation "true": the pod is being deleted (Kubernetes' deletionTimestamp within the grace
 * period). Its EndpointSlice conditions become serving+terminating: services keep it as a
 * TERMINATING backend (established connections stay, no new ones) until the pod is deleted.
 */
export const terminatingAnnotation = 'weir.dev/terminating';

/**
 * Pod annotation "cni": a container runtime creates the pod and hands it to weir-cni (docs/cni.md);
 * the lab creates neither its namespace nor a workload, and the pod's labels go to the endpoint
 * the runtime's ADD made under the same namespace/name.
 */
export const runtimeAnnotation = 'weir.dev/runtime';

export type Protocol = (typeof protocols)[number];

const portSchema = z.looseObject({
  containerPort: z
    .number()
    .int()
    .min(1, 'must be between 1 and 65535')
    .max(65535, 'must be between 1 and 65535'),
  name: z
    .string()
    .superRefine((name, ctx) => {
      const problem = portNameProblem(name);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  protocol: z.enum(protocols).default('TCP'),
});

const containerSchema = z.looseObject({
  name: dnsLabelSchema,
  image: z.string().optional(),
  ports: z.array(portSchema).optional(),
});

const podSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Pod'),
  metadata: z.looseObject({
    name: dnsSubdomainSchema,
    namespace: dnsLabelSchema.optional(),
    labels: labelsSchema.optional(),
    annotations: z
      .record(z.string(), z.string())
      .superRefine((a, ctx) => {
        const v = a[workloadAnnotation];
        if (v !== undefined && v !== 'none')
          ctx.addIssue({
            code: 'custom',
            path: [workloadAnnotation],
            message: `must be "none" (the pod runs no workload) or absent, not '${v}'`,
            params: { weirCode: 'ERR_K8S_ANNOTATION_INVALID' } satisfies IssueParams,
          });
        const r = a[runtimeAnnotation];
        if (r !== undefined && r !== 'cni')
          ctx.addIssue({
            code: 'custom',
            path: [runtimeAnnotation],
            message: `must be "cni" (a container runtime creates the pod through weir-cni) or absent, not '${r}'`,
            params: { weirCode: 'ERR_K8S_ANNOTATION_INVALID' } satisfies IssueParams,
          });
        const t = a[terminatingAnnotation];
        if (t !== undefined && t !== 'true')
          ctx.addIssue({
            code: 'custom',
            path: [terminatingAnnotation],
            message: `must be "true" (the pod is terminating) or absent, not '${t}'`,
            params: { weirCode: 'ERR_K8S_ANNOTATION_INVALID' } satisfies IssueParams,
          });
      })
      .optional(),
  }),
  spec: z
    .looseObject({ containers: z.array(containerSchema).min(1, 'a pod needs at least one container') })
    .superRefine((spec, ctx) => {
      // Kubernetes rejects two ports of one pod sharing a name or the same port and protocol.
      const names = new Set<string>();
      const ports = new Set<string>();
      spec.containers.forEach((c, ci) =>
        (c.ports ?? []).forEach((p, pi) => {
          const path = ['containers', ci, 'ports', pi];
          if (p.name !== undefined && names.has(p.name))
            ctx.addIssue({
              code: 'custom',
              path: [...path, 'name'],
              message: `port name '${p.name}' is used twice in this pod`,
              params: { weirCode: 'ERR_K8S_PORT_DUPLICATE' } satisfies IssueParams,
            });
          const key = `${p.containerPort}/${p.protocol}`;
          if (ports.has(key))
            ctx.addIssue({
              code: 'custom',
              path: [...path, 'containerPort'],
              message: `port ${key} is declared twice in this pod`,
              params: { weirCode: 'ERR_K8S_PORT_DUPLICATE' } satisfies IssueParams,
            });
          if (p.name !== undefined) names.add(p.name);
          ports.add(key);
        }),
      );
    }),
});

const namespaceSchema = z.looseObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('Namespace'),
  metadata: z.looseObject({
    name: dnsLabelSchema,
    labels: labelsSchema.optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
});

export type Pod = z.infer<typeof podSchema>;
export type Namespace = z.infer<typeof namespaceSchema>;

export interface PodPort {
  name?: string;
  containerPort: number;
  protocol: Protocol;
}

/** Every declared port of every container, in order. */
export function podPorts(pod: Pod): PodPort[] {
  return podContainers(pod).flatMap((c) => c.ports);
}

/** The pod's containers as applied: name, image and ports (protocol defaulted). */
export function podContainers(pod: Pod): { name: string; image?: string; ports: PodPort[] }[] {
  return pod.spec.containers.map((c) => ({
    name: c.name,
    ...(c.image === undefined ? {} : { image: c.image }),
    ports: (c.ports ?? []).map((p) => ({
      ...(p.name === undefined ? {} : { name: p.name }),
      containerPort: p.containerPort,
      protocol: p.protocol,
    })),
  }));
}

/** True when the pod is marked terminating (annotation weir.dev/terminating: "true"). */
export function podTerminating(pod: Pod): boolean {
  return pod.metadata.annotations?.[terminatingAnnotation] === 'true';
}

/** True when a container runtime creates the pod through weir-cni (annotation weir.dev/runtime: "cni"). */
export function podByRuntime(pod: Pod): boolean {
  return pod.metadata.annotations?.[runtimeAnnotation] === 'cni';
}

/** False when the pod asks for no workload process (annotation weir.dev/workload: "none"). */
export function podRunsWorkload(pod: Pod): boolean {
  return pod.metadata.annotations?.[workloadAnnotation] !== 'none';
}

registerKind<Pod>({
  apiVersion: 'v1',
  kind: 'Pod',
  namespaced: true,
  validate: (obj, loc) => zodValidate(podSchema, obj, loc),
});

registerKind<Namespace>({
  apiVersion: 'v1',
  kind: 'Namespace',
  namespaced: false,
  validate: (obj, loc) => zodValidate(namespaceSchema, obj, loc),
});
