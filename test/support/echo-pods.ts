// The conformance echo server (src/gateway/echo.ts) started in lab pods, for the Gateway tests,
// and their lab of one node serving it from its pods behind Gateway `edge`.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../src/agent/spawn.js';
import { echoServerScript } from '../../src/gateway/echo.js';
import { Lab } from '../../src/lab/index.js';
import { cli, ok } from './cli.js';
import { hostRoutingAgent } from './host-routing.js';
import { startInPod } from './lines.js';

/**
 * Runs the echo server on `port` in each pod `namespace/name` of the lab and waits until each
 * says "ready" (15 s each). The processes are returned to be killed by the caller.
 */
export async function startEchoPods(
  lab: string,
  namespace: string,
  pods: string[],
  port = 3000,
): Promise<ChildProcessWithoutNullStreams[]> {
  const servers: ChildProcessWithoutNullStreams[] = [];
  for (const pod of pods) {
    try {
      servers.push(
        await startInPod(
          lab,
          `${namespace}/${pod}`,
          [process.execPath, '-e', echoServerScript, String(port), namespace, pod],
          'echo server',
        ),
      );
    } catch (e) {
      for (const x of servers) x.kill('SIGKILL');
      throw e;
    }
  }
  return servers;
}

/**
 * A lab of one node from `labSpec` (`weir lab up -f`) whose agent runs with the suite's host
 * routing, with `objects` applied and the echo server in pods `pods` of namespace `ns`: up() brings
 * it up (removing one left over) and reads the address of the Gateway `ns/edge`; down() stops the
 * echo servers and removes the lab.
 */
export class GatewayLab {
  dir = '';
  /** The address of Gateway `edge`. */
  address = '';
  private readonly servers: ChildProcessWithoutNullStreams[] = [];

  constructor(
    readonly name: string,
    private readonly o: { labSpec: string; objects: string; ns: string; pods: string[] },
  ) {}

  up = async (): Promise<void> => {
    const lab = this.name;
    this.dir = await mkdtemp(join(tmpdir(), `weir-${lab}-`));
    await writeFile(join(this.dir, 'lab.yaml'), this.o.labSpec);
    await writeFile(join(this.dir, 'objects.yaml'), this.o.objects);
    await cli(['lab', 'down'], lab);
    await ok(['lab', 'up', '-f', join(this.dir, 'lab.yaml'), '--no-agent'], lab);
    const node = await (await Lab.open(lab)).node();
    await startAgent({ ...hostRoutingAgent(), lab, nodeNetns: node.netns });
    await ok(['apply', '-f', join(this.dir, 'objects.yaml')], lab);
    this.servers.push(...(await startEchoPods(lab, this.o.ns, this.o.pods)));
    const gw = JSON.parse(await ok(['get', 'gateways', 'edge', '-n', this.o.ns, '-o', 'json'], lab)) as {
      status: { addresses: { value: string }[] };
    };
    this.address = gw.status.addresses[0]?.value ?? '';
  };

  down = async (): Promise<void> => {
    for (const s of this.servers) s.kill('SIGKILL');
    await cli(['lab', 'down'], this.name);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  };
}
