// `weir ui`: the web UI (live service map and flow table) for one lab, served on loopback from the
// root namespace; it reaches the lab's agents over their unix sockets (every node's flows, merged).
import { Command, Option } from 'commander';
import { defaultLabName } from '../../lab/lab.js';
import { parseListen, type ListenAddress } from '../../ui/listen.js';
import { startUi } from '../../ui/server.js';

export function uiCommand(): Command {
  return new Command('ui')
    .description(
      "serve the web UI (live service map, flow table) for a lab's flows (every node's), on loopback only",
    )
    .addOption(new Option('--lab <name>', 'lab name (env WEIR_LAB)').default(defaultLabName()))
    .addOption(
      new Option('--listen <host:port>', 'loopback address to serve on (port 0: any free port)')
        .default(parseListen('127.0.0.1:12000'), '127.0.0.1:12000')
        .argParser(parseListen),
    )
    .action(async (o: { lab: string; listen: ListenAddress }) => {
      const ui = await startUi({ lab: o.lab, listen: o.listen });
      process.stdout.write(`weir ui: ${ui.url} (lab ${o.lab}; Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await ui.close();
    });
}
