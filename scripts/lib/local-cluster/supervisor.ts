/**
 * Spawns the components of one environment in their own process groups, records them in `dir/pids`, turns
 * an early exit into a startup error carrying the log tail, and stops them all.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { appendFile, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { TokenServer } from '../token-server.ts';
import {
  logTail,
  procStat,
  readProcessRecords,
  STOP_GRACE_MS,
  settlesWithin,
  signalGroup,
  stopTiers,
} from './processes.ts';

export interface Component {
  name: string;
  pid: number;
  logFile: string;
  child: ChildProcess;
  exited: boolean;
  exit: Promise<void>;
  /** How it was started, so `restart` can start it again. */
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Set while `restart` stops it: its exit is expected. */
  restarting?: boolean;
}

/**
 * Spawns components in their own process groups, records them in `dir/pids`, turns an early exit into a
 * startup error carrying the log tail, and stops them all.
 */
export class Supervisor {
  readonly dir: string;
  readonly logDir: string;
  readonly detached: boolean;
  readonly log: (line: string) => void;
  readonly components: Component[] = [];
  tokenServer: TokenServer | undefined;
  /**
   * Run first by `stop()`, in order: parts that need more than a signal to their process group (the real
   * node stops its containers, unmounts and removes cgroups before the generic stop).
   */
  readonly teardowns: (() => Promise<void>)[] = [];
  /** Set when a component exits while the environment starts: every wait fails with it. */
  failure: Error | undefined;
  private starting = true;
  private stopping: Promise<void> | undefined;
  private watchdog: ChildProcess | undefined;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    const othersListen = process.listenerCount(signal) > 1;
    this.log(`${signal}: stopping the local environment`);
    void this.stop()
      .catch((err: unknown) => this.log(err instanceof Error ? err.message : String(err)))
      .finally(() => {
        // With no other handler, behave as if we had not intercepted the signal.
        if (!othersListen) process.kill(process.pid, signal);
      });
  };
  private readonly onExit = () => {
    // Only synchronous work is possible here; the watchdog escalates to SIGKILL if needed.
    for (const c of this.components) if (!c.exited) signalGroup(c.pid, 'SIGTERM');
  };

  constructor(dir: string, detached: boolean, log: (line: string) => void) {
    this.dir = dir;
    this.logDir = join(dir, 'logs');
    this.detached = detached;
    this.log = log;
    // While starting, Ctrl-C must not leave half an environment behind, detached or not.
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    if (!detached) {
      process.on('exit', this.onExit);
      this.startWatchdog();
    }
  }

  /**
   * A tiny shell process reading the group ids we feed it: if this process dies without stopping the
   * environment (SIGKILL, crash), its end of the pipe closes and the watchdog stops the groups.
   */
  private startWatchdog() {
    const script = [
      // A real node leaves containers, mounts and cgroups that no process group holds: tear it down too.
      'finish() {',
      '  [ -f "$KW_DIR/node/host-state.json" ] && exec "$KW_NODE" "$KW_TEARDOWN" "$KW_DIR" >>"$KW_DIR/logs/teardown.log" 2>&1',
      '  exit 0',
      '}',
      'pids=',
      'while IFS= read -r line; do [ "$line" = disarm ] && exit 0; pids="$pids $line"; done',
      'for p in $pids; do kill -TERM -- "-$p" 2>/dev/null; done',
      'for _ in $(seq 50); do',
      '  alive=0; for p in $pids; do kill -0 -- "-$p" 2>/dev/null && alive=1; done',
      '  [ "$alive" = 0 ] && finish; sleep 0.1',
      'done',
      'for p in $pids; do kill -KILL -- "-$p" 2>/dev/null; done',
      'finish',
    ].join('\n');
    const watchdog = spawn('bash', ['-c', script], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
      env: {
        ...process.env,
        KW_DIR: this.dir,
        KW_NODE: process.execPath,
        KW_TEARDOWN: fileURLToPath(new URL('./teardown-cli.ts', import.meta.url)),
      },
    });
    watchdog.stdin?.on('error', () => {});
    (watchdog.stdin as Socket | null)?.unref();
    watchdog.unref();
    this.watchdog = watchdog;
  }

  /** Startup finished: in detached mode the components now belong to nobody but `dir/pids`. */
  started() {
    this.starting = false;
    if (this.detached) {
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
    }
  }

  async spawn(
    name: string,
    command: string,
    args: string[],
    env: Record<string, string> = {},
  ): Promise<Component> {
    const logFile = join(this.logDir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: this.dir,
        detached: true, // setsid: its own process group, which stop() signals as a whole
        stdio: ['ignore', fd, fd],
        env: { ...process.env, ...env },
      });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((done) => child.once('error', done));
      throw new Error(`cannot start ${name} (${command}): ${err.message}`);
    }
    let markExited!: () => void;
    const component: Component = {
      name,
      pid,
      logFile,
      child,
      exited: false,
      exit: new Promise((done) => {
        markExited = done;
      }),
      command,
      args,
      env,
    };
    child.once('exit', (code, signal) => {
      component.exited = true;
      markExited();
      if (this.stopping || component.restarting) return;
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      if (this.starting) {
        this.failure ??= new Error(
          `${name} ${how} while the environment started; last lines of ${logFile}:\n${logTail(logFile)}`,
        );
      } else {
        // Worth a line even when progress is silent: every test after this point will fail.
        console.error(`local-cluster: ${name} ${how}; last lines of ${logFile}:\n${logTail(logFile, 10)}`);
      }
    });
    child.on('error', (err) => this.log(`${name}: ${err.message}`));
    if (this.detached) child.unref();
    this.components.push(component);
    await appendFile(join(this.dir, 'pids'), `${name} ${pid} ${procStat(pid)?.startTime ?? '0'}\n`);
    this.watchdog?.stdin?.write(`${pid}\n`);
    return component;
  }

  component(name: string): Component | undefined {
    return this.components.find((c) => c.name === name);
  }

  /** Stops one component and starts it again with the same command, after `downMs`. */
  async restart(name: string, downMs = 0): Promise<Component> {
    const old = this.component(name);
    if (!old) throw new Error(`no component named ${name}`);
    old.restarting = true;
    if (!old.exited) await this.stopGroups([old]);
    this.components.splice(this.components.indexOf(old), 1);
    const others = (await readProcessRecords(this.dir)).filter((r) => r.pid !== old.pid);
    await writeFile(
      join(this.dir, 'pids'),
      others.map((r) => `${r.name} ${r.pid} ${r.startTime}\n`).join(''),
    );
    if (downMs > 0) await delay(downMs);
    return this.spawn(name, old.command, old.args, old.env);
  }

  /**
   * Polls `probe` every 100 ms until it returns a value other than undefined/false. Fails at once when a
   * component exits, and after the timeout with the log tails of the components named.
   */
  async waitFor<T>(
    what: string,
    logsOf: string[],
    timeoutMs: number,
    probe: () => Promise<T | undefined | false>,
  ) {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    for (;;) {
      if (this.failure) throw this.failure;
      try {
        const value = await probe();
        if (value !== undefined && value !== false) return value;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) {
        const tails = logsOf
          .map((n) => this.component(n))
          .filter((c) => c !== undefined)
          .map((c) => `last lines of ${c.logFile}:\n${logTail(c.logFile)}`);
        throw new Error(
          [
            `timed out after ${timeoutMs / 1000}s waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`,
            ...tails,
          ].join('\n'),
        );
      }
      await delay(100);
    }
  }

  private async stopGroups(running: Component[]) {
    for (const c of running) signalGroup(c.pid, 'SIGTERM');
    const allExited = Promise.all(running.map((c) => c.exit));
    if (!(await settlesWithin(allExited, STOP_GRACE_MS))) {
      for (const c of running.filter((c) => !c.exited)) {
        this.log(`${c.name} ignored SIGTERM for ${STOP_GRACE_MS / 1000}s: killing it`);
        signalGroup(c.pid, 'SIGKILL');
      }
      await allExited;
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.failure ??= new Error('the local environment was stopped'); // ends every pending wait
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      process.off('exit', this.onExit);
      // A failed teardown must not keep the other processes running: stop them all, then report it.
      const problems: string[] = [];
      for (const teardown of this.teardowns) {
        try {
          await teardown();
        } catch (err) {
          problems.push(err instanceof Error ? err.message : String(err));
        }
      }
      await this.tokenServer?.close();
      for (const tier of stopTiers(this.components)) await this.stopGroups(tier.filter((c) => !c.exited));
      if (this.watchdog?.stdin?.writable) this.watchdog.stdin.end('disarm\n');
      await rm(join(this.dir, 'pids'), { force: true });
      if (problems.length > 0) throw new Error(`stopping the local environment: ${problems.join('; ')}`);
    })();
    return this.stopping;
  }
}
