// `weir cni install|uninstall|attachments`: puts weir-cni where a container runtime finds it (the
// network config list in the runtime's config directory, the plugin in its plugin directory;
// CNI's defaults /etc/cni/net.d and /opt/cni/bin), takes it away again, and lists the containers
// runtimes attached through it (docs/cni.md).
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { agentClient } from '../../agent/client.js';
import type { CniAttachmentInfo } from '../../agent/cni.js';
import { agentSocket } from '../../agent/paths.js';
import { supportedVersions } from '../../cni/spec.js';
import { WeirError } from '../../shared/errors.js';
import { printResult, type OutputFormat } from '../output.js';
import { labOption, outputOption } from './lab.js';

export const defaultConfDir = '/etc/cni/net.d';
export const defaultBinDir = '/opt/cni/bin';
export const pluginName = 'weir-cni';
/** The first line after the shebang of the installed plugin: uninstall removes only a file with it. */
const marker = '# weir-cni, installed by `weir cni install`';

export const conflistFile = (confDir: string, network: string) => join(confDir, `10-${network}.conflist`);

/** The network config list a runtime reads: one plugin, weir-cni, talking to the lab's agent. */
export function conflist(o: { network: string; cniVersion: string; lab: string }) {
  return {
    cniVersion: o.cniVersion,
    name: o.network,
    plugins: [{ type: pluginName, agentSocket: agentSocket(o.lab) }],
  };
}

/** This checkout's bin/weir-cni (the installed plugin execs it with this node). */
function pluginSource(): string {
  const here = dirname(fileURLToPath(import.meta.url)); // dist/src/cli/commands
  return resolve(here, '..', '..', '..', '..', 'bin', pluginName);
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  try {
    await mkdir(dirname(file), { recursive: true });
    const tmp = `${file}.weir-tmp`;
    await writeFile(tmp, text, { mode });
    await rename(tmp, file);
  } catch (err) {
    throw new WeirError('ERR_CNI_INSTALL', `cannot write ${file}: ${(err as Error).message}`, {
      location: { file },
      cause: err,
    });
  }
}

export interface InstallOptions {
  lab: string;
  confDir: string;
  binDir: string;
  network: string;
  cniVersion: string;
}

export async function installCni(o: InstallOptions): Promise<{ conflist: string; plugin: string }> {
  const plugin = join(o.binDir, pluginName);
  const conf = conflistFile(o.confDir, o.network);
  const script = `#!/bin/sh\n${marker}\nexec '${process.execPath}' '${pluginSource()}' "$@"\n`;
  await writeAtomic(plugin, script, 0o755);
  await writeAtomic(conf, JSON.stringify(conflist(o), null, 2) + '\n', 0o644);
  return { conflist: conf, plugin };
}

/** Removes what install wrote; a plugin file that is not ours stays (and is named). */
export async function uninstallCni(o: Omit<InstallOptions, 'lab' | 'cniVersion'>): Promise<string[]> {
  const removed: string[] = [];
  const conf = conflistFile(o.confDir, o.network);
  const plugin = join(o.binDir, pluginName);
  if (existsSync(conf)) {
    const text = readFileSync(conf, 'utf8');
    if (!text.includes(`"${pluginName}"`))
      throw new WeirError(
        'ERR_CNI_INSTALL',
        `${conf} is not weir's network config (no ${pluginName} plugin): left alone`,
        {
          location: { file: conf },
        },
      );
    await rm(conf, { force: true });
    removed.push(conf);
  }
  if (existsSync(plugin)) {
    if (!readFileSync(plugin, 'utf8').includes(marker))
      throw new WeirError('ERR_CNI_INSTALL', `${plugin} was not installed by weir cni install: left alone`, {
        location: { file: plugin },
      });
    await rm(plugin, { force: true });
    removed.push(plugin);
  }
  return removed;
}

function pathOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--conf-dir <dir>', "the runtime's network config directory").default(defaultConfDir),
    )
    .addOption(new Option('--bin-dir <dir>', "the runtime's CNI plugin directory").default(defaultBinDir))
    .addOption(new Option('--network <name>', 'the network name containers are started on').default('weir'));
}

export function cniCommand(): Command {
  const cmd = new Command('cni').description('weir as the CNI plugin of a container runtime (docs/cni.md)');
  pathOptions(
    cmd
      .command('install')
      .description('writes the network config list and installs weir-cni where a runtime finds it')
      .addOption(labOption())
      .addOption(
        new Option('--cni-version <version>', 'the config list version (a runtime on an older libcni: 1.0.0)')
          .choices([...supportedVersions])
          .default('1.1.0'),
      ),
  ).action(async (o: InstallOptions) => {
    const r = await installCni(o);
    process.stdout.write(`installed ${r.plugin}\nwrote ${r.conflist} (network ${o.network}, lab ${o.lab})\n`);
  });
  pathOptions(
    cmd.command('uninstall').description('removes the network config list and the plugin that install wrote'),
  ).action(async (o: Omit<InstallOptions, 'lab' | 'cniVersion'>) => {
    const removed = await uninstallCni(o);
    process.stdout.write(
      removed.length ? removed.map((f) => `removed ${f}\n`).join('') : 'nothing to remove\n',
    );
  });
  cmd
    .command('attachments')
    .description('the containers runtimes attached through weir-cni, with their pods and addresses')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const r = await agentClient(o.lab).call<{ items: CniAttachmentInfo[] }>('GET', '/v1/cni/attachments');
      printResult(o.output, r.items, r.items, [
        { header: 'pod', get: (a) => `${a.namespace}/${a.name}` },
        { header: 'container', get: (a) => a.containerId.slice(0, 12) },
        { header: 'interface', get: (a) => a.ifname },
        { header: 'phase', get: (a) => a.phase },
        { header: 'ipv4', get: (a) => a.ip },
        { header: 'ipv6', get: (a) => a.ip6 ?? '' },
        { header: 'host veth', get: (a) => a.hostIfname },
        { header: 'node', get: (a) => a.node },
      ]);
    });
  return cmd;
}
