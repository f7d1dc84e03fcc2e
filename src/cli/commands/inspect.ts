// The inspection commands: what the agent manages (`weir endpoint`, `weir identity`) and what the
// kernel's maps hold (`weir bpf ...`), with Cilium's CLI habits and `-o json|yaml` everywhere.
import type { Command } from 'commander';
import { authCommand } from './auth.js';
import { bpfCommand } from './bpf.js';
import { endpointCommand } from './endpoint.js';
import { fqdnCommand } from './fqdn.js';
import { identityCommand } from './identity.js';

export function registerInspectCommands(program: Command): void {
  program.addCommand(endpointCommand());
  program.addCommand(identityCommand());
  program.addCommand(fqdnCommand());
  program.addCommand(bpfCommand());
  program.addCommand(authCommand());
}
