/**
 * Debian packages a local tool needs from the machine (the real node's container runtime, the
 * NetworkPolicy test's iptables and ipset), installed with apt-get when missing: a cold CI machine gets
 * them the same way as a developer's.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Whether this process may install packages: root on a machine with apt-get. */
export function canInstallDebianPackages(): boolean {
  return process.getuid?.() === 0 && existsSync('/usr/bin/apt-get');
}

/**
 * `apt-get update` then `apt-get install` of `packages` (no recommends, non-interactive); `why` says in the
 * log line who needs them. Throws with apt-get's message when it fails.
 */
export async function installDebianPackages(
  packages: string[],
  why: string,
  log: (line: string) => void,
): Promise<void> {
  log(`installing ${packages.join(' ')} with apt-get (${why})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await run('apt-get', ['update'], { env, maxBuffer: 64 << 20 });
    await run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      env,
      maxBuffer: 64 << 20,
    });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`apt-get could not install ${packages.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}
