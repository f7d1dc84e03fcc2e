// Reads Kubernetes manifests (files or directories; YAML with several documents, JSON, `List`)
// and validates every object against its registered kind. All problems of all files are
// reported together; nothing is returned unless everything is valid.
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import { ValidationError, WeirError } from '../shared/errors.js';
import './core.js';
import { lookupKind } from './registry.js';

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
}

export interface Manifest<T = unknown> {
  file: string;
  /** Position of the object in its file (documents and List items counted in order). */
  index: number;
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  /** The validated object, as its kind's validator returned it. */
  object: T;
  /** The object as written (what is stored and sent on, so it can be validated again). */
  raw: unknown;
}

const manifestExts = new Set(['.yaml', '.yml', '.json']);

/** "Pod x/a" or "Namespace x": how errors and tables name an object. */
export function objectName(m: Pick<Manifest, 'kind' | 'metadata'>): string {
  return m.metadata.namespace
    ? `${m.kind} ${m.metadata.namespace}/${m.metadata.name}`
    : `${m.kind} ${m.metadata.name}`;
}

export async function loadManifests(paths: string[]): Promise<Manifest[]> {
  const files: string[] = [];
  const problems: WeirError[] = [];
  for (const p of paths) {
    const st = await stat(p).catch(() => undefined);
    if (!st)
      problems.push(
        new WeirError('ERR_K8S_FILE_NOT_FOUND', 'no such file or directory', { location: { file: p } }),
      );
    else if (st.isDirectory()) {
      const names = (await readdir(p)).filter((n) => manifestExts.has(extname(n))).sort();
      files.push(...names.map((n) => join(p, n)));
    } else files.push(p);
  }
  const out: Manifest[] = [];
  for (const file of files) {
    try {
      out.push(...parseManifests(await readFile(file, 'utf8'), file));
    } catch (err) {
      problems.push(...asProblems(err));
    }
  }
  problems.push(...duplicates(out));
  if (problems.length > 0) throw new ValidationError(problems);
  return out;
}

/** Parses and validates the text of one manifest file. */
export function parseManifests(text: string, file: string): Manifest[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false });
  const list = Array.isArray(docs) ? docs : [docs];
  const out: Manifest[] = [];
  const problems: WeirError[] = [];
  for (const doc of list) {
    const bad = doc.errors[0];
    if (bad) {
      const line = lines.linePos(bad.pos[0]).line;
      problems.push(
        new WeirError('ERR_K8S_YAML_INVALID', `invalid YAML at line ${line}: ${bad.message.split('\n')[0]}`, {
          location: { file },
          details: { line },
        }),
      );
      continue;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const items =
      isRecord(value) && value.kind === 'List' && Array.isArray(value.items) ? value.items : [value];
    for (const item of items) {
      try {
        out.push(toManifest(item, file, out.length + problems.length));
      } catch (err) {
        problems.push(...asProblems(err));
      }
    }
  }
  if (problems.length > 0) throw new ValidationError(problems);
  return out;
}

function toManifest(item: unknown, file: string, index: number): Manifest {
  if (!isRecord(item))
    throw new WeirError('ERR_K8S_FIELD_INVALID', 'a manifest must be an object', { location: { file } });
  const apiVersion = typeof item.apiVersion === 'string' ? item.apiVersion : '';
  const kind = typeof item.kind === 'string' ? item.kind : '';
  const meta = isRecord(item.metadata) ? item.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : `<unnamed #${index}>`;
  const spec = lookupKind(apiVersion, kind);
  const ns = typeof meta.namespace === 'string' ? meta.namespace : spec?.namespaced ? 'default' : undefined;
  const object = (kind || '<no kind>') + ' ' + (ns ? `${ns}/${name}` : name);
  if (!apiVersion || !kind) {
    throw new WeirError('ERR_K8S_FIELD_MISSING', 'required field is missing', {
      location: { file, object, field: apiVersion ? 'kind' : 'apiVersion' },
    });
  }
  if (!spec) {
    throw new WeirError('ERR_K8S_KIND_UNKNOWN', `unknown kind ${kind} (apiVersion ${apiVersion})`, {
      location: { file, object, field: 'kind' },
    });
  }
  const validated = spec.validate(item, { file, object });
  const labels = isRecord(meta.labels) ? (meta.labels as Record<string, string>) : undefined;
  return {
    file,
    index,
    apiVersion,
    kind,
    metadata: { name, ...(ns ? { namespace: ns } : {}), ...(labels ? { labels } : {}) },
    object: validated,
    raw: item,
  };
}

/** The same object twice in one apply is refused: which copy wins would be a guess. */
function duplicates(ms: Manifest[]): WeirError[] {
  const seen = new Map<string, Manifest>();
  const out: WeirError[] = [];
  for (const m of ms) {
    const group = m.apiVersion.includes('/') ? m.apiVersion.split('/')[0] : '';
    const key = `${group}|${m.kind}|${m.metadata.namespace ?? ''}|${m.metadata.name}`;
    const first = seen.get(key);
    if (first)
      out.push(
        new WeirError('ERR_K8S_DUPLICATE', `defined twice (first in ${first.file}, object #${first.index})`, {
          location: { file: m.file, object: objectName(m), field: 'metadata.name' },
        }),
      );
    else seen.set(key, m);
  }
  return out;
}

function asProblems(err: unknown): WeirError[] {
  if (err instanceof ValidationError) return err.problems;
  if (err instanceof WeirError) return [err];
  throw err;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
