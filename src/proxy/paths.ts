// Where a lab's node proxy keeps its admin socket, pid file and log (beside the agent's).
import { join } from 'node:path';
import { runDir } from '../shared/paths.js';

export const proxyDir = (lab: string) => join(runDir, 'labs', lab, 'proxy');
/** The admin API (root-only unix socket): snapshots in, status, metrics and L7 records out. */
export const proxySocket = (lab: string) => join(proxyDir(lab), 'proxy.sock');
export const proxyPidFile = (lab: string) => join(proxyDir(lab), 'proxy.pid');
export const proxyLogFile = (lab: string) => join(runDir, 'labs', lab, 'logs', 'proxy.log');
/** What the process calls itself (ps, /proc/<pid>/comm shows its first 15 characters). */
export const proxyTitle = (lab: string) => `weir-proxy ${lab}`;
