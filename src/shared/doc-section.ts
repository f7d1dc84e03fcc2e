// Generated parts of the docs: a Markdown file holds a section between
//   <!-- generated:NAME begin -->  and  <!-- generated:NAME end -->
// whose text a catalogue renders (the map table, the agent settings, the drop reasons). Tests
// check each section against its catalogue; `WEIR_WRITE_DOCS=1` makes them rewrite it instead.
import { readFileSync, writeFileSync } from 'node:fs';
import { WeirError } from './errors.js';

const markers = (name: string) =>
  [`<!-- generated:${name} begin -->`, `<!-- generated:${name} end -->`] as const;

/** The text between the markers of section `name` in `file` (without the markers' newlines). */
export function readDocSection(file: string, name: string): string {
  const text = readFileSync(file, 'utf8');
  const [begin, end] = markers(name);
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a)
    throw new WeirError('ERR_DOC_SECTION', `${file} has no section '${name}' (${begin} … ${end})`, {
      location: { file, object: name },
    });
  return text
    .slice(a + begin.length, b)
    .replace(/^\n/, '')
    .replace(/\n$/, '');
}

/** Replaces the text of section `name` in `file` with `body`. */
export function writeDocSection(file: string, name: string, body: string): void {
  const text = readFileSync(file, 'utf8');
  const [begin, end] = markers(name);
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) readDocSection(file, name); // throws, naming the markers
  writeFileSync(file, `${text.slice(0, a + begin.length)}\n${body}\n${text.slice(b)}`);
}

/**
 * For tests: the section as it is in the file, after rewriting it from `body` when
 * WEIR_WRITE_DOCS=1 (so `WEIR_WRITE_DOCS=1 node --test …` regenerates the docs).
 */
export function docSection(file: string, name: string, body: string): string {
  if (process.env.WEIR_WRITE_DOCS === '1') writeDocSection(file, name, body);
  return readDocSection(file, name);
}
