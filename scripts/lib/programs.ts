/**
 * How the image runs each program, in one place: the image's file tree (scripts/lib/image-build.ts and
 * the Dockerfile), the manifests' `command` (checked by scripts/manifests.test.ts), bench/startup.ts,
 * bench/keel-vs-kubewatcher.ts and `bench/poller.ts --dist` all take it from here, so what is measured
 * is what ships.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

export type ProgramName = 'controller' | 'poller';

export interface Program {
  /** The package's bundle folder (`pnpm -r run build` writes it), relative to the repository. */
  bundleDir: string;
  /** Where that folder's files are in the image. */
  imageDir: string;
  /**
   * Node's flags in the Deployment and the CronJob. V8's young generation kept small and the heap capped,
   * so garbage is collected before the container's 256Mi limit is reached (5,000 WatchedImages: 330 MB
   * peak without, 170 MB with; see bench/README.md).
   */
  nodeFlags: readonly string[];
}

export const PROGRAMS: Record<ProgramName, Program> = {
  controller: {
    bundleDir: 'packages/controller/dist/bundle',
    imageDir: '/app/controller',
    nodeFlags: ['--max-semi-space-size=2', '--max-old-space-size=160'],
  },
  poller: {
    bundleDir: 'packages/poller/dist/bundle',
    imageDir: '/app/poller',
    nodeFlags: ['--max-semi-space-size=2', '--max-old-space-size=128'],
  },
};

/** The bundle's entry file name, in the repository and in the image. */
export const ENTRY_FILE = 'main.mjs';

/** The container's `command` that runs `name` from the image. */
export function imageCommand(name: ProgramName): string[] {
  const { nodeFlags, imageDir } = PROGRAMS[name];
  return ['node', ...nodeFlags, `${imageDir}/${ENTRY_FILE}`];
}

/** The same program built in this checkout: node's arguments (run them with `process.execPath`). */
export function shippedNodeArgs(name: ProgramName, root: string = repoRoot): string[] {
  const { nodeFlags, bundleDir } = PROGRAMS[name];
  return [...nodeFlags, join(root, bundleDir, ENTRY_FILE)];
}

/**
 * Builds the bundles the image ships (`pnpm -r run build`), so that what runs is this checkout's code,
 * and fails with the build's output when it fails or a bundle is missing after it.
 */
export async function buildShippedPrograms(root: string = repoRoot): Promise<void> {
  try {
    await run('pnpm', ['-r', '--reporter=silent', 'run', 'build'], {
      cwd: root,
      maxBuffer: 16 << 20,
    });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`pnpm -r run build failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
  for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
    const main = shippedNodeArgs(name, root).at(-1) as string;
    if (!existsSync(main)) throw new Error(`${main} is missing after pnpm -r run build`);
  }
}

/**
 * `node scripts/lib/programs.ts --start-each`: starts each built bundle the way the manifests run it
 * (their node flags), with `--help`, and fails when one does not start (scripts/test runs it after the
 * build: a bundle that lost a module, or a flag Node rejects, fails here rather than in a pod).
 */
function startEach(): number {
  let failed = 0;
  for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
    const args = [...shippedNodeArgs(name), '--help'];
    const run = spawnSync(process.execPath, args, { encoding: 'utf8' });
    if (run.status === 0 && run.stdout.startsWith(`kubewatcher-${name}`)) continue;
    failed++;
    process.stderr.write(
      `programs: node ${args.join(' ')} exited with ${run.status ?? run.signal}:\n${run.stdout}${run.stderr}\n`,
    );
  }
  return failed === 0 ? 0 : 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] !== '--start-each') {
    process.stderr.write('usage: node scripts/lib/programs.ts --start-each\n');
    process.exitCode = 2;
  } else process.exitCode = startEach();
}
