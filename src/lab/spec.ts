// The lab spec (lab.yaml): its nodes (one for now) and the external hosts beside them.
import { readFile } from 'node:fs/promises';
import { isIP, isIPv4 } from 'node:net';
import { parse } from 'yaml';
import { z } from 'zod';
import { zodValidate } from '../k8s/registry.js';
import { dnsLabelSchema } from '../k8s/labels.js';
import { ValidationError, WeirError } from '../shared/errors.js';
import { contains4, parseCidr4, parseCidr6 } from './cidr.js';

/** Externals are linked to the node over /31s carved from TEST-NET-3 (RFC 5737). */
export const transitCidr = '203.0.113.0/24';

const labName = z
  .string()
  .max(24, 'must be at most 24 characters (it prefixes netns and cgroup names)')
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be lowercase alphanumeric and -');

const servesSchema = z.array(
  z.object({ port: z.number().int().min(1).max(65535), protocol: z.enum(['TCP', 'UDP']).default('TCP') }),
);

const nodeSchema = z.object({
  name: dnsLabelSchema.refine((n) => n !== 'ext', "'ext' is reserved for externals").default('node1'),
  podCIDR: z
    .string()
    .refine((c) => {
      const p = parseCidr4(c);
      return p !== undefined && p.prefix >= 8 && p.prefix <= 29;
    }, 'must be an IPv4 CIDR with a prefix between /8 and /29')
    .default('10.244.0.0/24'),
  podCIDRv6: z
    .string()
    .refine((c) => {
      const p = parseCidr6(c);
      return p !== undefined && p.prefix >= 64 && p.prefix <= 120;
    }, 'must be an IPv6 CIDR with a prefix between /64 and /120')
    .optional(),
  /** Ports the node's workload serves in the node netns (a host-network server). */
  serves: servesSchema.optional(),
});

const dnsName =
  /^(?=.{1,253}\.?$)([a-zA-Z0-9_]([-a-zA-Z0-9_]{0,61}[a-zA-Z0-9_])?\.)*[a-zA-Z0-9_]([-a-zA-Z0-9_]{0,61}[a-zA-Z0-9_])?\.?$/;

const externalSchema = z.object({
  name: dnsLabelSchema.max(20, 'must be at most 20 characters'),
  ip: z.string().refine(isIPv4, 'must be an IPv4 address'),
  serves: servesSchema.default([]),
  /** Names the lab's cluster DNS answers with this external's address (A records). */
  dnsNames: z.array(z.string().regex(dnsName, 'must be a DNS name')).default([]),
});

/** A declared name's addresses, or `{cname: target}`: an alias (the answer follows it). */
const addressesSchema = z
  .array(z.string().refine(isIP, 'must be an IP address'))
  .min(1, 'needs at least one address');
const cnameSchema = z.strictObject({ cname: z.string().regex(dnsName, 'must be a DNS name') });
const recordSchema = z.unknown().transform((v, ctx): string[] | { cname: string } => {
  const r = Array.isArray(v) ? addressesSchema.safeParse(v) : cnameSchema.safeParse(v);
  if (r.success) return r.data;
  for (const i of r.error.issues)
    ctx.addIssue({
      code: 'custom',
      path: i.path,
      message: Array.isArray(v) ? i.message : `must be a list of addresses or {cname: <name>}: ${i.message}`,
    });
  return z.NEVER;
});

/** The cluster DNS's records for names outside the cluster (the L7 corpus topology's `dns`). */
const dnsSchema = z.object({
  /** Seconds, for the declared records. */
  ttl: z.number().int().min(0).max(604800).default(3600),
  records: z.record(z.string().regex(dnsName, 'must be a DNS name'), recordSchema).default({}),
});

const labSpecSchema = z
  .object({
    name: labName.default('lab'),
    nodes: z
      .array(nodeSchema)
      .min(1, 'a lab needs one node')
      .max(1, 'only one node is supported for now (multi-node labs come later)')
      .default([{ name: 'node1', podCIDR: '10.244.0.0/24' }]),
    externals: z.array(externalSchema).max(64, 'at most 64 externals').default([]),
    /** The names the cluster DNS (pod kube-system/coredns) serves for the externals. */
    dns: dnsSchema.optional(),
  })
  .superRefine((spec, ctx) => {
    const node = spec.nodes[0];
    const pods = node && parseCidr4(node.podCIDR);
    const transit = parseCidr4(transitCidr);
    const seen = new Set<string>();
    spec.externals.forEach((e, i) => {
      if (seen.has(e.name))
        ctx.addIssue({ code: 'custom', path: ['externals', i, 'name'], message: 'used twice' });
      seen.add(e.name);
      if ((pods && contains4(pods, e.ip)) || (transit && contains4(transit, e.ip)))
        ctx.addIssue({
          code: 'custom',
          path: ['externals', i, 'ip'],
          message: `must lie outside the pod CIDR and the transit range ${transitCidr}`,
        });
    });
  });

export type LabSpec = z.output<typeof labSpecSchema>;
export type NodeSpec = LabSpec['nodes'][number];
export type ExternalSpec = LabSpec['externals'][number];

/** Validates a spec given as data; `file` only names where it came from in errors. */
export function parseLabSpec(obj: unknown, file = '<lab spec>'): LabSpec {
  try {
    return zodValidate(labSpecSchema, obj ?? {}, { file, object: 'Lab' });
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    throw new ValidationError(
      err.problems.map((p) => new WeirError('ERR_LAB_SPEC_INVALID', p.message, { location: p.location })),
    );
  }
}

export async function loadLabSpec(file: string): Promise<LabSpec> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new WeirError('ERR_LAB_SPEC_READ', err.message, { location: { file } });
  });
  let obj: unknown;
  try {
    obj = parse(text);
  } catch (err) {
    throw new WeirError('ERR_LAB_SPEC_INVALID', `invalid YAML: ${(err as Error).message}`, {
      location: { file },
    });
  }
  return parseLabSpec(obj, file);
}
