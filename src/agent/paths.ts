// Where a lab's agents keep their socket, Store, log and pins. The first node's agent uses the
// lab's `agent` directory (a lab of one node: the only agent); node <n> of a lab of several
// nodes uses `agent-<n>`. `node` undefined: the first node.
import { join } from 'node:path';
import { pinRoot, runDir } from '../shared/paths.js';

export const agentDir = (lab: string, node?: string) =>
  join(runDir, 'labs', lab, node ? `agent-${node}` : 'agent');
export const agentSocket = (lab: string, node?: string) => join(agentDir(lab, node), 'agent.sock');
/** The node's Store (the file backend): root-only, in the agent's 0700 directory. */
export const agentStoreFile = (lab: string) => join(agentDir(lab), 'store.json');
export const agentPidFile = (lab: string, node?: string) => join(agentDir(lab, node), 'agent.pid');
export const agentLogFile = (lab: string, node?: string) =>
  join(runDir, 'labs', lab, 'logs', node ? `agent-${node}.log` : 'agent.log');
export const nodePinDir = (lab: string, node: string) => join(pinRoot, lab, node);
