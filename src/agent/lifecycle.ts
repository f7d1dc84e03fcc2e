// Start/stop hooks in dependency order (a Hive-style lifecycle in plain TypeScript): modules append
// their hooks as they are created; start runs them in order, stop in reverse, and a failed start
// stops what had already started before the error is rethrown.

export interface Hook {
  name: string;
  start?: () => Promise<void> | void;
  stop?: () => Promise<void> | void;
}

export class Lifecycle {
  private readonly hooks: Hook[] = [];
  private started: Hook[] = [];

  append(hook: Hook): void {
    this.hooks.push(hook);
  }

  async start(): Promise<void> {
    for (const hook of this.hooks) {
      try {
        await hook.start?.();
      } catch (err) {
        await this.stop();
        throw err;
      }
      this.started.push(hook);
    }
  }

  /** Stops every started hook in reverse order; errors are collected, not short-circuited. */
  async stop(): Promise<Error[]> {
    const errors: Error[] = [];
    for (const hook of this.started.reverse()) {
      try {
        await hook.stop?.();
      } catch (err) {
        errors.push(err instanceof Error ? err : new Error(String(err)));
      }
    }
    this.started = [];
    return errors;
  }
}
