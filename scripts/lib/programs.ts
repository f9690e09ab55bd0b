/**
 * How the image runs each program, in one place: the image's file tree (scripts/lib/image-build.ts and
 * the Dockerfile), the manifests' `command` (checked by scripts/manifests.test.ts), bench/startup.ts,
 * bench/keel-vs-kubewatcher.ts and `bench/poller.ts --dist` all take it from here, so what is measured
 * is what ships.
 *
 * Each program starts from a V8 start-up snapshot: `node FLAGS --snapshot-blob main.blob -- ARGS`. The
 * blob holds the program's bundle already compiled and evaluated (rolldown.config.ts,
 * `snapshotBundleOptions`), so a start deserializes a heap instead of compiling 3 MB of JavaScript and
 * running every module's top level: about half the CPU of a start (bench/README.md). A blob only loads
 * in the Node.js binary that built it, so `pnpm -r run build` builds one with this checkout's node for
 * the benchmarks and tests, and the image build builds the image's own with the image's node binary.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
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

/** The ES module bundle's entry file (the packages' `bin`; the benchmarks compare it with the snapshot). */
export const ENTRY_FILE = 'main.mjs';
/** The start-up snapshot's script, one CommonJS file beside the bundle; the blob is built from it. */
export const SNAPSHOT_SCRIPT = 'main.cjs';
/** The script's source map: shipped beside the blob, read only when a stack trace is printed. */
export const SNAPSHOT_SOURCE_MAP = 'main.cjs.map';
/** The start-up snapshot, beside the script in the repository, in `imageDir` in the image. */
export const SNAPSHOT_BLOB = 'main.blob';
/** `node --build-snapshot-config`'s file, written beside the script while the blob is built. */
const SNAPSHOT_CONFIG = 'main.snapshot.json';
/** A link to the node binary that builds the blob, beside the script while it is built. */
const NODE_LINK = 'node.build';

/** Node's arguments that start the program in `blob`; the program's own arguments follow. */
export function snapshotStartArgs(blob: string, nodeFlags: readonly string[] = []): string[] {
  // `--` ends Node's options: without it Node would take the program's `--help` as its own.
  return [...nodeFlags, '--snapshot-blob', blob, '--'];
}

/** Where `name`'s blob is in the image. */
export const imageBlob = (name: ProgramName) => `${PROGRAMS[name].imageDir}/${SNAPSHOT_BLOB}`;

/** The container's `command` that runs `name` from the image; the program's flags go in `args`. */
export function imageCommand(name: ProgramName): string[] {
  return ['node', ...snapshotStartArgs(imageBlob(name), PROGRAMS[name].nodeFlags)];
}

/**
 * The same program built in this checkout: node's arguments (run them with `process.execPath`), the
 * program's own arguments to follow. `extraNodeFlags` go with the shipped flags (benchmarks try some).
 */
export function shippedNodeArgs(
  name: ProgramName,
  root: string = repoRoot,
  extraNodeFlags: readonly string[] = [],
): string[] {
  const { nodeFlags, bundleDir } = PROGRAMS[name];
  return snapshotStartArgs(join(root, bundleDir, SNAPSHOT_BLOB), [...nodeFlags, ...extraNodeFlags]);
}

/**
 * Builds `dir/main.blob` from `dir/main.cjs` with the Node.js binary `node` (the one that will run it:
 * a blob only loads in the binary that built it), and returns the blob's path. The blob holds the
 * evaluated heap without compiled code (`withoutCodeCache`).
 *
 * The same script and binary give the same bytes, wherever they are. V8 writes what the building process
 * holds into the heap it serializes, so: the build runs with an empty environment and `--predictable`
 * (one thread, fixed seeds: V8's concurrent compilers otherwise finish in varying order); the script
 * and node (through a link beside it) are named `/proc/self/cwd/…` (Linux), the same wherever the
 * folder is, since Node keeps its command line; the script itself resets the pid and paths Node
 * records before the heap is written (packages/shared/src/startup-snapshot.ts), and the snapshot
 * bundle rewrites dependency code that would leave a memory address in it (rolldown.config.ts).
 */
export async function buildStartupSnapshot(dir: string, node: string = process.execPath): Promise<string> {
  const script = join(dir, SNAPSHOT_SCRIPT);
  if (!existsSync(script)) {
    throw new Error(`${script} is missing: build the bundles first (pnpm -r run build)`);
  }
  const blob = join(dir, SNAPSHOT_BLOB);
  rmSync(blob, { force: true });
  const config = join(dir, SNAPSHOT_CONFIG);
  // Names relative to the folder (node through a link in it): Node keeps its command line in the heap.
  const here = existsSync('/proc/self/cwd') ? '/proc/self/cwd' : undefined;
  writeFileSync(
    config,
    JSON.stringify({
      builder: here ? `${here}/${SNAPSHOT_SCRIPT}` : resolve(script),
      // With code (the script's and Node's own modules' bytecode) the blob is 6 MB more, resident at
      // every start: a poller run at N = 50 peaks ~5 MiB higher for ~0.01 CPU s less (bench/README.md).
      withoutCodeCache: true,
    }),
  );
  const link = join(dir, NODE_LINK);
  rmSync(link, { force: true });
  symlinkSync(node, link);
  const args = [
    '--predictable',
    '--no-warnings',
    '--snapshot-blob',
    SNAPSHOT_BLOB,
    '--build-snapshot-config',
    SNAPSHOT_CONFIG,
  ];
  try {
    await run(here ? `${here}/${NODE_LINK}` : link, args, { cwd: dir, env: {}, maxBuffer: 16 << 20 });
  } catch (err) {
    const e = err as Error & { code?: number | string; signal?: string; stdout?: string; stderr?: string };
    const output = `${e.stdout ?? ''}${e.stderr ?? e.message}`;
    throw new Error(
      `building the start-up snapshot ${blob} failed (${e.code ?? e.signal}):\n${output.slice(-8000)}`,
    );
  } finally {
    rmSync(config, { force: true });
    rmSync(link, { force: true });
  }
  if (!existsSync(blob)) throw new Error(`building the start-up snapshot ${blob} failed: no blob written`);
  return blob;
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
    const blob = join(root, PROGRAMS[name].bundleDir, SNAPSHOT_BLOB);
    if (!existsSync(blob)) throw new Error(`${blob} is missing after pnpm -r run build`);
  }
}

/**
 * `node scripts/lib/programs.ts --start-each`: starts each built program the way the manifests run it
 * (their node flags, the start-up snapshot), with `--help`, and fails when one does not start
 * (scripts/test runs it after the build: a bundle that lost a module, or a flag Node rejects, fails here
 * rather than in a pod).
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

const USAGE = `usage: node scripts/lib/programs.ts --start-each
       node scripts/lib/programs.ts --build-snapshot DIR   (DIR/${SNAPSHOT_SCRIPT} → DIR/${SNAPSHOT_BLOB}; the packages' build)
`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, dir, ...rest] = process.argv.slice(2);
  if (command === '--start-each' && dir === undefined) process.exitCode = startEach();
  else if (command === '--build-snapshot' && dir !== undefined && rest.length === 0) {
    try {
      await buildStartupSnapshot(resolve(dir));
    } catch (err) {
      process.stderr.write(`programs: ${(err as Error).message}\n`);
      process.exitCode = 1;
    }
  } else {
    process.stderr.write(USAGE);
    process.exitCode = 2;
  }
}
