// Every sub-command of `weir`, registered in one place so the CLI reads like a table of contents.
import type { Command } from 'commander';
import '../../cluster/kinds.js';
import { agentCommand } from './agent.js';
import { applyCommand } from './apply.js';
import { cniCommand } from './cni.js';
import { registerConformanceCommands } from './conformance.js';
import { deleteCommand } from './delete.js';
import { gatewayCommand, routeCommand } from './gateway.js';
import { getCommand } from './get.js';
import { registerInspectCommands } from './inspect.js';
import { labCommand } from './lab.js';
import { nodeCommand } from './node.js';
import { observeCommand } from './observe.js';
import { registerPolicyCommands } from './policy.js';
import { proxyCommand } from './proxy.js';
import { bpfLbCommand, serviceCommand } from './service.js';
import { uiCommand } from './ui.js';

export function registerCommands(program: Command): void {
  program.addCommand(labCommand());
  program.addCommand(agentCommand());
  program.addCommand(nodeCommand());
  program.addCommand(applyCommand());
  program.addCommand(deleteCommand());
  program.addCommand(getCommand());
  registerPolicyCommands(program);
  registerConformanceCommands(program);
  registerInspectCommands(program);
  program.addCommand(serviceCommand());
  program.commands.find((c) => c.name() === 'bpf')?.addCommand(bpfLbCommand());
  program.addCommand(observeCommand());
  program.addCommand(uiCommand());
  program.addCommand(proxyCommand());
  program.addCommand(gatewayCommand());
  program.addCommand(routeCommand());
  program.addCommand(cniCommand());
}
