// `node enter.js <cgroup-dir|-> <netns> <resolv.conf|-> CMD...`: runs CMD inside a lab pod's cgroup
// and netns. It joins the cgroup itself before starting CMD, so CMD never runs outside it (a
// cgroup-attached BPF program sees every socket CMD opens), then passes on stdio, signals and the
// exit code. With a resolv.conf, CMD runs in a private mount namespace where that file is bind
// mounted over /etc/resolv.conf: the pod's resolver (the lab's cluster DNS), as a pod sees it.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { constants } from 'node:os';

const [cgroup, netns, resolv, ...cmd] = process.argv.slice(2);
if (!cgroup || !netns || !resolv || cmd.length === 0) {
  process.stderr.write('usage: enter.js <cgroup-dir|-> <netns> <resolv.conf|-> CMD...\n');
  process.exit(2);
}
if (cgroup !== '-') writeFileSync(`${cgroup}/cgroup.procs`, String(process.pid));
const inNetns = [`--net=/var/run/netns/${netns}`, '--'];
const argv =
  resolv === '-'
    ? [...inNetns, ...cmd]
    : [
        ...inNetns,
        'unshare',
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        resolv,
        ...cmd,
      ];
const child = spawn('nsenter', argv, { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
child.on('error', (err) => {
  process.stderr.write(`weir: ${err.message}\n`);
  process.exit(127);
});
child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)));
