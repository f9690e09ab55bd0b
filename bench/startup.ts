/**
 * Start-up cost of the two programs: CPU seconds and peak RSS of a real start, per way of running them.
 *
 *   pnpm -r run build && node bench/startup.ts [--runs 9]
 *
 * Nothing needs a cluster: each start is pointed at a kubeconfig whose API server is a closed loopback
 * port, so the program does all of its start-up (flags, logger, kubeconfig and credentials, API clients,
 * the first request) and meets a refused connection. The poller then exits (code 1) like a run that
 * could not list WatchedImages: its whole process is measured (`/usr/bin/time -v`). The controller keeps
 * retrying: it is measured from /proc when it logs "controller started" (probe server up, informers
 * started), then stopped.
 *
 * Rows (medians over `--runs`; the first start of each row is a warm-up and not counted), all with the
 * image's node flags:
 * - `tsc output`: packages/<name>/dist/main.js, the compiler's files loaded from node_modules;
 * - `bundle`: the rolldown ES module bundle (dist/bundle/main.mjs), what the image ran before the snapshot;
 * - `bundle + --enable-source-maps`: what Node's own source-map support costs (the programs map stack
 *   traces lazily instead, see packages/shared/src/stack-traces.ts);
 * - `bundle + compile cache`: with a primed NODE_COMPILE_CACHE (module.enableCompileCache);
 * - `start-up snapshot (shipped)`: the same code compiled and evaluated into a V8 start-up snapshot
 *   (dist/bundle/main.blob), exactly the manifests' command (scripts/lib/programs.ts);
 * - poller only, `snapshot, stopped at its flags`: the shipped start given an unknown flag, so it exits
 *   (2) once yargs has read its arguments: what every start pays before it does anything;
 * - `snapshot + FLAGS`: one row per `--try FLAGS`, Node/V8 flags on top of the shipped ones;
 * - poller only, `floor: KubeConfig + requestJson`: a bundle of just loading the kubeconfig and one raw
 *   list through client-node's KubeConfig, the least a poller process must load;
 * - `node -e 0`: the runtime alone.
 * It prints figures and asserts nothing.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { treeshake, undiciUsedPartsOnly } from '../rolldown.config.ts';
import { imageWorkingDir } from '../scripts/lib/image-build.ts';
import { ENTRY_FILE, PROGRAMS, type ProgramName, shippedNodeArgs } from '../scripts/lib/programs.ts';
import { GNU_TIME, readProcessUsage } from './process-usage.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '9' },
    // Node/V8 flags to try on top of the shipped ones, one row per value, e.g. --try=--jitless.
    try: { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log('pnpm -r run build && node bench/startup.ts [--runs 9] [--try="NODE FLAGS"]...');
  process.exit(0);
}
const runs = Number(flags.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`bench/startup.ts: --runs must be an integer ≥ 1, got "${flags.runs}"`);
  process.exit(2);
}
if (!existsSync(GNU_TIME)) {
  console.error(`bench/startup.ts: needs GNU time at ${GNU_TIME} (Debian: apt-get install time)`);
  process.exit(2);
}
/** The ES module bundle of `name`, as `pnpm -r run build` writes it. */
const bundleOf = (name: ProgramName) => join(repoRoot, PROGRAMS[name].bundleDir, ENTRY_FILE);
for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
  const blob = shippedNodeArgs(name).at(-2)!;
  for (const file of [blob, bundleOf(name), join(repoRoot, `packages/${name}/dist/main.js`)]) {
    if (!existsSync(file)) {
      console.error(`bench/startup.ts: ${file} missing: run pnpm -r run build`);
      process.exit(2);
    }
  }
}

const work = mkdtempSync(join(tmpdir(), 'kubewatcher-startup-'));
// Every start runs where the image runs it: in a working directory that holds the image's
// /app/package.json (yargs reads it at start; see appPackageJson).
const cwd = imageWorkingDir(work);
// Port 1 on loopback: nothing listens there, so every request is refused at once.
const kubeconfig = join(work, 'kubeconfig');
writeFileSync(
  kubeconfig,
  `apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: start-up-bench}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
`,
);

interface Usage {
  cpuSeconds: number;
  peakRssMb: number;
}

interface Variant {
  label: string;
  args: string[];
  env?: Record<string, string>;
}

/** One start of an exiting process under GNU time. */
async function measureExit(variant: Variant): Promise<Usage> {
  const child = spawn(GNU_TIME, ['-v', process.execPath, ...variant.args], {
    cwd,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...variant.env },
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  await new Promise((done, fail) => {
    child.once('error', fail);
    child.once('close', done);
  });
  let cpuSeconds = 0;
  let rssKb = Number.NaN;
  for (const line of stderr.split('\n')) {
    const time = /(User|System) time \(seconds\): ([\d.]+)/.exec(line);
    if (time) cpuSeconds += Number(time[2]);
    const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(line);
    if (rss) rssKb = Number(rss[1]);
  }
  if (Number.isNaN(rssKb)) throw new Error(`${variant.label}: no figures from ${GNU_TIME}:\n${stderr}`);
  return { cpuSeconds, peakRssMb: rssKb / 1024 };
}

/** One controller start, measured when it logs that it started, then stopped. */
async function measureStarted(variant: Variant): Promise<Usage> {
  const child = spawn(process.execPath, variant.args, {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...variant.env },
  });
  let output = '';
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  try {
    const usage = await new Promise<Usage>((done, fail) => {
      const timer = setTimeout(
        () => fail(new Error(`${variant.label}: not started in 30 s:\n${output}`)),
        30_000,
      );
      const onData = (c: Buffer) => {
        output += c.toString();
        if (!output.includes('"message":"controller started"')) return;
        clearTimeout(timer);
        const figures = child.pid ? readProcessUsage(child.pid) : undefined;
        if (!figures) fail(new Error(`${variant.label}: exited before it was measured:\n${output}`));
        else done({ cpuSeconds: figures.cpuSeconds, peakRssMb: figures.peakRssBytes / 2 ** 20 });
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => fail(new Error(`${variant.label}: exited before it started:\n${output}`)));
    });
    return usage;
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function row(variant: Variant, measure: (v: Variant) => Promise<Usage>): Promise<string> {
  await measure(variant); // warm-up: the page cache, and the compile cache's first fill
  const samples: Usage[] = [];
  for (let i = 0; i < runs; i++) samples.push(await measure(variant));
  const cpu = median(samples.map((s) => s.cpuSeconds));
  const rss = median(samples.map((s) => s.peakRssMb));
  return `| ${variant.label} | ${cpu.toFixed(2)} | ${rss.toFixed(0)} |`;
}

/** Bundles a script that loads the kubeconfig and lists WatchedImages once through requestJson. */
async function floorBundle(): Promise<string> {
  const { build } = await import('rolldown');
  const entry = join(work, 'floor.ts');
  const shared = join(repoRoot, 'packages/shared/src/kube.ts');
  writeFileSync(
    entry,
    `import { loadKubeConfig, requestJson } from ${JSON.stringify(shared)};
const kc = loadKubeConfig(process.argv[2]);
try {
  await requestJson(kc, { method: 'GET', path: '/apis/kubewatcher.io/v1alpha1/watchedimages' });
} catch {
  process.exitCode = 1;
}
`,
  );
  const dir = join(work, 'floor');
  mkdirSync(dir);
  await build({
    input: entry,
    platform: 'node',
    // As the programs' bundles are built: only the parts of client-node and undici that are used.
    treeshake,
    plugins: [undiciUsedPartsOnly()],
    logLevel: 'silent',
    output: { dir, format: 'esm', entryFileNames: 'floor.mjs' },
  });
  return join(dir, 'floor.mjs');
}

async function main(): Promise<void> {
  const lines: string[] = [];
  const out = (line: string) => {
    lines.push(line);
    console.error(line);
  };
  out(`node ${process.version}, ${runs} runs per row (medians), API server: a refused loopback port`);
  out('');
  out('| program, how it runs | CPU s | peak RSS MiB |');
  out('|---|---:|---:|');
  for (const name of ['poller', 'controller'] as const) {
    const flagsOf = PROGRAMS[name].nodeFlags;
    const main = bundleOf(name);
    const programArgs =
      name === 'poller'
        ? ['--kubeconfig', kubeconfig, '--dry-run', '--log-format=json']
        : ['--kubeconfig', kubeconfig, '--metrics-addr=127.0.0.1:0', '--log-format=json'];
    const measure = name === 'poller' ? measureExit : measureStarted;
    const cache = join(work, `compile-cache-${name}`);
    const variants: (Variant & { stopAtFlags?: boolean })[] = [
      { label: `${name}: tsc output`, args: [...flagsOf, join(repoRoot, `packages/${name}/dist/main.js`)] },
      { label: `${name}: bundle`, args: [...flagsOf, main] },
      { label: `${name}: bundle + --enable-source-maps`, args: [...flagsOf, '--enable-source-maps', main] },
      {
        label: `${name}: bundle + compile cache`,
        args: [...flagsOf, main],
        env: { NODE_COMPILE_CACHE: cache },
      },
      { label: `${name}: start-up snapshot (shipped)`, args: shippedNodeArgs(name) },
      // What every start costs before the program does anything: yargs refuses the flag, it exits (2).
      ...(name === 'poller'
        ? [
            {
              label: `${name}: snapshot, stopped at its flags`,
              args: shippedNodeArgs(name),
              stopAtFlags: true,
            },
          ]
        : []),
      ...flags.try.map((extra) => ({
        label: `${name}: snapshot + ${extra}`,
        args: shippedNodeArgs(name, repoRoot, extra.split(/\s+/).filter(Boolean)),
      })),
    ];
    for (const { stopAtFlags, ...v } of variants) {
      const args = [...v.args, ...(stopAtFlags ? ['--no-such-flag'] : programArgs)];
      out(await row({ ...v, args }, stopAtFlags ? measureExit : measure));
    }
    if (name === 'poller') {
      const floor = await floorBundle();
      out(
        await row(
          { label: 'floor: KubeConfig + requestJson', args: [...flagsOf, floor, kubeconfig] },
          measureExit,
        ),
      );
    }
  }
  out(await row({ label: 'node -e 0', args: ['-e', '0'] }, measureExit));
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
