// The CLI's way to a lab's agent lives in src/agent/link.ts (libraries use it too).
export { agentClient, agentHooks } from '../agent/link.js';
