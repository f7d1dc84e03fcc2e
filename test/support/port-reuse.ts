// A script to run in a pod (node): n HTTP/1.1 requests with `Connection: close`, each on a new
// connection from one source port, the next 100 ms after the server closed the previous one — so
// the proxy in between (a transparent listener of the node, bpf_sk_assign) closed first towards
// the pod and, without src/proxy/time-wait.ts, left a TIME_WAIT socket of the tuple in the node's
// namespace that makes the kernel drop the pod's next SYN. Arguments: ip port n sourcePort.
// Prints {times: connect ms[], synRetrans: the pod's TcpExt TCPSynRetrans during the run} or
// {error, i, times}. With it: the run of it the tests share, and the TIME_WAIT sockets of a node.
import assert from 'node:assert/strict';
import { lastJson, ok } from './cli.js';
import { inNode } from './cluster-nodes.js';

export const portReuseScript = `
import net from 'node:net';
import { readFileSync } from 'node:fs';
const [ip, port, n, lport] = process.argv.slice(2);
const synRetrans = () => {
  const l = readFileSync('/proc/net/netstat', 'utf8').split('\\n');
  const i = l.findIndex((x) => x.startsWith('TcpExt:'));
  const k = l[i].split(' '), v = l[i + 1].split(' ');
  return Number(v[k.indexOf('TCPSynRetrans')]);
};
const s0 = synRetrans();
const times = [];
for (let i = 0; i < Number(n); i++) {
  const t0 = Date.now();
  const r = await new Promise((resolve) => {
    const s = net.connect({ host: ip, port: Number(port), localPort: Number(lport) }, () => {
      times.push(Date.now() - t0);
      s.write('GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n');
    });
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', (e) => resolve('error ' + e.message));
    setTimeout(() => { s.destroy(); resolve('timeout'); }, 15000);
  });
  if (!r.startsWith('HTTP/1.1 200')) {
    console.log(JSON.stringify({ error: r.slice(0, 100), i, times }));
    process.exit(0);
  }
  await new Promise((res) => setTimeout(res, 100));
}
console.log(JSON.stringify({ times, synRetrans: synRetrans() - s0 }));
`;

/**
 * Runs portReuseScript (written to `script`) in default/client of lab `lab` towards `server`:8080,
 * six connections from port 23456, and asserts that every one was answered and no SYN of the pod
 * had to be retransmitted. Resolves with what the script printed.
 */
export async function assertPortReuse(lab: string, script: string, server: string): Promise<string> {
  const out = await ok(
    ['lab', 'exec', 'default/client', '--', process.execPath, script, server, '8080', '6', '23456'],
    lab,
    120_000,
  );
  const r = lastJson<{ times?: number[]; synRetrans?: number; error?: string }>(out);
  assert.equal(r.error, undefined, `every connection from the same port answered: ${out}`);
  assert.equal(r.times?.length, 6, out);
  assert.equal(r.synRetrans, 0, `no SYN of the pod had to be retransmitted: ${out}`);
  return out;
}

/** The TIME_WAIT sockets in the namespace of the lab's node `node` (`ss -tanH state time-wait`). */
export async function timeWaitSockets(lab: string, node: string): Promise<string> {
  return (await inNode(lab, node, ['ss', '-tanH', 'state', 'time-wait'])).stdout;
}
