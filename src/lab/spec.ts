// The lab spec (lab.yaml): its nodes (up to 8, joined by the lab's underlay) and the external
// hosts beside the first node.
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

/** The most nodes a lab has (each its own namespace, agent and /24 of 10.244.0.0/16). */
export const maxNodes = 8;

/** The lab's underlay (RFC 2544 benchmarking range): the bridge has .1, node k has .(10+k). */
export const underlayCidr = '198.18.0.0/24';

const nodeSchema = z.object({
  name: dnsLabelSchema
    .max(20, 'must be at most 20 characters')
    .refine((n) => n !== 'ext' && n !== 'underlay', "'ext' and 'underlay' are reserved")
    .optional(),
  podCIDR: z
    .string()
    .refine((c) => {
      const p = parseCidr4(c);
      return p !== undefined && p.prefix >= 8 && p.prefix <= 29;
    }, 'must be an IPv4 CIDR with a prefix between /8 and /29')
    .optional(),
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
  /**
   * Several nodes: the external also sits on the nodes' underlay (a client on their LAN, at
   * 198.18.0.(128+i)), and the other nodes reach it there rather than through the first node: what
   * a backend's node answering a client directly (NodePort in DSR mode) needs.
   */
  underlay: z.boolean().default(false),
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
      .max(maxNodes, `at most ${maxNodes} nodes`)
      .default([{}])
      // Node k (from 1) is node<k> with 10.244.<k-1>.0/24 unless named otherwise.
      .transform((nodes) =>
        nodes.map((n, i) => ({
          ...n,
          name: n.name ?? `node${i + 1}`,
          podCIDR: n.podCIDR ?? `10.244.${i}.0/24`,
        })),
      ),
    /**
     * How pods of different nodes reach each other: 'tunnel' (the default: VXLAN, the sender's
     * identity in the VNI) or 'native' (routes on the underlay, the receiver takes the sender's
     * identity from its ipcache). Only with more than one node.
     */
    routing: z.enum(['tunnel', 'native']).optional(),
    externals: z.array(externalSchema).max(64, 'at most 64 externals').default([]),
    /** The names the cluster DNS (pod kube-system/coredns) serves for the externals. */
    dns: dnsSchema.optional(),
  })
  .superRefine((spec, ctx) => {
    const node = spec.nodes[0];
    const pods = node && parseCidr4(node.podCIDR);
    const transit = parseCidr4(transitCidr);
    const underlay = parseCidr4(underlayCidr);
    const names = new Set<string>();
    const cidrs: { i: number; c: NonNullable<ReturnType<typeof parseCidr4>> }[] = [];
    spec.nodes.forEach((n, i) => {
      if (names.has(n.name))
        ctx.addIssue({ code: 'custom', path: ['nodes', i, 'name'], message: 'used twice' });
      names.add(n.name);
      const c = parseCidr4(n.podCIDR);
      if (!c) return;
      const other = cidrs.find((o) => overlaps(o.c, c));
      if (other)
        ctx.addIssue({
          code: 'custom',
          path: ['nodes', i, 'podCIDR'],
          message: `overlaps the pod CIDR of node ${spec.nodes[other.i]?.name ?? other.i}`,
        });
      if ((transit && overlaps(transit, c)) || (underlay && overlaps(underlay, c)))
        ctx.addIssue({
          code: 'custom',
          path: ['nodes', i, 'podCIDR'],
          message: `must lie outside the transit range ${transitCidr} and the underlay ${underlayCidr}`,
        });
      cidrs.push({ i, c });
    });
    const seen = new Set<string>();
    spec.externals.forEach((e, i) => {
      if (seen.has(e.name))
        ctx.addIssue({ code: 'custom', path: ['externals', i, 'name'], message: 'used twice' });
      seen.add(e.name);
      if (
        (pods && contains4(pods, e.ip)) ||
        cidrs.some((o) => contains4(o.c, e.ip)) ||
        (transit && contains4(transit, e.ip)) ||
        (underlay && contains4(underlay, e.ip))
      )
        ctx.addIssue({
          code: 'custom',
          path: ['externals', i, 'ip'],
          message: `must lie outside the pod CIDRs, the transit range ${transitCidr} and the underlay ${underlayCidr}`,
        });
    });
  });

function overlaps(a: { base: number; prefix: number }, b: { base: number; prefix: number }): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

/** A spec of `n` nodes node1..node<n> (10.244.<k-1>.0/24 each), else as given. */
export function withNodeCount(spec: LabSpec, n: number): LabSpec {
  if (!Number.isInteger(n) || n < 1 || n > maxNodes)
    throw new WeirError('ERR_LAB_SPEC_INVALID', `--nodes must be 1..${maxNodes}`, {
      location: { field: '--nodes' },
    });
  if (spec.nodes.length === n) return spec;
  if (spec.nodes.length > 1)
    throw new WeirError(
      'ERR_LAB_SPEC_INVALID',
      `--nodes ${n} contradicts the spec's ${spec.nodes.length} nodes`,
      {
        location: { field: '--nodes' },
      },
    );
  const first = spec.nodes[0];
  return parseLabSpec({
    ...spec,
    nodes: Array.from({ length: n }, (_, i) => (i === 0 && first ? first : {})),
  });
}

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
