/**
 * The Kubewatcher image as scripts/build-image builds it (no container engine): reproducible, running as
 * 65532 with node as its entry point and no shell, the same file tree and configuration as the
 * Dockerfile's, and pushed to the environment's registry under the digest it prints.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  type BuiltImage,
  buildImage,
  imageRuntimeConfig,
  LAYERS,
  stagedFileList,
} from '../scripts/lib/image-build.ts';
import {
  imageBlob,
  imageCommand,
  PROGRAMS,
  type ProgramName,
  SNAPSHOT_BLOB,
  SNAPSHOT_SOURCE_MAP,
  snapshotStartArgs,
} from '../scripts/lib/programs.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const info = inject('localCluster');

let work: string;
let first: BuiltImage;
let second: BuiltImage;

beforeAll(async () => {
  // The bundles the image carries, built from this checkout.
  await run('pnpm', ['-r', '--reporter=silent', 'run', 'build'], { cwd: repoRoot });
  work = await mkdtemp(join(tmpdir(), 'kubewatcher-image-'));
  first = await buildImage({ outDir: join(work, 'first') });
  second = await buildImage({ outDir: join(work, 'second') });
}, 10 * 60_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

interface Manifest {
  config: { digest: string };
  layers: { digest: string }[];
}

const blob = (image: BuiltImage, digest: string) =>
  join(image.layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length));
const manifestOf = async (image: BuiltImage) =>
  JSON.parse(await readFile(blob(image, image.digest), 'utf8')) as Manifest;

/** Each entry of a layer blob: path (folders end with `/`), type, mode, owner. */
async function layerEntries(path: string) {
  const entries: { name: string; type: string; mode: number; uid: number; gid: number; linkname?: string }[] =
    [];
  const tar = extract();
  tar.on('entry', (header, stream, next) => {
    entries.push({
      name: header.name,
      type: header.type,
      mode: header.mode,
      uid: header.uid,
      gid: header.gid,
      ...(header.linkname ? { linkname: header.linkname } : {}),
    });
    stream.on('end', next);
    stream.resume();
  });
  await pipeline(createReadStream(path), createGunzip(), tar);
  return entries;
}

describe('scripts/build-image', () => {
  it('gives the same digest for the same checkout and packages (sorted entries, fixed timestamps)', async () => {
    expect(second.digest).toBe(first.digest);
    expect(await manifestOf(second)).toEqual(await manifestOf(first));
    expect(first.staged.packages.map((p) => p.name)).toEqual(
      expect.arrayContaining(['libc6', 'libgcc-s1', 'libstdc++6', 'ca-certificates', 'tzdata']),
    );
  });

  it('runs as 65532:65532, node as the entry point, the controller by default', async () => {
    const manifest = await manifestOf(first);
    const config = JSON.parse(await readFile(blob(first, manifest.config.digest), 'utf8')) as {
      config: ReturnType<typeof imageRuntimeConfig>;
      created: string;
      rootfs: { diff_ids: string[] };
    };
    expect(config.config.User).toBe('65532:65532');
    expect(config.config.Entrypoint).toEqual(['node']);
    expect(config.config.Cmd).toEqual(snapshotStartArgs(imageBlob('controller')));
    expect(config.created).toBe('1970-01-01T00:00:00Z');
    expect(config.rootfs.diff_ids).toHaveLength(LAYERS.length);
  });

  it('holds node, both start-up snapshots and their maps, the nonroot user and no shell; all files are root-owned except its home', async () => {
    const manifest = await manifestOf(first);
    const entries = (
      await Promise.all(manifest.layers.map((l) => layerEntries(blob(first, l.digest))))
    ).flat();
    const byName = new Map(entries.map((e) => [e.name.replace(/\/$/, ''), e]));
    for (const path of [
      'usr/bin/node',
      'lib64/ld-linux-x86-64.so.2',
      'etc/ssl/certs/ca-certificates.crt',
      'usr/share/zoneinfo/Europe/Berlin',
      'app/package.json',
      ...Object.values(PROGRAMS).flatMap((p) => [
        `${p.imageDir.slice(1)}/${SNAPSHOT_BLOB}`,
        `${p.imageDir.slice(1)}/${SNAPSHOT_SOURCE_MAP}`,
      ]),
    ]) {
      expect(byName.has(path), path).toBe(true);
    }
    for (const shell of ['bin/sh', 'usr/bin/sh', 'bin/bash', 'usr/bin/bash', 'bin/busybox']) {
      expect(byName.has(shell), `${shell} in the image`).toBe(false);
    }
    expect(byName.get('tmp')).toMatchObject({ type: 'directory', mode: 0o1777, uid: 0 });
    expect(byName.get('home/nonroot')).toMatchObject({ type: 'directory', uid: 65532, gid: 65532 });
    expect(
      entries.filter((e) => e.uid !== 0 && !e.name.startsWith('home/nonroot')).map((e) => e.name),
    ).toEqual([]);
    expect(
      entries.filter((e) => (e.mode & 0o022) !== 0 && e.name !== 'tmp/' && e.type !== 'symlink'),
    ).toEqual([]);
    const passwd = await readFile(join(first.staged.dir, 'base/etc/passwd'), 'utf8');
    expect(passwd).toContain('nonroot:x:65532:65532:');
    // The layers hold exactly the staged tree, nothing added or lost on the way.
    expect(entries.map((e) => e.name).sort()).toEqual(await stagedFileList(first.staged));
  });

  it("starts both programs as the manifests run them, with the image's own node and libraries, as 65532", async (ctx) => {
    if (process.getuid?.() !== 0) ctx.skip('needs root for chroot');
    const root = join(work, 'rootfs');
    for (const layer of LAYERS) await run('cp', ['-a', `${join(first.staged.dir, layer)}/.`, root]);
    for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
      const { stdout } = await run(
        'chroot',
        ['--userspec=65532:65532', root, ...imageCommand(name), '--help'],
        {
          // Found on this PATH outside (chroot) and inside (node, in /usr/bin of the image).
          env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
        },
      );
      expect(stdout.startsWith(`kubewatcher-${name}`), stdout).toBe(true);
    }
  });

  it('pushes to a registry and prints REF@sha256:… of what the registry then serves', async () => {
    const reference = `${info.registries.open.host}/kubewatcher/kubewatcher:test`;
    const { stdout } = await run(
      process.execPath,
      [
        join(repoRoot, 'scripts/lib/image-build-cli.ts'),
        '--out',
        join(work, 'pushed'),
        '--push',
        reference,
        '--insecure',
      ],
      { cwd: repoRoot, maxBuffer: 16 << 20 },
    );
    expect(stdout.trim()).toBe(`${reference}@${first.digest}`);
    const served = await run(join(info.binDir, 'crane'), ['digest', '--insecure', reference]);
    expect(served.stdout.trim()).toBe(first.digest);
  });
});

// ---------------------------------------------------------------------------------------------------
// The Dockerfile, read statically.

interface Instruction {
  keyword: string;
  args: string;
}

/** The Dockerfile's stages: instructions with continuation lines joined and comments dropped. */
function dockerfileStages(text: string): Instruction[][] {
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ');
  const stages: Instruction[][] = [];
  for (const line of joined.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const instruction = { keyword: m[1]!, args: m[2]!.trim().replace(/\s+/g, ' ') };
    if (instruction.keyword === 'FROM') stages.push([]);
    stages.at(-1)?.push(instruction);
  }
  return stages;
}

/** Splits `k="v" k2=v2` (LABEL, ENV). */
function pairs(args: string): [string, string][] {
  return [...args.matchAll(/([\w.-]+)=("([^"]*)"|\S+)/g)].map((m) => [m[1]!, m[3] ?? m[2]!]);
}

describe('the Dockerfile', () => {
  it('stages with the same function and copies exactly the staged layers into an empty image', async () => {
    const stages = dockerfileStages(await readFile(join(repoRoot, 'Dockerfile'), 'utf8'));
    const build = stages.find((s) => s[0]!.args.endsWith(' AS build'))!;
    const final = stages.at(-1)!;
    expect(build.map((i) => `${i.keyword} ${i.args}`)).toContain(
      'RUN node scripts/lib/image-build-cli.ts --stage /stage',
    );
    expect(final[0]).toEqual({ keyword: 'FROM', args: 'scratch' });
    // Only COPYs of the staged layer folders add files, in the layers' order.
    const adding = final.filter((i) => ['COPY', 'ADD', 'RUN'].includes(i.keyword));
    expect(adding).toEqual(LAYERS.map((l) => ({ keyword: 'COPY', args: `--from=build /stage/${l}/ /` })));
    // So the Docker image's files are the staged tree: the list the built layers were checked against.
    const dockerFiles = await stagedFileList(first.staged);
    expect(dockerFiles).toContain(imageBlob('poller').slice(1));
  });

  it('configures the image as scripts/build-image does', async () => {
    const final = dockerfileStages(await readFile(join(repoRoot, 'Dockerfile'), 'utf8')).at(-1)!;
    const one = (keyword: string) => {
      const found = final.filter((i) => i.keyword === keyword);
      expect(found, keyword).toHaveLength(1);
      return found[0]!.args;
    };
    const version = /^VERSION=(.+)$/.exec(one('ARG'))![1]!;
    expect(version).toBe(first.staged.version);
    const labels = Object.fromEntries(
      // The Dockerfile's own build argument, substituted as Docker would.
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile placeholder, not a template
      pairs(one('LABEL')).map(([k, v]) => [k, v.replace('${VERSION}', version)]),
    );
    expect({
      User: one('USER'),
      Env: pairs(one('ENV')).map(([k, v]) => `${k}=${v}`),
      Entrypoint: JSON.parse(one('ENTRYPOINT')),
      Cmd: JSON.parse(one('CMD')),
      WorkingDir: one('WORKDIR'),
      Labels: labels,
    }).toEqual(imageRuntimeConfig(version));
  });

  it('sends the build stage every script module the staging step loads (.dockerignore, COPY)', async () => {
    const dockerfile = await readFile(join(repoRoot, 'Dockerfile'), 'utf8');
    const ignore = await readFile(join(repoRoot, '.dockerignore'), 'utf8');
    const loaded = new Set<string>();
    const visit = async (file: string) => {
      if (loaded.has(file)) return;
      loaded.add(file);
      const source = await readFile(join(repoRoot, file), 'utf8');
      // Value imports only: `import type` is erased, and local-cluster.ts is loaded only to push.
      for (const m of source.matchAll(/^import (?!type )[^;]*? from '\.\/([\w-]+\.ts)';/gms)) {
        await visit(`scripts/lib/${m[1]}`);
      }
    };
    await visit('scripts/lib/image-build-cli.ts');
    for (const file of [...loaded, 'scripts/bootstrap.sh', 'rolldown.config.ts']) {
      expect(ignore.split('\n'), `.dockerignore lets ${file} in`).toContain(`!${file}`);
      expect(dockerfile, `the Dockerfile copies ${file}`).toContain(file.split('/').at(-1)!);
    }
  });
});
