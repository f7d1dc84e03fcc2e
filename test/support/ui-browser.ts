// What the web UI's browser tests share (test/e2e/ui*.privileged.test.ts): a lab brought up with
// their manifests applied, `weir ui` on a free loopback port, Debian's Chromium (headless, driven
// by playwright-core, no browser download) on its page, the flow table's rows, and tearing all of
// it down. The page's CSP forbids Playwright's eval-based waits: the tests poll (./poll.ts).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../../src/shared/paths.js';
import { cli, ok, weir } from './cli.js';

/** Where the tests' screenshots land (gitignored). */
export const shots = join(repoRoot, 'test', 'e2e', 'screenshots');

/** The selector of the service map's edge from → to with this verdict (or pending state). */
export const edgeSel = (from: string, to: string, verdict: string) =>
  `g.edge[data-from="${from}"][data-to="${to}"][data-verdict="${verdict}"]`;

/** `weir lab probe` of a TCP port: whether the connection was made. */
export async function probe(lab: string, from: string, to: string, port: string, timeoutMs: number) {
  const r = await cli(
    ['lab', 'probe', '--from', from, '--to', to, '--port', port, '--timeout', String(timeoutMs)],
    lab,
  );
  return r.code === 0;
}

/**
 * The rows of the page's flow table (#flows), one field per column class; the verdict cell
 * without its leading symbol.
 */
export function rows<K extends string>(page: Page, columns: readonly K[]): Promise<Record<K, string>[]> {
  return page.$$eval(
    '#flows tbody tr',
    (trs, cols) =>
      trs.map((tr) => {
        const row: Record<string, string> = {};
        for (const c of cols) {
          const text = (tr.querySelector(`td.${c}`)?.textContent ?? '').trim();
          row[c] = c === 'verdict' ? text.replace(/^\S+\s/, '') : text;
        }
        return row;
      }),
    columns as readonly string[],
  ) as Promise<Record<K, string>[]>;
}

/** A lab for a browser test, `weir ui` on it and a Chromium on the UI; `down()` removes them all. */
export class UiLab {
  /** A temporary folder of the test's own (manifests, the browser profile). */
  dir = '';
  private ui: ChildProcessWithoutNullStreams | undefined;
  private context: BrowserContext | undefined;

  constructor(readonly lab: string) {}

  /** A fresh lab (`weir lab up` with `upArgs`) with `manifests` (file name → YAML) applied in order. */
  async up(
    tmpPrefix: string,
    manifests: Record<string, string>,
    upArgs: string[] = [],
    upTimeoutMs?: number,
  ): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), tmpPrefix));
    await mkdir(shots, { recursive: true });
    for (const [name, yaml] of Object.entries(manifests)) await writeFile(join(this.dir, name), yaml);
    await cli(['lab', 'down'], this.lab);
    await ok(['lab', 'up', ...upArgs], this.lab, upTimeoutMs);
    for (const name of Object.keys(manifests)) await ok(['apply', '-f', join(this.dir, name)], this.lab);
  }

  /** Starts `weir ui` on a free loopback port; resolves with its URL. */
  startUi(): Promise<string> {
    const child = spawn(weir, ['ui', '--lab', this.lab, '--listen', '127.0.0.1:0']);
    this.ui = child;
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`weir ui did not start: ${out} ${err}`)), 15_000);
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
        if (m?.[1]) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on('exit', (code) => reject(new Error(`weir ui exited ${code}: ${err}`)));
    });
  }

  /** Headless Chromium on `url`; the page and the script errors it reports (to assert none). */
  async browse(url: string): Promise<{ page: Page; pageErrors: string[] }> {
    this.context = await chromium.launchPersistentContext(join(this.dir, 'chromium-profile'), {
      executablePath: '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1280, height: 800 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = this.context.pages()[0] ?? (await this.context.newPage());
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(url);
    return { page, pageErrors };
  }

  async down(): Promise<void> {
    await this.context?.close();
    this.ui?.kill('SIGTERM');
    await cli(['lab', 'down'], this.lab);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
