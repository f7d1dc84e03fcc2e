// `weir lab ...`: bring the one-machine lab up and down, run commands and probes inside it.
import { spawn } from 'node:child_process';
import { Command, Option } from 'commander';
import { WeirError } from '../../shared/errors.js';
import {
  Lab,
  defaultLabName,
  labDownAll,
  listLabs,
  loadLabSpec,
  nodesOf,
  routingOf,
  parseLabSpec,
  readConfig,
  withNodeCount,
  maxNodes,
  probe,
  resolveTarget,
} from '../../lab/index.js';
import { parseOutput, printResult, type OutputFormat } from '../output.js';
import { agentClient } from '../../agent/client.js';
import { startAgent, stopAgent } from '../../agent/spawn.js';
import type { PodInfo } from '../../cluster/objects.js';
import { stopProxies } from '../../agent/proxy-manager.js';
import { addSettingOptions, givenSettings } from './agent.js';
import { checkEncryptionRouting } from '../../agent/settings.js';
import { clusterDnsObjects } from '../../dns/addon.js';

export const progress = (line: string) => process.stderr.write(`${line}\n`);

export function labOption(): Option {
  return new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName());
}

/** -o: table (default), json or yaml; `wide` where a command has wider columns (else the table). */
export function outputOption(opts: { wide?: boolean } = {}): Option {
  return new Option('-o, --output <format>', opts.wide ? 'table, wide, json or yaml' : 'table, json or yaml')
    .default('table')
    .argParser(parseOutput);
}

export function labCommand(): Command {
  const lab = new Command('lab').description(
    'the one-machine lab: a node, its pods and externals as network namespaces',
  );

  const up = lab
    .command('up')
    .description('create the lab (or complete it; running it twice is fine)')
    .option('-f, --file <lab.yaml>', 'lab spec (default: one node, 10.244.0.0/24, no externals)')
    .addOption(new Option('--lab <name>', 'lab name (default: the spec name, else env WEIR_LAB or lab)'))
    .option(
      '--nodes <n>',
      `nodes node1..node<n> (1..${maxNodes}; node k gets 10.244.<k-1>.0/24); more than one: an underlay and etcd`,
    )
    .option(
      '--kvstore-endpoints <urls>',
      "an existing etcd (comma-separated client URLs reachable from the nodes' namespaces) instead of the lab's own",
    )
    .addOption(
      new Option(
        '--routing <mode>',
        "between nodes: tunnel (VXLAN, the sender's identity in the VNI; the default) or native (routes on the underlay)",
      ).choices(['tunnel', 'native']),
    )
    .option('--no-agent', 'do not start the agent (no datapath: traffic is not enforced)')
    .option(
      '--no-cluster-dns',
      'do not run the cluster DNS (pod kube-system/coredns behind the Service kube-system/kube-dns)',
    );
  // Every `weir agent run` setting, handed to the agent it starts.
  addSettingOptions(up).action(
    async (
      o: {
        file?: string;
        lab?: string;
        agent?: boolean;
        clusterDns?: boolean;
        nodes?: string;
        kvstoreEndpoints?: string;
        routing?: 'tunnel' | 'native';
      } & Record<string, unknown>,
    ) => {
      let spec = o.file ? await loadLabSpec(o.file) : parseLabSpec({});
      if (o.nodes !== undefined) spec = withNodeCount(spec, Number(o.nodes));
      if (o.routing) spec = { ...spec, routing: o.routing };
      // Refused before anything is made (the agents check it again at start).
      checkEncryptionRouting(givenSettings(o).encryption, spec.routing);
      const name = o.lab ?? (o.file ? spec.name : defaultLabName());
      const lab = await Lab.open(name);
      const kvstoreEndpoints = o.kvstoreEndpoints?.split(',').map((u) => u.trim());
      const before = await lab.config().catch(() => undefined);
      const cfg = await lab.up(
        { ...spec, name },
        { log: progress, ...(kvstoreEndpoints ? { kvstoreEndpoints } : {}) },
      );
      // Agents of another Store or routing (a lab grown to several nodes, --routing changed) stop
      // first: each starts again below on what the lab is now.
      const shape = (c: typeof cfg | undefined) =>
        JSON.stringify({ kvstore: c?.kvstore, routing: c && routingOf(c) });
      if (before && shape(before) !== shape(cfg))
        await Promise.all(
          before.spec.nodes.map((n, i) => stopAgent(name, 5000, i === 0 ? undefined : n.name)),
        );
      if (o.agent === false) return;
      // Each node's agent opens the Store (the lab's etcd for several nodes) and puts what it
      // holds for its node in force (pods included).
      const nodes = nodesOf(cfg);
      const pids = [];
      for (const [i, n] of nodes.entries())
        pids.push(
          await startAgent({
            lab: name,
            ...(i > 0 ? { node: n.name } : {}),
            nodeNetns: n.netns,
            settings: givenSettings(o),
          }),
        );
      const pid = pids.join(', ');
      // The cluster DNS add-on, through the API like any other object (kept as is when present).
      if (o.clusterDns !== false)
        await agentClient(name).call('POST', '/v1/apply', { objects: clusterDnsObjects() });
      const pods = (await agentClient(name).call<{ items: PodInfo[] }>('GET', '/v1/pods')).items;
      progress(
        `${nodes.length > 1 ? `${nodes.length} agents` : 'agent'} running (pid ${pid}), ${pods.length} pod(s)`,
      );
    },
  );

  lab
    .command('down')
    .description('remove the lab: netns, veths, cgroups, pins, processes and state')
    .addOption(labOption())
    .option('--all', 'remove every lab and every leftover weir netns, cgroup and pin')
    .action(async (o: { lab: string; all?: boolean }) => {
      // The agents first, gracefully: they close their maps; the pins go with the lab. Then every
      // node's proxy (those a crashed run left too), which outlive agent restarts but not the lab.
      const labs = o.all ? await listLabs() : [o.lab];
      await Promise.all(
        labs.map(async (l) => {
          const cfg = await readConfig(l).catch(() => undefined);
          const others = (cfg?.spec.nodes ?? []).slice(1).map((n) => n.name);
          await Promise.all([stopAgent(l), ...others.map((n) => stopAgent(l, 5000, n))]);
        }),
      );
      await Promise.all(labs.map((l) => stopProxies(l)));
      if (o.all) await labDownAll({ log: progress });
      else await (await Lab.open(o.lab)).down({ log: progress });
    });

  lab
    .command('status')
    .description('whether the lab is up, its node, externals and pod counts')
    .addOption(labOption())
    .addOption(outputOption())
    .action(async (o: { lab: string; output: OutputFormat }) => {
      const s = await (await Lab.open(o.lab)).status();
      // Pods are what the node's agent runs: asked through its API.
      const pods = s.up
        ? await agentClient(o.lab, 2000)
            .call<{ items: PodInfo[] }>('GET', '/v1/pods')
            .then((a) => a.items)
            .catch(() => undefined)
        : [];
      const nss = new Set((pods ?? []).map((p) => p.namespace));
      const rows = [
        { k: 'lab', v: s.name },
        { k: 'up', v: String(s.up) },
        ...(s.nodes ?? [s.node]).map((n) => ({
          k: s.nodes ? `node ${n?.name ?? ''}` : 'node',
          v: n
            ? `${n.name} ${n.ip}${n.ip6 ? ` ${n.ip6}` : ''}${n.underlayIP ? ` underlay ${n.underlayIP}` : ''} (${n.netns})${n.ready ? '' : ' workload down'}`
            : '-',
        })),
        ...s.externals.map((e) => ({
          k: `external ${e.name}`,
          v: `${e.ip} (${e.netns})${e.ready ? '' : ' workload down'}`,
        })),
        { k: 'namespaces with pods', v: pods ? String(nss.size) : 'unknown (no agent)' },
        {
          k: 'pods',
          v: pods ? `${pods.filter((p) => p.ready).length}/${pods.length} ready` : 'unknown (no agent)',
        },
        { k: 'state', v: s.stateDir },
      ];
      printResult(
        o.output,
        { ...s, pods: pods?.length, podsReady: pods?.filter((p) => p.ready).length },
        rows,
        [
          { header: 'field', get: (r) => r.k },
          { header: 'value', get: (r) => r.v },
        ],
      );
    });

  lab
    .command('exec')
    .description("run a command inside a pod ('ns/pod'), the node ('node') or an external ('ext:<name>')")
    .argument('<target>', "'ns/pod', 'node' or 'ext:<name>'")
    .argument('<command...>', 'command and arguments (after --)')
    .addOption(labOption())
    .action(async (target: string, cmd: string[], o: { lab: string }) => {
      const [bin, ...args] = await (await Lab.open(o.lab)).execArgv(target, cmd);
      const child = spawn(bin as string, args, { stdio: 'inherit' });
      const code = await new Promise<number>((resolve) => {
        child.on('error', () => resolve(127));
        child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
      });
      process.exit(code);
    });

  lab
    .command('probe')
    .description('connect from one workload to an address, from inside the lab (exit 1 if it fails)')
    .requiredOption('--from <source>', "'ns/pod', 'node' or 'ext:<name>'")
    .requiredOption('--to <target>', "'ns/pod', 'node', 'ext:<name>' or an IP")
    .requiredOption('--port <port/proto>', 'e.g. 80/TCP or 53/UDP')
    .option('--timeout <ms>', 'give up after this many ms', '1000')
    .option('--http', 'TCP: send GET / and show the answer')
    .addOption(labOption())
    .addOption(outputOption())
    .action(
      async (o: {
        from: string;
        to: string;
        port: string;
        timeout: string;
        http?: boolean;
        lab: string;
        output: OutputFormat;
      }) => {
        const m = /^(\d+)(?:\/(TCP|UDP))?$/i.exec(o.port);
        const port = Number(m?.[1]);
        if (!m || port < 1 || port > 65535)
          throw new WeirError('ERR_CLI_ARGUMENT', `--port '${o.port}' must be PORT or PORT/TCP|UDP`, {
            location: { field: '--port' },
          });
        const protocol = (m[2] ?? 'TCP').toUpperCase() as 'TCP' | 'UDP';
        const l = await Lab.open(o.lab);
        const ip = await resolveTarget(l, o.to);
        const r = await probe(l, o.from, { ip, port, protocol }, Number(o.timeout), {
          http: o.http === true,
        });
        const data = { from: o.from, to: o.to, ip, port, protocol, ...r };
        printResult(
          o.output,
          data,
          [data],
          [
            { header: 'from', get: (d) => d.from },
            { header: 'to', get: (d) => `${d.to === d.ip ? d.ip : `${d.to} (${d.ip})`}` },
            { header: 'port', get: (d) => `${d.port}/${d.protocol}` },
            { header: 'result', get: (d) => (d.ok ? 'ok' : d.error) },
            { header: 'ms', get: (d) => d.ms },
            ...(o.http ? [{ header: 'body', get: (d: typeof data) => d.body?.trim() }] : []),
          ],
        );
        if (!r.ok)
          throw new WeirError(
            'ERR_LAB_PROBE_FAILED',
            `${o.from} -> ${ip}:${port}/${protocol}: ${r.error ?? 'failed'}`,
          );
      },
    );

  return lab;
}
