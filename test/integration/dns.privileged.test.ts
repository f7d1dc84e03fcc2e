// Cluster DNS, the DNS proxy and toFQDNs, end to end with real clients: `dig` (bind9-dnsutils)
// and the pods' own resolver (getent / curl / node's getaddrinfo through the /etc/resolv.conf the
// pod sees), real lookups through the datapath's redirect, real connections to externals.
//
//   - `weir lab up` runs kube-system/coredns behind kube-system/kube-dns: Services, headless
//     endpoints, SRV, pods, the spec's external names; NXDOMAIN otherwise; the search path works.
//   - DNS rules: allowed names answered, others REFUSED, over UDP and TCP; other egress dropped.
//   - The proxy down (its agent paused so nothing restarts it): those pods' DNS fails closed.
//   - toFQDNs: nothing before the lookup, the learned address after it, other names not; a pod
//     that connects the instant it has the answer is never dropped (the ordering guarantee);
//     expiry (TTL 2 s here) closes new connections while an open one survives.
//   - Visibility: DNS L7 flows with Hubble's fields, --dns-query, hubble_dns_* metrics.
//   - CNAME chains (declared aliases): addresses learned for every name of the chain.
//   - Bad input: malformed datagrams, a compression loop, an oversize answer (TC, TCP retry), a
//     burst of queries — answered or dropped, counted, and the proxy still answers after.
//   - The FQDN cache survives kill -9 of the agent (saved in its node-local state).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { proxyPid } from '../../src/agent/proxy-manager.js';
import { agentPid, stopAgent } from '../../src/agent/spawn.js';
import { Lab, probe, resolveTarget } from '../../src/lab/index.js';
import { cli, ok } from '../support/cli.js';
import { testLab } from '../support/lab-name.js';
import { until as pollUntil } from '../support/poll.js';

const LAB = testLab('t-dns');
const many = Array.from({ length: 60 }, (_, i) => `198.18.0.${i + 1}`);

const labSpec = `name: ${LAB}
nodes: [{ name: node1, podCIDR: 10.244.0.0/24 }]
externals:
  - { name: api, ip: 192.0.2.10, serves: [{ port: 80 }], dnsNames: [api.example.com] }
  - { name: www, ip: 192.0.2.20, serves: [{ port: 80 }], dnsNames: [www.example.com] }
dns:
  ttl: 2
  records:
    many.example.com: [${many.join(', ')}]
    front.example.com: { cname: web.example.com }
    web.example.com: { cname: www.example.com }
`;

const pods = `
apiVersion: v1
kind: Namespace
metadata: { name: app }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app, labels: { role: client } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: free, namespace: app, labels: { role: free } }
spec: { containers: [{ name: c }] }
---
apiVersion: v1
kind: Pod
metadata: { name: echo-0, namespace: app, labels: { role: echo } }
spec: { containers: [{ name: c, ports: [{ name: http, containerPort: 80 }] }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: app }
spec: { selector: { role: echo }, ports: [{ name: http, port: 80, targetPort: 80 }] }
---
apiVersion: v1
kind: Service
metadata: { name: echo-hl, namespace: app }
spec: { clusterIP: None, selector: { role: echo }, ports: [{ name: http, port: 80, targetPort: 80 }] }
`;

const dnsPolicy = `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-dns, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: client } }
  egress:
    - toEndpoints: [{ matchLabels: { k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns } }]
      toPorts:
        - ports: [{ port: "53", protocol: ANY }]
          rules:
            dns: [{ matchPattern: "*.example.com" }, { matchName: "echo.app.svc.cluster.local" }]
    - toFQDNs: [{ matchName: api.example.com }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
`;

/** toFQDNs through an alias: `front` -> `web` -> `www` (192.0.2.20); the rule names one of them. */
const cnamePolicy = (name: string) => `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: { name: client-cname, namespace: app }
spec:
  endpointSelector: { matchLabels: { role: client } }
  egress:
    - toFQDNs: [{ matchName: ${name} }]
      toPorts: [{ ports: [{ port: "80", protocol: TCP }] }]
`;

let dir = '';
const file = (n: string) => join(dir, n);

/** A command inside a pod (its resolver is the cluster DNS). */
async function inPod(pod: string, cmd: string[], timeoutMs = 30_000) {
  return cli(['lab', 'exec', pod, '--', ...cmd], LAB, timeoutMs);
}

async function dig(
  pod: string,
  ...args: string[]
): Promise<{ status: string; answers: string[]; flags: string; text: string }> {
  const r = await inPod(pod, ['dig', '+tries=1', '+time=2', ...args]);
  const text = r.stdout + r.stderr;
  const status = /status: (\w+)/.exec(text)?.[1] ?? 'NONE';
  const flags = /;; flags: ([^;]*);/.exec(text)?.[1] ?? '';
  const answerSection = text.split(';; ANSWER SECTION:\n')[1]?.split('\n\n')[0] ?? '';
  const answers = answerSection
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(/\s+/).slice(3).join(' '));
  return { status, answers, flags, text };
}

async function curl(pod: string, url: string, timeoutS = 2): Promise<{ ok: boolean; body: string }> {
  const r = await inPod(pod, ['curl', '-s', '-m', String(timeoutS), url]);
  return { ok: r.code === 0, body: r.stdout };
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await ok(['agent', 'metrics'], LAB).catch(() => '');
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.split(' ').pop());
  }
  return sum;
}

const until = (what: string, cond: () => Promise<boolean>, ms = 20_000) => pollUntil(what, cond, ms, 200);

describe('cluster DNS, the DNS proxy and toFQDNs', { timeout: 600_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-dns-test-'));
    await writeFile(file('lab.yaml'), labSpec);
    await writeFile(file('pods.yaml'), pods);
    await writeFile(file('dns.yaml'), dnsPolicy);
    await cli(['lab', 'down'], LAB);
    await ok(['lab', 'up', '-f', file('lab.yaml')], LAB);
    await ok(['apply', '-f', file('pods.yaml')], LAB);
  });

  after(async () => {
    await cli(['lab', 'down'], LAB);
    await rm(dir, { recursive: true, force: true });
  });

  it('lab up runs the cluster DNS: kube-system/coredns behind the kube-dns Service', async () => {
    const pods = JSON.parse(await ok(['get', 'pods', '-n', 'kube-system', '-o', 'json'], LAB)) as {
      items: { metadata: { name: string; labels?: Record<string, string> } }[];
    };
    const coredns = pods.items.find((p) => p.metadata.name === 'coredns');
    assert.equal(coredns?.metadata.labels?.['k8s-app'], 'kube-dns');
    const svc = JSON.parse(
      await ok(['get', 'service', 'kube-dns', '-n', 'kube-system', '-o', 'json'], LAB),
    ) as {
      spec: { clusterIP: string; ports: { port: number; protocol: string }[] };
    };
    assert.deepEqual(svc.spec.ports.map((p) => `${p.port}/${p.protocol}`).sort(), ['53/TCP', '53/UDP']);
    const resolv = await inPod('app/client', ['cat', '/etc/resolv.conf']);
    assert.match(resolv.stdout, new RegExp(`^nameserver ${svc.spec.clusterIP.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(resolv.stdout, /^search app\.svc\.cluster\.local svc\.cluster\.local cluster\.local$/m);
  });

  it("answers the lab's Kubernetes records and declared externals; the pods' resolver uses the search path", async () => {
    const svc = await dig('app/free', 'echo.app.svc.cluster.local');
    assert.equal(svc.status, 'NOERROR');
    assert.match(svc.answers[0] ?? '', /^A 10\.96\./);
    // The pod's own resolver, by short name (search path), then HTTP to it.
    const short = await inPod('app/free', ['getent', 'hosts', 'echo']);
    assert.match(short.stdout, /^10\.96\.\S+\s+echo\.app\.svc\.cluster\.local/);
    const http = await curl('app/free', 'http://echo.app.svc.cluster.local/');
    assert.equal(http.body.trim(), 'app/echo-0');
    const srv = await dig('app/free', 'SRV', '_http._tcp.echo-hl.app.svc.cluster.local');
    assert.equal(srv.status, 'NOERROR');
    assert.match(srv.answers[0] ?? '', /^SRV 0 100 80 10-244-0-\d+\.echo-hl\.app\.svc\.cluster\.local\.$/);
    const ext = await dig('app/free', 'API.example.com');
    assert.deepEqual(ext.answers, ['A 192.0.2.10']);
    assert.equal((await dig('app/free', 'nothere.example.org')).status, 'NXDOMAIN');
    assert.equal((await dig('app/free', '+tcp', 'www.example.com')).answers[0], 'A 192.0.2.20');
  });

  it('DNS rules: allowed names are answered, others REFUSED, over UDP and TCP; other egress drops', async () => {
    await ok(['apply', '-f', file('dns.yaml')], LAB);
    for (const transport of ['+notcp', '+tcp']) {
      const allowed = await dig('app/client', transport, 'api.example.com');
      assert.equal(allowed.status, 'NOERROR', allowed.text);
      assert.deepEqual(allowed.answers, ['A 192.0.2.10']);
      assert.equal((await dig('app/client', transport, 'echo.app.svc.cluster.local')).status, 'NOERROR');
      const denied = await dig('app/client', transport, 'nothere.example.org');
      assert.equal(denied.status, 'REFUSED', 'answered by the proxy (the server says NXDOMAIN)');
      assert.equal((await dig('app/client', transport, 'example.com')).status, 'REFUSED', '*. needs a label');
    }
    // The pod's egress is isolated: the Service it may resolve is still not reachable.
    assert.equal((await curl('app/client', 'http://echo.app.svc.cluster.local/', 1)).ok, false);
    // A pod without the policy is not redirected at all.
    assert.equal((await dig('app/free', 'nothere.example.org')).status, 'NXDOMAIN');
  });

  it("the workloads' own DNS probe (the conformance runner's): from a pod and from the node, UDP and TCP", async () => {
    // Pod sources are served by the pod workload host, the node by its own workload process:
    // both send the query from their netns and report the answer's rcode and addresses.
    const server = { ip: await resolveTarget(await Lab.open(LAB), 'kube-system/coredns'), port: 53 };
    for (const protocol of ['UDP', 'TCP'] as const) {
      const q = (from: string, name: string) =>
        probe(LAB, from, { ...server, protocol }, 3000, { dns: { name, type: 'A' } });
      const allowed = await q('app/client', 'API.example.com');
      assert.deepEqual(
        [allowed.ok, allowed.rcode, allowed.answers],
        [true, 'NOERROR', ['192.0.2.10']],
        protocol,
      );
      const refused = await q('app/client', 'nothere.example.org');
      assert.deepEqual([refused.ok, refused.rcode, refused.answers], [true, 'REFUSED', []], protocol);
      const free = await q('app/free', 'nothere.example.org');
      assert.equal(free.rcode, 'NXDOMAIN', `${protocol}: not redirected`);
      const node = await q('node', 'www.example.com');
      assert.deepEqual(
        [node.ok, node.rcode, node.answers],
        [true, 'NOERROR', ['192.0.2.20']],
        `${protocol} from the node`,
      );
      // A port nothing serves: no answer, reported as the timeout (UDP) or the refusal (TCP).
      const none = await probe(LAB, 'app/free', { ...server, port: 54, protocol }, 500, {
        dns: { name: 'api.example.com', type: 'A' },
      });
      assert.equal(none.ok, false, protocol);
      assert.equal(none.rcode, undefined, protocol);
    }
  });

  it('toFQDNs: the address is reachable only after the lookup, and only for the selected name', async () => {
    await ok(['fqdn', 'cache', 'clean'], LAB);
    assert.equal((await curl('app/client', 'http://192.0.2.10/', 1)).ok, false, 'not learned yet');
    const r = await curl('app/client', 'http://api.example.com/');
    assert.equal(r.ok, true);
    assert.equal(r.body.trim(), 'ext:api');
    // Allowed by the DNS rule, but no toFQDNs selects it.
    assert.equal((await curl('app/client', 'http://www.example.com/', 1)).ok, false);
  });

  it('ordering: a pod connecting the instant it has the answer is never dropped', async () => {
    const script = `require('dns').lookup('api.example.com', 4, (err, ip) => {
      if (err) { console.log('lookup ' + err.code); process.exit(1); }
      const s = require('net').connect(80, ip);
      s.setTimeout(1500, () => { console.log('timeout'); process.exit(1); });
      s.on('connect', () => { console.log('connected ' + ip); process.exit(0); });
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
    });`;
    for (let i = 0; i < 5; i++) {
      await ok(['fqdn', 'cache', 'clean'], LAB);
      const r = await inPod('app/client', [process.execPath, '-e', script]);
      assert.equal(r.stdout.trim(), 'connected 192.0.2.10', `round ${i}: ${r.stdout}${r.stderr}`);
    }
    // Several lookups of one name at once: the answers after the first wait for the same
    // regeneration, so every one of them connects (within 800 ms: before TCP's first SYN
    // retransmission, which would hide a first SYN dropped).
    const many = `let n = 0; const k = 4;
      for (let j = 0; j < k; j++) require('dns').lookup('api.example.com', 4, (err, ip) => {
        if (err) { console.log('lookup ' + err.code); process.exit(1); }
        const s = require('net').connect(80, ip);
        s.setTimeout(800, () => { console.log('timeout'); process.exit(1); });
        s.on('connect', () => { s.destroy(); if (++n === k) { console.log('connected ' + n); process.exit(0); } });
        s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
      });`;
    for (let i = 0; i < 3; i++) {
      await ok(['fqdn', 'cache', 'clean'], LAB);
      const r = await inPod('app/client', [process.execPath, '-e', many]);
      assert.equal(r.stdout.trim(), 'connected 4', `concurrent round ${i}: ${r.stdout}${r.stderr}`);
    }
  });

  it('expiry: an open connection outlives the TTL; once it closes the address expires', async () => {
    await ok(['fqdn', 'cache', 'clean'], LAB);
    // One long-lived connection (the external echoes what is not HTTP), used again after the TTL.
    const script = `require('dns').lookup('api.example.com', 4, (err, ip) => {
      const s = require('net').connect(80, ip);
      let n = 0;
      s.on('connect', () => s.write('ping\\n'));
      s.on('data', () => { n++; if (n === 1) setTimeout(() => s.write('again\\n'), 5000); else { console.log('echoed twice'); s.end(); } });
      s.on('close', () => process.exit(0));
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
      setTimeout(() => { console.log('timeout ' + n); process.exit(1); }, 12000);
    });`;
    const open = inPod('app/client', [process.execPath, '-e', script]);
    // Past the TTL, the entry stays while its connection is open.
    await new Promise((res) => setTimeout(res, 3500));
    const cache = JSON.parse(await ok(['fqdn', 'cache', 'list', '-o', 'json'], LAB)) as {
      items: { name: string; ip: string; ttl: number; expiresAt: number }[];
    };
    const entry = cache.items.find((e) => e.name === 'api.example.com' && e.ip === '192.0.2.10');
    assert.equal(entry?.ttl, 2);
    assert.ok((entry?.expiresAt ?? Infinity) < Date.now(), 'expired, kept for its open connection');
    // policy trace explains the toFQDNs verdict: the rule, the name, the expiry.
    const t = await ok(
      ['policy', 'trace', '--from', 'app/client', '--to', '192.0.2.10', '--port', '80/TCP'],
      LAB,
    );
    assert.match(t, /ALLOWED/);
    assert.match(t, /client-dns egress\[1\]/);
    assert.match(
      t,
      /fqdn: 192\.0\.2\.10 was learned for api\.example\.com\. from a DNS answer to endpoint \d+ \(TTL 2 s\), expires /,
    );
    const r = await open;
    assert.equal(r.stdout.trim(), 'echoed twice', `the open connection outlived the 2 s TTL: ${r.stderr}`);
    // Closed: the GC (every second) lets the address go, and new connections drop.
    await until('the learned address expires', async () => {
      const cache = JSON.parse(await ok(['fqdn', 'cache', 'list', '-o', 'json'], LAB)) as {
        items: { ip: string }[];
      };
      return !cache.items.some((e) => e.ip === '192.0.2.10');
    });
    assert.equal(
      (await curl('app/client', 'http://192.0.2.10/', 1)).ok,
      false,
      'expired: new connections drop',
    );
  });

  it('visibility: DNS flows with Hubble fields, --dns-query, and hubble_dns_* metrics', async () => {
    const before = await metric('hubble_dns_responses_total', { rcode: 'Query Refused' });
    await dig('app/client', 'denied.example.org');
    await until(
      'the refused answer in the metrics',
      async () => (await metric('hubble_dns_responses_total', { rcode: 'Query Refused' })) > before,
    );
    const flows = (
      await ok(
        ['observe', '--type', 'l7', '--dns-query', 'denied\\.example', '-o', 'json', '--last', '10'],
        LAB,
      )
    )
      .split('\n')
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as {
            l7: { type: string; dns?: { query: string; rcode: number; qtypes: string[] } };
            verdict: string;
          },
      );
    const answer = flows.find((f) => f.l7.type === 'RESPONSE');
    assert.deepEqual(
      {
        query: answer?.l7.dns?.query,
        rcode: answer?.l7.dns?.rcode,
        qtypes: answer?.l7.dns?.qtypes,
        verdict: answer?.verdict,
      },
      { query: 'denied.example.org.', rcode: 5, qtypes: ['A'], verdict: 'DROPPED' },
    );
    assert.ok(flows.some((f) => f.l7.type === 'REQUEST'));
    assert.ok((await metric('hubble_dns_queries_total', { qtypes: 'A' })) > 0);
    assert.ok((await metric('hubble_dns_response_types_total', { type: 'A' })) > 0);
  });

  it('bad input: malformed, compression loop, oversize and a burst are handled and counted; the proxy stays up', async () => {
    const pid = proxyPid(LAB);
    const malformedBefore = await metric('weir_proxy_dns_queries_total', { outcome: 'malformed' });
    const svcIP = (
      await inPod('app/client', ['sh', '-c', "awk '/^nameserver/{print $2}' /etc/resolv.conf"])
    ).stdout.trim();
    // A truncated header, a name running off the end, a compression pointer to itself.
    const script = `const s = require('dgram').createSocket('udp4');
      const msgs = [Buffer.from('0102', 'hex'),
        Buffer.from('abcd0100000100000000000003777777', 'hex'),
        Buffer.from('abcd01000001000000000000c00c00010001', 'hex')];
      let got = 0;
      s.on('message', (m) => { got++; console.log('reply rcode ' + (m[3] & 15)); });
      for (const m of msgs) s.send(m, 53, ${JSON.stringify(svcIP)});
      setTimeout(() => { console.log('replies ' + got); process.exit(0); }, 1500);`;
    const r = await inPod('app/client', [process.execPath, '-e', script]);
    assert.match(r.stdout, /reply rcode 1/, 'FORMERR for what has a header');
    assert.ok(
      (await metric('weir_proxy_dns_queries_total', { outcome: 'malformed' })) >= malformedBefore + 3,
    );
    // Oversize for UDP: the server truncates (TC), dig retries over TCP through the proxy.
    const udpOnly = await dig('app/client', '+ignore', 'many.example.com');
    assert.match(udpOnly.flags, /\btc\b/, udpOnly.text);
    const full = await dig('app/client', 'many.example.com');
    assert.equal(full.answers.length, many.length, full.text);
    // A burst of 2000 queries from one pod, without waiting for answers.
    const burst = `const s = require('dgram').createSocket('udp4');
      const q = (i) => { const b = Buffer.from('0000010000010000000000000361706907657861' + '6d706c6503636f6d0000010001', 'hex'); b.writeUInt16BE(i & 0xffff, 0); return b; };
      let got = 0; s.on('message', () => got++);
      for (let i = 0; i < 2000; i++) s.send(q(i), 53, ${JSON.stringify(svcIP)});
      setTimeout(() => { console.log('answers ' + got); process.exit(0); }, 4000);`;
    const b = await inPod('app/client', [process.execPath, '-e', burst]);
    assert.match(b.stdout, /answers \d+/);
    assert.equal(proxyPid(LAB), pid, 'the proxy did not restart');
    assert.equal((await dig('app/client', 'api.example.com')).status, 'NOERROR', 'and still answers');
  });

  it('the proxy down: DNS of the pods with DNS rules fails closed, others are untouched', async () => {
    const agent = agentPid(LAB);
    const proxy = proxyPid(LAB);
    assert.ok(agent && proxy);
    // Pause the agent (it would restart the proxy), then end the proxy.
    process.kill(agent, 'SIGSTOP');
    try {
      process.kill(proxy, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      const d = await dig('app/client', 'api.example.com');
      assert.equal(d.status, 'NONE', `no answer at all: ${d.text}`);
      assert.equal((await dig('app/free', 'api.example.com')).status, 'NOERROR', 'unfiltered pods resolve');
    } finally {
      process.kill(agent, 'SIGCONT');
    }
    await until(
      'the agent restarts the proxy',
      async () => (await dig('app/client', 'api.example.com')).status === 'NOERROR',
      60_000,
    );
  });

  it('--tofqdns-dns-reject-response-code nameError: denied queries get NXDOMAIN', async () => {
    // The agent restarted with the setting; it adopts the running proxy and hands it the code.
    await stopAgent(LAB);
    await ok(['lab', 'up', '-f', file('lab.yaml'), '--tofqdns-dns-reject-response-code', 'nameError'], LAB);
    await until('the proxy answers with the new code', async () => {
      const d = await dig('app/client', 'nothere.example.org');
      return d.status === 'NXDOMAIN';
    });
    assert.equal((await dig('app/client', 'api.example.com')).status, 'NOERROR');
    const flows = await ok(['observe', '--type', 'l7', '--dns-query', 'nothere', '--last', '1'], LAB);
    assert.match(flows, /RCode: NXDOMAIN/);
  });

  it('the FQDN cache survives kill -9 of the agent: learned addresses stay selected, connections keep working', async () => {
    // A minimum TTL longer than the restart (the lab's records live 2 s).
    await stopAgent(LAB);
    await ok(['lab', 'up', '-f', file('lab.yaml'), '--tofqdns-min-ttl', '3600'], LAB);
    await ok(['fqdn', 'cache', 'clean'], LAB);
    assert.equal((await curl('app/client', 'http://192.0.2.10/', 1)).ok, false, 'not learned yet');
    assert.equal((await curl('app/client', 'http://api.example.com/')).body.trim(), 'ext:api');
    const learned = async () =>
      (
        JSON.parse(await ok(['fqdn', 'cache', 'list', '-o', 'json'], LAB)) as {
          items: { name: string; ip: string; expiresAt: number }[];
        }
      ).items.filter((e) => e.ip === '192.0.2.10');
    const before = await learned();
    assert.deepEqual(
      before.map((e) => e.name),
      ['api.example.com'],
    );
    // The same answer again brings nothing new: the proxy releases it without asking the agent.
    const fqdnStats = async () =>
      (
        JSON.parse(await ok(['proxy', 'status', '-o', 'json'], LAB)) as {
          proxy?: { fqdn?: { skipped: number; waited: number; known: number } };
        }
      ).proxy?.fqdn;
    const s0 = await fqdnStats();
    assert.deepEqual((await dig('app/client', 'api.example.com')).answers, ['A 192.0.2.10']);
    const s1 = await fqdnStats();
    assert.deepEqual([(s1?.skipped ?? 0) - (s0?.skipped ?? 0), s1?.waited], [1, s0?.waited], 'skipped');
    // A connection open across the restart (the external echoes what is not HTTP).
    const script = `const s = require('net').connect(80, '192.0.2.10');
      let n = 0;
      s.on('connect', () => s.write('ping\\n'));
      s.on('data', () => { n++; if (n === 1) setTimeout(() => s.write('again\\n'), 8000); else { console.log('echoed twice'); s.end(); } });
      s.on('close', () => process.exit(0));
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
      setTimeout(() => { console.log('timeout ' + n); process.exit(1); }, 30000);`;
    const open = inPod('app/client', [process.execPath, '-e', script], 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    const agent = agentPid(LAB);
    assert.ok(agent);
    process.kill(agent, 'SIGKILL');
    await until('the agent is gone', async () => agentPid(LAB) === undefined);
    await ok(['lab', 'up', '-f', file('lab.yaml'), '--tofqdns-min-ttl', '3600'], LAB);
    assert.notEqual(agentPid(LAB), agent);
    // The restarted agent holds what the old one learned, and its maps still allow it.
    const after = await learned();
    assert.deepEqual(
      after.map((e) => e.name),
      ['api.example.com'],
    );
    assert.ok((after[0]?.expiresAt ?? 0) >= (before[0]?.expiresAt ?? Infinity), 'its expiry kept');
    const t = await ok(
      ['policy', 'trace', '--from', 'app/client', '--to', '192.0.2.10', '--port', '80/TCP'],
      LAB,
    );
    assert.match(t, /ALLOWED/);
    assert.match(t, /fqdn: 192\.0\.2\.10 was learned for api\.example\.com\./);
    // A new connection to the learned address, without a new lookup, and the open one.
    assert.equal((await curl('app/client', 'http://192.0.2.10/')).body.trim(), 'ext:api');
    const r = await open;
    assert.equal(r.stdout.trim(), 'echoed twice', `the connection across the restart: ${r.stderr}`);
    // The proxy forgot what it knew the old agent held: the next answer goes to the new agent.
    assert.equal((await fqdnStats())?.known, 0);
    const s2 = await fqdnStats();
    assert.equal((await curl('app/client', 'http://api.example.com/')).body.trim(), 'ext:api');
    assert.equal((await fqdnStats())?.waited, (s2?.waited ?? 0) + 1, 'asked the new agent');
  });

  // After the restart above: the agent runs with --tofqdns-min-ttl 3600 (the lab's records live 2 s).
  it('CNAME chains: the addresses are learned for the queried name and every name of the chain', async () => {
    const chain = await dig('app/client', 'front.example.com');
    assert.deepEqual(chain.answers, ['CNAME web.example.com.', 'CNAME www.example.com.', 'A 192.0.2.20']);
    const names = async () =>
      (
        JSON.parse(await ok(['fqdn', 'cache', 'list', '-o', 'json'], LAB)) as {
          items: { name: string; ip: string }[];
        }
      ).items
        .filter((e) => e.ip === '192.0.2.20')
        .map((e) => e.name)
        .sort();
    // The rule names the queried alias, then the end of the chain: a lookup of the alias opens both.
    for (const name of ['front.example.com', 'www.example.com']) {
      await writeFile(file('cname.yaml'), cnamePolicy(name));
      await ok(['apply', '-f', file('cname.yaml')], LAB);
      await ok(['fqdn', 'cache', 'clean'], LAB);
      assert.equal((await curl('app/client', 'http://192.0.2.20/', 1)).ok, false, `${name}: not learned yet`);
      const r = await curl('app/client', 'http://front.example.com/');
      assert.equal(r.body.trim(), 'ext:www', `toFQDNs ${name}, lookup of front.example.com`);
      assert.deepEqual(await names(), ['front.example.com', 'web.example.com', 'www.example.com']);
    }
    // The flow names the chain (Hubble's cnames).
    const flows = (
      await ok(['observe', '--type', 'l7', '--dns-query', '^front\\.', '-o', 'json', '--last', '20'], LAB)
    )
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { l7: { type: string; dns?: { cnames: string[]; ips: string[] } } });
    const answer = flows.find((f) => f.l7.type === 'RESPONSE' && (f.l7.dns?.ips.length ?? 0) > 0);
    assert.deepEqual(answer?.l7.dns?.cnames, ['web.example.com.', 'www.example.com.']);
    await ok(['delete', '-f', file('cname.yaml')], LAB);
  });
});
