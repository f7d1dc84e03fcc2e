// Conformance across nodes: `weir conformance run --nodes 3` puts each topology's pods round-robin
// over three nodes (etcd, an agent per node, VXLAN between them), so most probes cross a node and
// the receiving node judges them with the identity carried in the tunnel. A representative subset of
// the NetworkPolicy and CiliumNetworkPolicy cases (selectors, namespaces, named ports, egress,
// ipBlock of pod addresses, UDP, entities host/world/cluster, CIDR rules, L4-only, deny) must give
// the verdicts the single-node model expects, probe by probe.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { conformanceDir } from '../../src/shared/paths.js';
import { weir } from '../support/cli.js';

const subsets = {
  netpol: [
    '001-default-deny-ingress.json',
    '003-allow-from-same-ns-podselector.json',
    '006-allow-only-from-other-namespace-nsselector.json',
    '018-named-port-ingress.json',
    '030-deny-egress-podselector.json',
    '042-egress-ipblock-pod-ip.json',
    '054-udp-ports.json',
  ],
  cnp: [
    '002-cnp-ingress-fromendpoints-matchlabels.json',
    '012-ccnp-endpointselector-all-namespaces.json',
    '020-fromentities-world.json',
    '022-fromentities-cluster.json',
    '024-toentities-host.json',
    '028-tocidr-and-tocidrset-except.json',
    '029-fromcidr.json',
    '032-l4-only-egress-port.json',
    '040-egressdeny-overrides-egress-allow.json',
  ],
};

interface Report {
  cases: {
    id: string;
    pass: boolean | null;
    error?: string;
    results: {
      from: string;
      to: string;
      allowed: boolean | null;
      expected?: boolean | null;
      loopback?: boolean;
    }[];
  }[];
}

describe('conformance over three nodes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-conf-nodes-'));
    for (const [suite, files] of Object.entries(subsets)) {
      mkdirSync(join(dir, suite, 'cases'), { recursive: true });
      copyFileSync(join(conformanceDir, suite, 'topology.json'), join(dir, suite, 'topology.json'));
      for (const f of files)
        copyFileSync(join(conformanceDir, suite, 'cases', f), join(dir, suite, 'cases', f));
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const [suite, files] of Object.entries(subsets))
    it(`${suite}: ${files.length} cases give the single-node verdicts with pods on three nodes`, async (t) => {
      const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>(
        (resolve) =>
          execFile(
            weir,
            ['conformance', 'run', '--cases', join(dir, suite, 'cases'), '--nodes', '3', '-o', 'json'],
            { timeout: 900_000, maxBuffer: 64 << 20 },
            (err, out, errOut) =>
              resolve({
                code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
                stdout: out,
                stderr: errOut,
              }),
          ),
      );
      assert.match(stderr, /up with 3 nodes and their agents: 9 pods/, 'each lab has three nodes');
      const report = JSON.parse(stdout) as Report;
      assert.equal(report.cases.length, files.length);
      let probes = 0;
      for (const c of report.cases) {
        assert.equal(c.pass, true, `${suite} ${c.id}: ${c.error ?? ''}`);
        for (const r of c.results)
          if (r.expected !== undefined && r.expected !== null && !r.loopback) {
            assert.equal(r.allowed, r.expected, `${suite} ${c.id}: ${r.from} -> ${r.to}`);
            probes++;
          }
      }
      assert.equal(code, 0, stderr.slice(-2000));
      t.diagnostic(`${suite}: ${report.cases.length} cases, ${probes} judged probes, all as on one node`);
    });
});
