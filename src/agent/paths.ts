// Where a lab's agent keeps its socket, state, log and pins.
import { join } from 'node:path';
import { pinRoot, runDir } from '../shared/paths.js';

export const agentDir = (lab: string) => join(runDir, 'labs', lab, 'agent');
export const agentSocket = (lab: string) => join(agentDir(lab), 'agent.sock');
export const agentStateFile = (lab: string) => join(agentDir(lab), 'state.json');
export const agentPidFile = (lab: string) => join(agentDir(lab), 'agent.pid');
export const agentLogFile = (lab: string) => join(runDir, 'labs', lab, 'logs', 'agent.log');
export const nodePinDir = (lab: string, node: string) => join(pinRoot, lab, node);
