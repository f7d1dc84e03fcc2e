// The CNI specification as weir-cni speaks it (containernetworking/cni, SPEC.md of spec-v1.1.0):
// the environment a runtime passes, the network configuration on stdin, the result and error
// shapes on stdout. Pure: no I/O here (commands.ts runs them against the agent).

/** Versions whose configurations weir-cni accepts; results are written in the configuration's. */
export const supportedVersions = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof supportedVersions)[number];
export const latestVersion: CniVersion = '1.1.0';

export const commands = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type CniCommand = (typeof commands)[number];

/** The spec's well-known error codes (0-99 are the spec's; 100+ the plugin's own). */
export const CniCode = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADDs (the agent is down or not ready). */
  notAvailable: 50,
  notAvailableLimited: 51,
  /** weir's: the node could not create the endpoint (its message says why). */
  attachFailed: 100,
  /** weir's: CHECK found the attachment not as its result said. */
  checkFailed: 101,
  /** weir's: the agent refused the request for another reason (details: the weir error code). */
  agentError: 102,
} as const;

/** An error as the spec writes it on stdout: {"cniVersion","code","msg","details"}. */
export class CniError extends Error {
  constructor(
    readonly code: number,
    readonly msg: string,
    readonly details?: string,
  ) {
    super(details ? `${msg}: ${details}` : msg);
  }

  toJSON(cniVersion: string) {
    return { cniVersion, code: this.code, msg: this.msg, ...(this.details ? { details: this.details } : {}) };
  }
}

/** The CNI_* environment of one invocation. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS, parsed. */
  args: Map<string, string>;
  path: string[];
}

const required: Record<CniCommand, ('CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME')[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  STATUS: [],
  GC: [],
  VERSION: [],
};

/** CNI_ARGS keys weir-cni understands; others are an error unless IgnoreUnknown is set. */
const knownArgs = new Set([
  'IgnoreUnknown',
  'K8S_POD_NAMESPACE',
  'K8S_POD_NAME',
  'K8S_POD_INFRA_CONTAINER_ID',
  'K8S_POD_UID',
]);

export function parseArgs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(';')) {
    if (part === '') continue;
    const i = part.indexOf('=');
    if (i <= 0)
      throw new CniError(CniCode.invalidEnvironment, 'invalid CNI_ARGS', `'${part}' is not KEY=VALUE`);
    out.set(part.slice(0, i), part.slice(i + 1));
  }
  const ignore = /^(1|true)$/i.test(out.get('IgnoreUnknown') ?? '');
  for (const k of out.keys())
    if (!knownArgs.has(k) && !ignore)
      throw new CniError(
        CniCode.invalidEnvironment,
        'invalid CNI_ARGS',
        `unknown argument ${k} (without IgnoreUnknown=1)`,
      );
  return out;
}

export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (!(commands as readonly string[]).includes(command))
    throw new CniError(
      CniCode.invalidEnvironment,
      'invalid CNI_COMMAND',
      `'${command}' is not one of ${commands.join(', ')}`,
    );
  const cmd = command as CniCommand;
  for (const name of required[cmd])
    if (!env[name]) throw new CniError(CniCode.invalidEnvironment, `${name} is required for ${cmd}`);
  const ifname = env.CNI_IFNAME ?? '';
  if (
    ifname &&
    (Buffer.byteLength(ifname) > 15 || /[/\s:]/.test(ifname) || ifname === '.' || ifname === '..')
  )
    throw new CniError(
      CniCode.invalidEnvironment,
      'invalid CNI_IFNAME',
      `'${ifname}' is not an interface name`,
    );
  return {
    command: cmd,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname,
    args: parseArgs(env.CNI_ARGS ?? ''),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
}

/** weir-cni's network configuration (one plugin of a conflist, as the runtime hands it over). */
export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** The node agent's API socket (weir cni install writes it); default: the default lab's. */
  agentSocket?: string;
  /** How long an ADD waits for the agent (ms; default 60000). */
  timeoutMs?: number;
  prevResult?: CniResult;
  /** GC: the attachments the runtime still has (both spellings of the spec). */
  validAttachments?: { containerID: string; ifname: string }[];
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

/** The version of a stdin (for error output before the whole config is valid). */
export function versionOf(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v ? v : latestVersion;
  } catch {
    return latestVersion;
  }
}

export function parseConf(stdin: string, command: CniCommand): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(
      CniCode.decodeFailure,
      'failed to decode the network configuration',
      (err as Error).message,
    );
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw))
    throw new CniError(
      CniCode.decodeFailure,
      'failed to decode the network configuration',
      'not a JSON object',
    );
  const o = raw as Record<string, unknown>;
  const version = o.cniVersion;
  if (typeof version !== 'string' || !/^\d+\.\d+\.\d+$/.test(version))
    throw new CniError(
      CniCode.invalidConfig,
      'invalid network configuration',
      'cniVersion must be a version like 1.1.0',
    );
  if (!(supportedVersions as readonly string[]).includes(version))
    throw new CniError(
      CniCode.incompatibleVersion,
      'incompatible CNI version',
      `weir-cni supports ${supportedVersions.join(', ')}, not ${version}`,
    );
  if ((command === 'STATUS' || command === 'GC') && compareVersions(version, '1.1.0') < 0)
    throw new CniError(
      CniCode.incompatibleVersion,
      'incompatible CNI version',
      `${command} needs a configuration of version 1.1.0 or later, not ${version}`,
    );
  if (typeof o.name !== 'string' || o.name === '')
    throw new CniError(
      CniCode.invalidConfig,
      'invalid network configuration',
      'name must be a non-empty string',
    );
  if (typeof o.type !== 'string' || o.type === '')
    throw new CniError(
      CniCode.invalidConfig,
      'invalid network configuration',
      'type must be a non-empty string',
    );
  if (o.agentSocket !== undefined && (typeof o.agentSocket !== 'string' || !o.agentSocket.startsWith('/')))
    throw new CniError(
      CniCode.invalidConfig,
      'invalid network configuration',
      'agentSocket must be an absolute path',
    );
  if (o.timeoutMs !== undefined && (typeof o.timeoutMs !== 'number' || !(o.timeoutMs > 0)))
    throw new CniError(
      CniCode.invalidConfig,
      'invalid network configuration',
      'timeoutMs must be a positive number',
    );
  const conf: NetConf = {
    cniVersion: version as CniVersion,
    name: o.name,
    type: o.type,
    ...(typeof o.agentSocket === 'string' ? { agentSocket: o.agentSocket } : {}),
    ...(typeof o.timeoutMs === 'number' ? { timeoutMs: o.timeoutMs } : {}),
  };
  if (o.prevResult !== undefined) {
    if (!o.prevResult || typeof o.prevResult !== 'object')
      throw new CniError(
        CniCode.invalidConfig,
        'invalid network configuration',
        'prevResult must be an object',
      );
    conf.prevResult = o.prevResult as CniResult;
  }
  if (command === 'CHECK' && !conf.prevResult)
    throw new CniError(CniCode.invalidConfig, 'invalid network configuration', 'CHECK needs prevResult');
  const valid = o['cni.dev/valid-attachments'] ?? o['cni.dev/attachments'];
  if (command === 'GC') {
    if (valid !== undefined && !Array.isArray(valid))
      throw new CniError(
        CniCode.invalidConfig,
        'invalid network configuration',
        'cni.dev/valid-attachments must be a list of {containerID, ifname}',
      );
    conf.validAttachments = ((valid as unknown[] | undefined) ?? []).map((a, i) => {
      const x = a as { containerID?: unknown; ifname?: unknown };
      if (!x || typeof x.containerID !== 'string')
        throw new CniError(
          CniCode.invalidConfig,
          'invalid network configuration',
          `cni.dev/valid-attachments[${i}].containerID must be a string`,
        );
      return { containerID: x.containerID, ifname: typeof x.ifname === 'string' ? x.ifname : '' };
    });
  }
  return conf;
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}
export interface CniIp {
  address: string;
  gateway?: string;
  interface?: number;
  /** 0.4.0 only: "4" or "6". */
  version?: '4' | '6';
}
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIp[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

/** What the agent attached, in the shape of a result of `version`. */
export function buildResult(
  version: CniVersion,
  a: { ifname: string; mac: string; ip: string; ip6?: string; gateway: string; sandbox: string },
): CniResult {
  const v04 = version === '0.4.0';
  const ips: CniIp[] = [
    { ...(v04 ? { version: '4' as const } : {}), address: `${a.ip}/32`, gateway: a.gateway, interface: 0 },
    ...(a.ip6
      ? [
          {
            ...(v04 ? { version: '6' as const } : {}),
            address: `${a.ip6}/128`,
            gateway: 'fe80::1',
            interface: 0,
          },
        ]
      : []),
  ];
  return {
    cniVersion: version,
    interfaces: [{ name: a.ifname, ...(a.mac ? { mac: a.mac } : {}), sandbox: a.sandbox }],
    ips,
    routes: [{ dst: '0.0.0.0/0', gw: a.gateway }, ...(a.ip6 ? [{ dst: '::/0', gw: 'fe80::1' }] : [])],
    dns: {},
  };
}

/** The addresses (without prefix length) a previous result gave the container. */
export function resultAddresses(r: CniResult | undefined): string[] {
  return (r?.ips ?? []).map((ip) => String(ip.address).replace(/\/\d+$/, ''));
}
