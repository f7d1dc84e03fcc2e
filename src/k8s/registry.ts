// The kinds weir understands. Each domain registers its own kinds (apiVersion + kind) with a
// validator; the manifest loader refuses anything not registered.
import type { z } from 'zod';
import { ValidationError, WeirError, type ErrorLocation } from '../shared/errors.js';
import type { IssueParams } from './labels.js';

/** Where an object came from, for error messages: file and "Kind ns/name". */
export interface ObjectLocation {
  file: string;
  object: string;
}

export interface KindSpec<T = unknown> {
  apiVersion: string;
  kind: string;
  namespaced: boolean;
  /** Returns the typed object or throws WeirError/ValidationError naming every problem. */
  validate(obj: unknown, loc: ObjectLocation): T;
}

const kinds = new Map<string, KindSpec>();
const key = (apiVersion: string, kind: string) => `${apiVersion}|${kind}`;

export function registerKind<T>(spec: KindSpec<T>): void {
  const k = key(spec.apiVersion, spec.kind);
  if (kinds.has(k))
    throw new WeirError('ERR_K8S_KIND_DUPLICATE', `${spec.apiVersion} ${spec.kind} is registered twice`);
  kinds.set(k, spec as KindSpec);
}

export function lookupKind(apiVersion: string, kind: string): KindSpec | undefined {
  return kinds.get(key(apiVersion, kind));
}

export function registeredKinds(): { apiVersion: string; kind: string }[] {
  return [...kinds.values()].map(({ apiVersion, kind }) => ({ apiVersion, kind }));
}

/** `spec.containers[0].ports[1].containerPort` from zod's path array. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_$][\w$]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out;
}

/** Turns a zod schema into a KindSpec validator: every issue becomes one located WeirError. */
export function zodValidate<S extends z.ZodType>(schema: S, obj: unknown, loc: ObjectLocation): z.infer<S> {
  const res = schema.safeParse(obj);
  if (res.success) return res.data;
  const problems = res.error.issues.map((issue) => {
    const field = fieldPath(issue.path);
    const location: ErrorLocation = { file: loc.file, object: loc.object, field };
    const params = (issue as { params?: Partial<IssueParams> }).params;
    const missing = issue.code === 'invalid_type' && valueAt(obj, issue.path) === undefined;
    const code = params?.weirCode ?? (missing ? 'ERR_K8S_FIELD_MISSING' : 'ERR_K8S_FIELD_INVALID');
    return new WeirError(code, missing ? 'required field is missing' : issue.message, { location });
  });
  throw new ValidationError(problems);
}

function valueAt(obj: unknown, path: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}
