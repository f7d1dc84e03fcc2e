// Kubernetes naming rules (apimachinery validation), used by every kind: label keys and values,
// DNS-1123 names, IANA service names for ports.
import { z } from 'zod';
import type { ErrorCode } from '../shared/error-codes.js';

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dns1123Subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const qualifiedName = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Why `key` is not a valid label key, or undefined if it is. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined) {
    if (prefix.length === 0) return `label key '${key}': prefix must not be empty`;
    if (prefix.length > 253) return `label key '${key}': prefix longer than 253 characters`;
    if (!dns1123Subdomain.test(prefix)) return `label key '${key}': prefix must be a DNS subdomain`;
  }
  if (name.length === 0) return `label key '${key}': name must not be empty`;
  if (name.length > 63) return `label key '${key}': name longer than 63 characters`;
  if (!qualifiedName.test(name))
    return `label key '${key}': name must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric`;
  return undefined;
}

/** Why `value` is not a valid label value, or undefined if it is. */
export function labelValueProblem(value: string): string | undefined {
  if (value.length > 63) return `label value '${value}' longer than 63 characters`;
  if (!labelValue.test(value))
    return `label value '${value}' must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric`;
  return undefined;
}

/** Why `name` is not an IANA_SVC_NAME (a named port), or undefined if it is. */
export function portNameProblem(name: string): string | undefined {
  if (name.length > 15) return `port name '${name}' longer than 15 characters`;
  if (!/^[a-z0-9-]+$/.test(name))
    return `port name '${name}' may hold only lowercase letters, digits and '-'`;
  if (!/[a-z]/.test(name)) return `port name '${name}' must contain at least one letter`;
  if (name.startsWith('-') || name.endsWith('-')) return `port name '${name}' must not start or end with '-'`;
  if (name.includes('--')) return `port name '${name}' must not contain '--'`;
  return undefined;
}

/** Zod issue params carry the weir error code, so callers branch on codes and not on messages. */
export interface IssueParams {
  weirCode: ErrorCode;
}

export const labelsSchema = z.record(z.string(), z.string()).superRefine((labels, ctx) => {
  for (const [k, v] of Object.entries(labels)) {
    const problem = labelKeyProblem(k) ?? labelValueProblem(v);
    if (problem)
      ctx.addIssue({
        code: 'custom',
        path: [k],
        message: problem,
        params: { weirCode: 'ERR_K8S_LABEL_INVALID' } satisfies IssueParams,
      });
  }
});

/** metadata.name of namespaced objects and Namespaces: a DNS-1123 label (≤ 63). */
export const dnsLabelSchema = z
  .string()
  .max(63, 'must be at most 63 characters')
  .regex(dns1123Label, 'must be a DNS-1123 label (lowercase alphanumeric and -)');

/** Pod names: a DNS-1123 subdomain (≤ 253). */
export const dnsSubdomainSchema = z
  .string()
  .max(253, 'must be at most 253 characters')
  .regex(dns1123Subdomain, 'must be a DNS-1123 subdomain (lowercase alphanumeric, - and .)');
