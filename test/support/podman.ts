// A real container runtime for tests: Debian's podman (4.3, CNI network backend) run inside a lab
// node's network namespace, so the host side of every container veth lands in the node and never
// in the machine's namespace. Facts this rests on (docs/cni.md, "Testing with podman"):
//   - podman runs in a private mount namespace with cgroup2 at /sys/fs/cgroup (the machine has
//     hybrid cgroups) and a tmpfs of its own at /run/netns (the container netns bind mounts stay
//     inside it: nothing of podman's appears in the machine's /run/netns). One long-lived holder
//     process keeps that mount namespace, so every podman command sees the same bind mounts;
//   - no registry: containers run a busybox-static tree (--rootfs) built here;
//   - its state (--root, --runroot, --tmpdir) lives under the lab's state directory and its
//     containers' cgroups under the lab's cgroup, so `weir lab down` sweeps a crashed run's
//     leftovers (processes in the node netns and the lab cgroup are killed, the state removed).
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface RuntimeResult {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(
  argv: string[],
  env: NodeJS.ProcessEnv,
  input?: string,
  timeoutMs = 60_000,
): Promise<RuntimeResult> {
  return new Promise((resolve) => {
    const p = spawn(argv[0] as string, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    // A command that reads no stdin may exit before it is written: that is no error.
    p.stdin.on('error', () => undefined);
    if (input === undefined) p.stdin.end();
    else p.stdin.end(input);
  });
}

/** A busybox-static root filesystem: /bin/busybox and its applets as links. */
export async function busyboxRootfs(dir: string): Promise<string> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp', 'www']) await mkdir(join(dir, d), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'bin', 'busybox'));
  for (const applet of ['sh', 'ip', 'sleep', 'nc', 'cat', 'echo', 'httpd', 'mkdir', 'ping'])
    await symlink('busybox', join(dir, 'bin', applet)).catch(() => undefined);
  return dir;
}

export class PodmanHost {
  private holder: ChildProcess | undefined;
  readonly conf: string;

  /**
   * @param stateDir podman's state (under the lab's state directory)
   * @param cgroupParent the containers' cgroup parent, relative to the cgroup2 root (under the lab's)
   */
  constructor(
    readonly nodeNetns: string,
    readonly stateDir: string,
    readonly cgroupParent: string,
    readonly cni: { confDir: string; binDir: string },
  ) {
    this.conf = join(stateDir, 'containers.conf');
  }

  get pid(): number {
    const pid = this.holder?.pid;
    if (!pid) throw new Error('the podman host is not started');
    return pid;
  }

  async start(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true });
    await writeFile(
      this.conf,
      [
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${this.cni.binDir}"]`,
        `network_config_dir = "${this.cni.confDir}"`,
        '',
      ].join('\n'),
    );
    // ip netns exec, unshare and sh all exec: the holder's pid is the child's.
    this.holder = spawn(
      'ip',
      [
        'netns',
        'exec',
        this.nodeNetns,
        'unshare',
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t cgroup2 weir-cgroup2 /sys/fs/cgroup && mount -t tmpfs weir-netns /run/netns && echo ready && exec sleep infinity',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const holder = this.holder;
    await new Promise<void>((resolve, reject) => {
      let err = '';
      holder.stderr?.on('data', (c: Buffer) => (err += c.toString()));
      holder.stdout?.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`the podman host exited (${code}): ${err}`)));
    });
  }

  /** Global podman flags: state under the lab, cgroupfs, file events (no systemd, no journald). */
  private globals(): string[] {
    return [
      '--root',
      join(this.stateDir, 'root'),
      '--runroot',
      join(this.stateDir, 'run'),
      '--tmpdir',
      join(this.stateDir, 'tmp'),
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'file',
    ];
  }

  /** Runs a command in the holder's mount and network namespaces. */
  inside(argv: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<RuntimeResult> {
    return exec(
      ['nsenter', '-t', String(this.pid), '-m', '-n', ...argv],
      {
        ...process.env,
        CONTAINERS_CONF: this.conf,
        ...env,
      },
      input,
    );
  }

  podman(args: string[]): Promise<RuntimeResult> {
    return this.inside(['podman', ...this.globals(), ...args]);
  }

  /** `podman run -d` of a busybox container on `network` (flags this machine needs; see above). */
  run(name: string, rootfs: string, script: string, network = 'weir'): Promise<RuntimeResult> {
    return this.podman([
      'run',
      '-d',
      '--name',
      name,
      '--network',
      network,
      '--cgroup-parent',
      this.cgroupParent,
      '--privileged',
      '--pids-limit',
      '0',
      '--ulimit',
      'nofile=10000:10000',
      '--ulimit',
      'nproc=4000:4000',
      '--rootfs',
      rootfs,
      '/bin/sh',
      '-c',
      script,
    ]);
  }

  /** The container's network namespace as podman gave it to the plugin (CNI_NETNS). */
  async sandbox(name: string): Promise<string> {
    const r = await this.podman(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', name]);
    if (r.code !== 0) throw new Error(`podman inspect ${name}: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** Removes every container and stops the holder (its mount namespace goes with it). */
  async stop(): Promise<void> {
    const h = this.holder;
    if (!h?.pid) return;
    if (h.exitCode === null && h.signalCode === null) await this.podman(['rm', '-a', '-f', '-t', '0']);
    await new Promise<void>((resolve) => {
      if (h.exitCode !== null || h.signalCode !== null) return resolve();
      h.once('exit', () => resolve());
      h.kill('SIGKILL');
    });
    this.holder = undefined;
  }
}
