// docs/errors.md, generated from the error catalogue (error-codes.ts). `make docs` (or
// `node dist/src/shared/error-docs.js`) rewrites it; error-codes.test.ts fails while it is stale.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorCodes, type ErrorCode, type ErrorCodeSpec } from './error-codes.js';
import { repoRoot } from './paths.js';

export const errorsDocPath = join(repoRoot, 'docs', 'errors.md');

/** "ERR_LAB_NOT_UP" -> "LAB": the area a code belongs to. */
export const errorArea = (code: string) => code.split('_')[1] ?? '';

const cell = (text: string) => text.replace(/\|/g, '\\|');

/** The text of docs/errors.md. */
export function errorsMarkdown(): string {
  const codes = Object.keys(errorCodes) as ErrorCode[];
  const areas = [...new Set(codes.map(errorArea))];
  const out = [
    '# Error codes',
    '',
    '<!-- Generated from src/shared/error-codes.ts by `make docs`; do not edit by hand. -->',
    '',
    'Every weir error carries a stable code, `ERR_<AREA>_<WHAT>`, that scripts and tests can branch on;',
    'the message is for people. Errors about input also name where the bad input is: the file, the',
    'object (`Kind namespace/name`) and the field. The CLI prints one line per problem on stderr and',
    'exits 1:',
    '',
    '```',
    'Error: bad.yaml: CiliumNetworkPolicy nowhere/p: metadata.namespace: namespaces "nowhere" not found [ERR_K8S_NAMESPACE_NOT_FOUND]',
    '```',
    '',
    'The agent\'s API answers an error as JSON, `{"error": {"code", "message", "location", "problems"}}`,',
    'with HTTP status 400 unless the table gives another (500 for a failure that is not a weir error).',
    '',
    `${codes.length} codes in ${areas.length} areas: ${areas.map((a) => `[${a}](#err_${a.toLowerCase()})`).join(', ')}.`,
  ];
  for (const area of areas) {
    out.push('', `## ERR_${area}`, '', '| code | meaning | HTTP |', '| --- | --- | --- |');
    for (const code of codes.filter((c) => errorArea(c) === area)) {
      const spec: ErrorCodeSpec = errorCodes[code];
      out.push(`| \`${code}\` | ${cell(spec.meaning)} | ${spec.http ?? ''} |`);
    }
  }
  return out.join('\n') + '\n';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(errorsDocPath, errorsMarkdown());
  process.stdout.write(`wrote ${errorsDocPath}\n`);
}
