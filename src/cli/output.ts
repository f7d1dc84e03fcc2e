// How the CLI prints what it lists or reports: a table for people (default), JSON for programs
// (-o json, kubectl's habit), or YAML.
import { stringify } from 'yaml';
import { v1List } from '../k8s/objects.js';
import { WeirError } from '../shared/errors.js';

export type OutputFormat = 'table' | 'json' | 'yaml' | 'wide';
export const outputFormats: OutputFormat[] = ['table', 'json', 'yaml', 'wide'];

export function parseOutput(value: string): OutputFormat {
  if ((outputFormats as string[]).includes(value)) return value as OutputFormat;
  throw new WeirError(
    'ERR_CLI_OUTPUT',
    `unknown output format '${value}' (one of ${outputFormats.join(', ')})`,
  );
}

export interface Column<T> {
  header: string;
  get: (row: T) => string | number | boolean | undefined | null;
}

/** Aligned columns, headers in capitals, like kubectl get. */
export function formatTable<T>(rows: T[], columns: Column<T>[]): string {
  const cells = rows.map((r) => columns.map((c) => String(c.get(r) ?? '')));
  const headers = columns.map((c) => c.header.toUpperCase());
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]?.length ?? 0)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

/** Prints `data` as JSON/YAML, or `rows` as a table. */
export function printResult<T>(format: OutputFormat, data: unknown, rows: T[], columns: Column<T>[]): void {
  if (format === 'json') process.stdout.write(JSON.stringify(data, null, 2) + '\n');
  // kubectl's layout; YAML 1.1 quoting keeps strings such as timestamps, "yes" and "10:20" strings
  // for YAML 1.1 readers too.
  else if (format === 'yaml') process.stdout.write(stringify(data, { indentSeq: false, version: '1.1' }));
  else if (rows.length === 0) process.stdout.write('No resources found.\n');
  else process.stdout.write(formatTable(rows, columns));
}

/** kubectl's answer to a name it does not find. */
export function notFound(resource: string, name: string, namespace?: string): WeirError {
  return new WeirError(
    'ERR_CLI_NOT_FOUND',
    `${resource} "${name}" not found${namespace === undefined ? '' : ` in namespace "${namespace}"`}`,
  );
}

/** The one object named, or all of them; -o json|yaml: the object itself or a v1 List. */
export function pick<T, V>(
  all: T[],
  name: string | undefined,
  nameOf: (t: T) => string,
  toObject: (t: T) => V,
  missing: () => WeirError,
): { rows: T[]; data: V | ReturnType<typeof v1List<V>> } {
  if (name === undefined) return { rows: all, data: v1List(all.map(toObject)) };
  const one = all.find((t) => nameOf(t) === name);
  if (!one) throw missing();
  return { rows: [one], data: toObject(one) };
}
