// Where a lab's agent keeps its socket, Store, log and pins.
import { join } from 'node:path';
import { pinRoot, runDir } from '../shared/paths.js';

export const agentDir = (lab: string) => join(runDir, 'labs', lab, 'agent');
export const agentSocket = (lab: string) => join(agentDir(lab), 'agent.sock');
/** The node's Store (the file backend): root-only, in the agent's 0700 directory. */
export const agentStoreFile = (lab: string) => join(agentDir(lab), 'store.json');
export const agentPidFile = (lab: string) => join(agentDir(lab), 'agent.pid');
export const agentLogFile = (lab: string) => join(runDir, 'labs', lab, 'logs', 'agent.log');
export const nodePinDir = (lab: string, node: string) => join(pinRoot, lab, node);
