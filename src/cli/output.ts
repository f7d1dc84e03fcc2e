// How the CLI prints what it lists or reports: a table for people (default), JSON for programs
// (-o json, kubectl's habit), or YAML.
import { stringify } from 'yaml';
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
  else if (format === 'yaml') process.stdout.write(stringify(data));
  else if (rows.length === 0) process.stdout.write('No resources found.\n');
  else process.stdout.write(formatTable(rows, columns));
}
