// Every sub-command of `weir`, registered in one place so the CLI reads like a table of contents.
import type { Command } from 'commander';

export function registerCommands(_program: Command): void {
  // Sub-commands are added here as domains arrive.
}
