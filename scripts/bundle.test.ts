/**
 * What each program's bundle (rolldown.config.ts) carries: none of client-node's generated API classes
 * and models, nor its exec/attach/cp machinery, no ES import of `node:http` (whose ESM facade loads
 * Node's own undici), and of undici only what client-node and shared/src/kube.ts take from it. Each of these cost start-up CPU and memory at every poller run; bench/startup.ts
 * measures how much. And what its start-up snapshot script is: one CommonJS file that loads no module
 * V8 cannot snapshot while the blob is built, and whose blob is the same bytes from every build.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type OutputChunk, rolldown } from 'rolldown';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleOptions, snapshotBundleOptions, UNSNAPSHOTTABLE_BUILTINS } from '../rolldown.config.ts';
import { buildStartupSnapshot, SNAPSHOT_SCRIPT } from './lib/programs.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'kubewatcher-bundle-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function chunks(
  program: 'controller' | 'poller',
  options: typeof bundleOptions = bundleOptions,
): Promise<OutputChunk[]> {
  const { output: outputOptions, ...input } = options(join(repoRoot, 'packages', program));
  const build = await rolldown({ ...input, logLevel: 'silent' });
  try {
    const { output } = await build.generate({ ...outputOptions, sourcemap: false });
    return output.filter((o): o is OutputChunk => o.type === 'chunk');
  } finally {
    await build.close();
  }
}

describe.each(['poller', 'controller'] as const)('the %s bundle', (program) => {
  it('keeps only the parts of client-node it uses, and requires node:http', async () => {
    const all = await chunks(program);
    const modules = all.flatMap((c) => Object.keys(c.modules)).map((id) => id.replaceAll('\\', '/'));
    const clientNode = modules.filter((id) => id.includes('/@kubernetes/client-node/dist/'));
    // The check can fail: client-node is there, for KubeConfig and its credentials.
    expect(clientNode.some((id) => id.endsWith('/dist/config.js'))).toBe(true);
    expect(clientNode.filter((id) => /\/dist\/gen\/(models|apis\/(?!exception))/.test(id))).toEqual([]);
    expect(
      clientNode.filter((id) => /\/dist\/(exec|attach|cp|portforward|serializer)\.js$/.test(id)),
    ).toEqual([]);
    expect(all.flatMap((c) => c.imports).filter((i) => i === 'http' || i === 'node:http')).toEqual([]);
  }, 60_000);

  it("keeps only undici's dispatchers and fetch, not its index's other parts", async () => {
    const modules = (await chunks(program))
      .flatMap((c) => Object.keys(c.modules))
      .map((id) => id.replaceAll('\\', '/'));
    const undici = modules.filter((id) => id.includes('/undici/'));
    // The check can fail: the dispatchers client-node's KubeConfig makes are there.
    expect(undici.some((id) => id.endsWith('/lib/dispatcher/agent.js'))).toBe(true);
    expect(undici.some((id) => /\/undici\/index\.js$/.test(id))).toBe(false);
    expect(
      undici.filter((id) => /\/lib\/(mock|cache|web\/(websocket|eventsource|cache|cookies))\//.test(id)),
    ).toEqual([]);
  }, 60_000);
});

describe.each(['poller', 'controller'] as const)('the %s start-up snapshot script', (program) => {
  it('is one CommonJS file that takes http, https, http2 and tls only when first used', async () => {
    const all = await chunks(program, snapshotBundleOptions);
    expect(all).toHaveLength(1);
    const [script] = all;
    const unsnapshottable = new Set(UNSNAPSHOTTABLE_BUILTINS.flatMap((m) => [m, `node:${m}`]));
    // Neither a require at the top (which would load the module while the blob is built) nor anywhere.
    expect(script!.imports.filter((i) => unsnapshottable.has(i))).toEqual([]);
    for (const name of UNSNAPSHOTTABLE_BUILTINS) {
      expect(script!.code).not.toMatch(new RegExp(`require\\(["'\`](node:)?${name}["'\`]\\)`));
      expect(script!.code).toMatch(new RegExp(`process\\.getBuiltinModule\\(["'\`]node:${name}["'\`]\\)`));
    }
    // yargs looks for a package.json from the working directory of each start, not of the build.
    expect(script!.code).toContain('get mainFilename()');
  }, 60_000);

  it('builds into the same blob bytes in two folders, from two processes', async () => {
    const [script] = await chunks(program, snapshotBundleOptions);
    const blobs: Buffer[] = [];
    for (const folder of ['one', `two/${program}`]) {
      const dir = join(work, program, folder);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, SNAPSHOT_SCRIPT), script!.code);
      blobs.push(readFileSync(await buildStartupSnapshot(dir)));
    }
    expect(blobs[1]!.equals(blobs[0]!)).toBe(true);
  }, 60_000);
});
