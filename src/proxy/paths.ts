// Where a lab node's proxy keeps its admin socket, pid file and log (beside the node's agent's).
// As the agents (src/agent/paths.ts): the first node's proxy uses the lab's `proxy` directory and
// logs (a lab of one node: the only proxy); node <n> of a lab of several nodes uses `proxy-<n>`.
// `node` undefined: the first node.
import { join } from 'node:path';
import { runDir } from '../shared/paths.js';

const logDir = (lab: string) => join(runDir, 'labs', lab, 'logs');

export const proxyDir = (lab: string, node?: string) =>
  join(runDir, 'labs', lab, node ? `proxy-${node}` : 'proxy');
/** The admin API (root-only unix socket): snapshots in, status, metrics and L7 records out. */
export const proxySocket = (lab: string, node?: string) => join(proxyDir(lab, node), 'proxy.sock');
export const proxyPidFile = (lab: string, node?: string) => join(proxyDir(lab, node), 'proxy.pid');
export const proxyLogFile = (lab: string, node?: string) =>
  join(logDir(lab), node ? `proxy-${node}.log` : 'proxy.log');
/** One JSON line per request the proxy handled (access-log.ts), rotated to .1, .2 by size. */
export const proxyAccessLogFile = (lab: string, node?: string) =>
  join(logDir(lab), node ? `proxy-access-${node}.log` : 'proxy-access.log');
/** What the process calls itself (ps, /proc/<pid>/comm shows its first 15 characters). */
export const proxyTitle = (lab: string, node?: string) =>
  node ? `weir-proxy ${lab} ${node}` : `weir-proxy ${lab}`;
