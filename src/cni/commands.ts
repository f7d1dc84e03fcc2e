// weir-cni's commands: each turns one runtime invocation (environment + stdin) into calls to the
// node agent's API and one answer on stdout, as the CNI spec says — a result (ADD), nothing (DEL,
// CHECK, STATUS, GC: exit 0), the supported versions (VERSION), or an error object and a non-zero
// exit. The agent does the work (IPAM, veth, endpoint, identity, policy); the plugin holds the
// container's netns open while the ADD waits, so the agent can enter it by /proc/<pid>/fd/<n>
// whatever mount namespace the runtime put its bind mount in.
import { closeSync, openSync } from 'node:fs';
import { AgentClient } from '../agent/client.js';
import { agentSocket } from '../agent/paths.js';
import type { CniAddAnswer } from '../agent/cni.js';
import { WeirError } from '../shared/errors.js';
import {
  buildResult,
  CniCode,
  CniError,
  latestVersion,
  parseConf,
  parseEnv,
  resultAddresses,
  supportedVersions,
  versionOf,
  type CniEnv,
  type NetConf,
} from './spec.js';

/** The default lab's agent socket (what `weir cni install` writes unless told another lab). */
export const defaultAgentSocket = () => agentSocket(process.env.WEIR_LAB || 'lab');

export interface CniOutcome {
  /** What goes to stdout (JSON), or '' for nothing. */
  stdout: string;
  exitCode: number;
}

/** The agent's error → the spec's error: codes the runtime can act on, the weir code in details. */
function fromAgent(err: unknown, what: string): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof WeirError) {
    const details = `${err.code}: ${err.message}`;
    switch (err.code) {
      case 'ERR_AGENT_UNREACHABLE':
      case 'ERR_AGENT_TIMEOUT':
        return new CniError(CniCode.tryAgainLater, `the weir agent is not reachable (${what})`, details);
      case 'ERR_CNI_REQUEST':
      case 'ERR_CNI_NETNS':
        return new CniError(CniCode.invalidEnvironment, `the weir agent refused the ${what}`, details);
      case 'ERR_CNI_NOT_FOUND':
        return new CniError(CniCode.checkFailed, `the container's attachment is not as expected`, details);
      case 'ERR_CNI_ATTACHMENT_FAILED':
        return new CniError(CniCode.attachFailed, 'the node could not attach the container', details);
      default:
        return new CniError(CniCode.agentError, `the weir agent refused the ${what}`, details);
    }
  }
  return new CniError(CniCode.ioFailure, `weir-cni failed (${what})`, (err as Error)?.message ?? String(err));
}

function podOf(env: CniEnv): { namespace: string; name: string } {
  const name = env.args.get('K8S_POD_NAME');
  if (!name)
    throw new CniError(
      CniCode.invalidEnvironment,
      'K8S_POD_NAME is required in CNI_ARGS',
      'weir-cni names the endpoint after the pod (podman passes the container name)',
    );
  return { namespace: env.args.get('K8S_POD_NAMESPACE') || 'default', name };
}

function client(conf: NetConf, timeoutMs = 60_000): AgentClient {
  return new AgentClient(conf.agentSocket ?? defaultAgentSocket(), conf.timeoutMs ?? timeoutMs);
}

async function add(env: CniEnv, conf: NetConf): Promise<string> {
  const pod = podOf(env);
  let fd: number;
  try {
    fd = openSync(env.netns, 'r');
  } catch (err) {
    throw new CniError(
      CniCode.invalidEnvironment,
      `CNI_NETNS ${env.netns} cannot be opened`,
      (err as Error).message,
    );
  }
  try {
    const a = await client(conf)
      .call<CniAddAnswer>('POST', '/v1/cni/add', {
        ...pod,
        containerId: env.containerId,
        ifname: env.ifname,
        netns: env.netns,
        netnsPath: `/proc/${process.pid}/fd/${fd}`,
      })
      .catch((err: unknown) => {
        throw fromAgent(err, 'ADD');
      });
    return JSON.stringify(buildResult(conf.cniVersion, { ...a, sandbox: env.netns }));
  } finally {
    closeSync(fd);
  }
}

async function del(env: CniEnv, conf: NetConf): Promise<void> {
  const pod = podOf(env);
  await client(conf)
    .call('POST', '/v1/cni/del', { ...pod, containerId: env.containerId, ifname: env.ifname })
    .catch((err: unknown) => {
      throw fromAgent(err, 'DEL');
    });
}

async function check(env: CniEnv, conf: NetConf): Promise<void> {
  const pod = podOf(env);
  let fd: number | undefined;
  try {
    fd = openSync(env.netns, 'r');
  } catch (err) {
    throw new CniError(
      CniCode.invalidEnvironment,
      `CNI_NETNS ${env.netns} cannot be opened`,
      (err as Error).message,
    );
  }
  try {
    await client(conf)
      .call('POST', '/v1/cni/check', {
        ...pod,
        containerId: env.containerId,
        ifname: env.ifname,
        netnsPath: `/proc/${process.pid}/fd/${fd}`,
        ips: resultAddresses(conf.prevResult),
      })
      .catch((err: unknown) => {
        throw fromAgent(err, 'CHECK');
      });
  } finally {
    closeSync(fd);
  }
}

async function status(conf: NetConf): Promise<void> {
  let r: { ready: boolean; message?: string };
  try {
    r = await client(conf, 10_000).call('GET', '/v1/cni/status');
  } catch (err) {
    const e = fromAgent(err, 'STATUS');
    throw new CniError(CniCode.notAvailable, 'the weir agent is not available', e.details ?? e.msg);
  }
  if (!r.ready) throw new CniError(CniCode.notAvailable, 'the weir agent is not ready', r.message);
}

async function gc(conf: NetConf): Promise<void> {
  await client(conf)
    .call('POST', '/v1/cni/gc', { valid: (conf.validAttachments ?? []).map((a) => a.containerID) })
    .catch((err: unknown) => {
      throw fromAgent(err, 'GC');
    });
}

/** Runs one invocation; never throws (errors become the spec's error output). */
export async function runCni(environment: NodeJS.ProcessEnv, stdin: string): Promise<CniOutcome> {
  let version = versionOf(stdin);
  try {
    const env = parseEnv(environment);
    if (env.command === 'VERSION') {
      // The request's version, when it is one of ours (the spec: VERSION needs no full config).
      const asked = versionOf(stdin);
      version = (supportedVersions as readonly string[]).includes(asked) ? asked : latestVersion;
      return {
        stdout: JSON.stringify({ cniVersion: version, supportedVersions: [...supportedVersions] }),
        exitCode: 0,
      };
    }
    const conf = parseConf(stdin, env.command);
    version = conf.cniVersion;
    switch (env.command) {
      case 'ADD':
        return { stdout: await add(env, conf), exitCode: 0 };
      case 'DEL':
        await del(env, conf);
        break;
      case 'CHECK':
        await check(env, conf);
        break;
      case 'STATUS':
        await status(conf);
        break;
      case 'GC':
        await gc(conf);
        break;
    }
    return { stdout: '', exitCode: 0 };
  } catch (err) {
    const e = err instanceof CniError ? err : fromAgent(err, 'request');
    return { stdout: JSON.stringify(e.toJSON(version)), exitCode: 1 };
  }
}
