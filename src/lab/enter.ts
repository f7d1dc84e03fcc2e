// `node enter.js <cgroup-dir> <netns> CMD...`: runs CMD inside a lab pod's cgroup and netns. It
// joins the cgroup itself before starting CMD, so CMD never runs outside it (a cgroup-attached
// BPF program sees every socket CMD opens), then passes on stdio, signals and the exit code.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { constants } from 'node:os';

const [cgroup, netns, ...cmd] = process.argv.slice(2);
if (!cgroup || !netns || cmd.length === 0) {
  process.stderr.write('usage: enter.js <cgroup-dir|-> <netns> CMD...\n');
  process.exit(2);
}
if (cgroup !== '-') writeFileSync(`${cgroup}/cgroup.procs`, String(process.pid));
const child = spawn('nsenter', [`--net=/var/run/netns/${netns}`, '--', ...cmd], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
child.on('error', (err) => {
  process.stderr.write(`weir: ${err.message}\n`);
  process.exit(127);
});
child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)));
