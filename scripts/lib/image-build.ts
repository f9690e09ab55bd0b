/**
 * The Kubewatcher image (both programs), built without a container engine:
 *
 * 1. `stageImage` lays out the image's file tree, one folder per layer:
 *    - `base`: the shared libraries Node.js links against (`ldd node`: libc6, libgcc-s1, libstdc++6), CA
 *      certificates and time zones, from Debian packages (`apt-get download` + `dpkg-deb -x`, as
 *      distroless is assembled), the Node.js binary of the npm registry's `node` package at the version
 *      scripts/bootstrap.sh pins, /etc/passwd and /etc/group with `nonroot` (65532), /tmp; no shell, no
 *      package manager;
 *    - `app`: the two programs' start-up snapshots (scripts/lib/programs.ts), built with that node binary,
 *      and their source maps: the production code and nothing else.
 * 2. `writeImageLayout` writes each folder as a layer (sorted entries, one fixed timestamp, root-owned
 *    except the user's home) into an OCI image layout, with a config that runs as 65532:65532.
 *    Same inputs (packages, Node.js, bundles, SOURCE_DATE_EPOCH) → same digest.
 * 3. `buildImage` does both and, given a reference, pushes the layout with crane.
 *
 * The Dockerfile runs the same `stageImage` (image-build-cli.ts --stage) in its build stage and copies
 * the layer folders into `FROM scratch`, with the same config (test/image.test.ts compares).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  rmdir,
  writeFile,
} from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import type { RegistryEndpoint } from './cluster-info.ts';
import { type Descriptor, OCI_MEDIA_TYPES, pushLayout, writeLayoutBlob, writeLayoutIndex } from './images.ts';
import {
  buildStartupSnapshot,
  imageBlob,
  PROGRAMS,
  type ProgramName,
  SNAPSHOT_BLOB,
  SNAPSHOT_SCRIPT,
  SNAPSHOT_SOURCE_MAP,
  snapshotStartArgs,
} from './programs.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Debian packages of the base: what `ldd` lists for node, plus CA certificates and time zones. */
export const BASE_PACKAGES = ['libc6', 'libgcc-s1', 'libstdc++6', 'ca-certificates', 'tzdata'] as const;

/** The runtime user: distroless's `nonroot`, what the manifests' securityContext names. */
export const RUNTIME_UID = 65532;

/** Layers in order, each a folder of the staged tree. */
export const LAYERS = ['base', 'app'] as const;
export type LayerName = (typeof LAYERS)[number];

/**
 * The image's runtime configuration. The manifests choose the program with `command`; without one
 * (`docker run`) the image starts the controller.
 */
export function imageRuntimeConfig(version: string) {
  return {
    User: `${RUNTIME_UID}:${RUNTIME_UID}`,
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production'],
    // node is PID 1 and receives SIGTERM itself (no shell in between); the programs handle it.
    Entrypoint: ['node'],
    // The controller's start-up snapshot, without the manifests' heap flags.
    Cmd: snapshotStartArgs(imageBlob('controller')),
    WorkingDir: '/app',
    Labels: {
      'org.opencontainers.image.title': 'kubewatcher',
      'org.opencontainers.image.description':
        'Keeps Kubernetes workloads on the newest image behind the tags they run',
      'org.opencontainers.image.source': 'https://github.com/kubewatcher/kubewatcher',
      'org.opencontainers.image.licenses': 'Apache-2.0',
      'org.opencontainers.image.version': version,
    },
  };
}

export interface StagedPackage {
  name: string;
  version: string;
  architecture: string;
}

export interface StagedImage {
  /** Folder holding one subfolder per layer (LAYERS). */
  dir: string;
  /** Debian architecture of the packages and of node (amd64, arm64). */
  architecture: string;
  nodeVersion: string;
  packages: StagedPackage[];
  version: string;
}

export interface StageOptions {
  /** Folder to stage into; emptied first. */
  dir: string;
  /** Where downloaded .deb files are kept between builds (default $KUBEWATCHER_CACHE/image/debs). */
  cacheDir?: string;
  /** Where the npm `node` package is installed (default: where scripts/bootstrap.sh installs it). */
  toolchainDir?: string;
  root?: string;
  log?: (line: string) => void;
}

function cacheRoot(): string {
  return (
    process.env.KUBEWATCHER_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'), 'kubewatcher')
  );
}

/** NODE_VERSION as scripts/bootstrap.sh pins it: the one Node.js the project runs on. */
export async function pinnedNodeVersion(root: string = repoRoot): Promise<string> {
  const script = await readFile(join(root, 'scripts/bootstrap.sh'), 'utf8');
  const version = /^NODE_VERSION=(\d+\.\d+\.\d+)$/m.exec(script)?.[1];
  if (!version) throw new Error('scripts/bootstrap.sh: no NODE_VERSION=X.Y.Z line');
  return version;
}

async function tool(command: string, args: string[], what: string): Promise<string> {
  try {
    return (await run(command, args, { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error(
        `${what} needs ${command}: build the image on Debian or Ubuntu (apt-get, dpkg-deb), or with the Dockerfile`,
      );
    }
    throw new Error(`${what}: ${command} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * The candidate version and architecture apt knows for each package, plus the `gcc-N-base` that
 * libgcc-s1 and libstdc++6 depend on: it holds their copyright file (their doc folders link to its).
 */
async function resolvePackages(): Promise<StagedPackage[]> {
  const out: StagedPackage[] = [];
  const names: string[] = [...BASE_PACKAGES];
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const show = await tool('apt-cache', ['show', '--no-all-versions', name], `package ${name}`);
    const field = (f: string) => new RegExp(`^${f}: (.+)$`, 'm').exec(show)?.[1]?.trim();
    const version = field('Version');
    const architecture = field('Architecture');
    if (!version || !architecture) {
      throw new Error(`package ${name}: apt-cache show gave no Version/Architecture (run apt-get update)`);
    }
    out.push({ name, version, architecture });
    for (const base of field('Depends')?.match(/\bgcc-\d+-base\b/g) ?? []) {
      if (!names.includes(base)) names.push(base);
    }
  }
  return out;
}

/** apt's file name for a package version (an epoch's `:` is written `%3a`). */
const debFile = (p: StagedPackage) => `${p.name}_${p.version.replace(':', '%3a')}_${p.architecture}.deb`;

/** The .deb of each package, from the cache or downloaded into it with apt-get. */
async function fetchDebs(packages: StagedPackage[], cacheDir: string, log: (l: string) => void) {
  await mkdir(cacheDir, { recursive: true });
  const missing = packages.filter((p) => !existsSync(join(cacheDir, debFile(p))));
  if (missing.length > 0) {
    log(`downloading ${missing.map((p) => `${p.name}=${p.version}`).join(' ')}`);
    // apt-get download writes into the working directory.
    try {
      await run('apt-get', ['download', ...missing.map((p) => `${p.name}=${p.version}`)], {
        cwd: cacheDir,
        encoding: 'utf8',
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      throw new Error(
        `apt-get download failed: ${e.code === 'ENOENT' ? 'apt-get not found' : e.stderr?.trim()}`,
      );
    }
  }
  for (const p of packages) {
    if (!existsSync(join(cacheDir, debFile(p)))) throw new Error(`apt-get download gave no ${debFile(p)}`);
  }
  return packages.map((p) => join(cacheDir, debFile(p)));
}

/**
 * What of a package's files the image does not need: documentation except the copyright files (the
 * licences), manual pages, lintian overrides, gdb/python helpers, the certificate update script (no shell
 * to run it; the bundle it would write is generated below), and glibc's iconv modules (Node.js converts
 * with ICU, never iconv).
 */
export function droppedFromPackage(path: string): boolean {
  if (/^usr\/share\/doc\/[^/]+\/copyright$/.test(path)) return false;
  return (
    /^usr\/share\/(doc|man|info|lintian|gcc|gdb)(\/|$)/.test(path) ||
    /^usr\/sbin(\/|$)/.test(path) ||
    /^etc\/ca-certificates(\/|$)/.test(path) ||
    /^usr\/lib\/[^/]+\/gconv(\/|$)/.test(path)
  );
}

async function walk(dir: string, base: string = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => cmp(a.name, b.name))) {
    const path = join(dir, entry.name);
    out.push(relative(base, path));
    if (entry.isDirectory()) out.push(...(await walk(path, base)));
  }
  return out;
}

/** Byte order, not locale order: the same on every machine. */
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The npm registry's `node` binary at `version`, installed the way scripts/bootstrap.sh does. */
async function nodeBinary(version: string, toolchainDir: string, log: (l: string) => void) {
  const prefix = join(toolchainDir, `node-${version}`);
  const binary = join(prefix, 'node_modules/node/bin/node');
  if (!existsSync(binary)) {
    log(`installing Node.js ${version} from the npm registry into ${prefix}`);
    await mkdir(prefix, { recursive: true });
    await tool(
      'npm',
      ['install', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', prefix, `node@${version}`],
      'the Node.js binary',
    );
  }
  const reported = (await tool(binary, ['--version'], 'the Node.js binary')).trim();
  if (reported !== `v${version}`) throw new Error(`${binary} is ${reported}, expected v${version}`);
  // The npm `node` package copies the binary of its platform package, which carries Node.js's licence.
  const platform = join(prefix, 'node_modules/node/node_modules');
  const licence = existsSync(platform)
    ? (await readdir(platform)).map((p) => join(platform, p, 'LICENSE')).find((f) => existsSync(f))
    : undefined;
  if (!licence) throw new Error(`no LICENSE of Node.js's platform package under ${platform}`);
  return { binary, license: licence };
}

const PASSWD = `root:x:0:0:root:/root:/sbin/nologin
nonroot:x:${RUNTIME_UID}:${RUNTIME_UID}:nonroot:/home/nonroot:/sbin/nologin
`;
const GROUP = `root:x:0:
nonroot:x:${RUNTIME_UID}:
`;
// /etc/hosts first (Kubernetes writes the pod's own name there), then DNS.
const NSSWITCH = `passwd: files
group: files
hosts: files dns
`;

/**
 * `/app/package.json`, in the image's working directory. yargs looks for a package.json from the working
 * directory up at every start (to guess a version); finding none, it throws and catches an AssertionError
 * whose stack trace, once formatted, loads the bundle's source map: +0.15 CPU s and +85 MB on every
 * poller run. This one names the application and its version.
 */
export function appPackageJson(version: string): string {
  return `${JSON.stringify(
    {
      name: 'kubewatcher',
      version,
      private: true,
      description:
        'Kubewatcher controller (/app/controller/main.blob) and poller (/app/poller/main.blob), V8 start-up snapshots',
      license: 'Apache-2.0',
      type: 'module',
    },
    null,
    2,
  )}\n`;
}

/**
 * A working directory for the bundles laid out as the image's `/app`, for the benchmarks: `dir/app`
 * holding the image's package.json (see appPackageJson for why a start needs one). Returns its path.
 */
export function imageWorkingDir(dir: string): string {
  const cwd = join(dir, 'app');
  mkdirSync(cwd, { recursive: true });
  writeFileSync(join(cwd, 'package.json'), appPackageJson('0.0.0-bench'));
  return cwd;
}

/** Lays out the image's file tree in `options.dir`, one folder per layer. Bundles must be built. */
export async function stageImage(options: StageOptions): Promise<StagedImage> {
  const root = options.root ?? repoRoot;
  const log = options.log ?? (() => {});
  const dir = options.dir;
  const base = join(dir, 'base');
  const app = join(dir, 'app');
  await rm(dir, { recursive: true, force: true });
  await mkdir(base, { recursive: true });
  await mkdir(app, { recursive: true });

  for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
    const bundle = join(root, PROGRAMS[name].bundleDir);
    if (!existsSync(join(bundle, SNAPSHOT_SCRIPT))) {
      throw new Error(`${bundle}/${SNAPSHOT_SCRIPT} is missing: build the bundles first (pnpm -r run build)`);
    }
  }

  // base: Debian packages, filtered.
  const packages = await resolvePackages();
  const architecture = (await tool('dpkg', ['--print-architecture'], 'the architecture')).trim();
  const debs = await fetchDebs(packages, options.cacheDir ?? join(cacheRoot(), 'image', 'debs'), log);
  const status: string[] = [];
  for (const [i, deb] of debs.entries()) {
    await tool('dpkg-deb', ['-x', deb, base], `unpacking ${deb}`);
    // Scanners (trivy, grype) read what is installed from here, as in distroless.
    status.push(await tool('dpkg-deb', ['-f', deb], `reading ${deb}`));
    await mkdir(join(base, 'var/lib/dpkg/status.d'), { recursive: true });
    await writeFile(join(base, 'var/lib/dpkg/status.d', packages[i]!.name), status.at(-1)!);
  }
  // Dropped files first, then the folders they leave empty (deepest first): a folder of dropped
  // documentation may still hold the copyright file that is kept.
  const unpacked = await walk(base);
  for (const path of unpacked) {
    if (droppedFromPackage(path) && !(await lstat(join(base, path))).isDirectory())
      await rm(join(base, path));
  }
  for (const path of unpacked.reverse()) {
    const abs = join(base, path);
    if (droppedFromPackage(path) && existsSync(abs) && (await readdir(abs)).length === 0) await rmdir(abs);
  }
  // What update-ca-certificates would write: every Mozilla certificate, in name order.
  const mozilla = join(base, 'usr/share/ca-certificates/mozilla');
  const certs = (await readdir(mozilla)).filter((f) => f.endsWith('.crt')).sort(cmp);
  if (certs.length === 0) throw new Error('ca-certificates: no certificates in usr/share/ca-certificates');
  await mkdir(join(base, 'etc/ssl/certs'), { recursive: true });
  await writeFile(
    join(base, 'etc/ssl/certs/ca-certificates.crt'),
    (await Promise.all(certs.map((c) => readFile(join(mozilla, c), 'utf8')))).join(''),
  );

  // base: Node.js, users, scratch space.
  const nodeVersion = await pinnedNodeVersion(root);
  const node = await nodeBinary(nodeVersion, options.toolchainDir ?? join(cacheRoot(), 'toolchain'), log);
  await mkdir(join(base, 'usr/bin'), { recursive: true });
  await copyFile(node.binary, join(base, 'usr/bin/node'));
  await chmod(join(base, 'usr/bin/node'), 0o755);
  await mkdir(join(base, 'usr/share/doc/nodejs'), { recursive: true });
  await copyFile(node.license, join(base, 'usr/share/doc/nodejs/copyright'));
  await writeFile(join(base, 'etc/passwd'), PASSWD);
  await writeFile(join(base, 'etc/group'), GROUP);
  await writeFile(join(base, 'etc/nsswitch.conf'), NSSWITCH);
  await mkdir(join(base, 'home/nonroot'), { recursive: true });
  await mkdir(join(base, 'tmp'), { recursive: true });
  await chmod(join(base, 'tmp'), 0o1777);
  // The layer records the owner itself (layerOwner); on disk it matters for the Dockerfile's COPY.
  if (process.getuid?.() === 0) await chown(join(base, 'home/nonroot'), RUNTIME_UID, RUNTIME_UID);

  // app: each program's start-up snapshot, built with the image's own node (a blob loads only in the
  // binary that built it), and the source map its stack traces are read through. The script the blob
  // was built from is in the blob; the ES module bundle is not shipped.
  const building = join(dir, 'snapshots');
  for (const name of Object.keys(PROGRAMS) as ProgramName[]) {
    const { bundleDir, imageDir } = PROGRAMS[name];
    const target = join(app, imageDir);
    await mkdir(join(building, name), { recursive: true });
    await copyFile(join(root, bundleDir, SNAPSHOT_SCRIPT), join(building, name, SNAPSHOT_SCRIPT));
    const blob = await buildStartupSnapshot(join(building, name), join(base, 'usr/bin/node'));
    await mkdir(target, { recursive: true });
    await copyFile(blob, join(target, SNAPSHOT_BLOB));
    await copyFile(join(root, bundleDir, SNAPSHOT_SOURCE_MAP), join(target, SNAPSHOT_SOURCE_MAP));
    for (const file of [SNAPSHOT_BLOB, SNAPSHOT_SOURCE_MAP]) await chmod(join(target, file), 0o644);
  }
  await rm(building, { recursive: true, force: true });
  const { version } = JSON.parse(await readFile(join(root, 'packages/controller/package.json'), 'utf8')) as {
    version: string;
  };
  await writeFile(join(app, 'app/package.json'), appPackageJson(version));
  await normaliseModes(dir);

  return { dir, architecture, nodeVersion, packages, version };
}

/** Directories 0755 (but /tmp), files keep only their permission bits minus group/other write. */
async function normaliseModes(dir: string): Promise<void> {
  for (const path of await walk(dir)) {
    const abs = join(dir, path);
    const st = await lstat(abs);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) {
      if (!/^[^/]+\/tmp$/.test(path)) await chmod(abs, 0o755);
    } else await chmod(abs, st.mode & 0o755);
  }
}

/** Every path of the image's file tree (directories end with `/`), sorted: what both builds must agree on. */
export async function stagedFileList(staged: { dir: string }): Promise<string[]> {
  const paths = new Set<string>();
  for (const layer of LAYERS) {
    const layerDir = join(staged.dir, layer);
    for (const path of await walk(layerDir)) {
      const st = await lstat(join(layerDir, path));
      paths.add(st.isDirectory() ? `${path}/` : path);
    }
  }
  return [...paths].sort(cmp);
}

/** Who owns an entry in the layer: root, except the runtime user's home. */
export function layerOwner(path: string): number {
  return path === 'home/nonroot' || path.startsWith('home/nonroot/') ? RUNTIME_UID : 0;
}

/** The seconds every entry and the config are dated: SOURCE_DATE_EPOCH when set, else 0. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw)) throw new Error(`SOURCE_DATE_EPOCH: "${raw}" is not a number of seconds`);
  return Number(raw);
}

/** A stream that hashes (sha256) and counts what passes through it. */
class Digest extends Transform {
  readonly #hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#hash.update(chunk);
    this.size += chunk.length;
    done(null, chunk);
  }
  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

/** Writes one folder as a gzipped tar layer blob; returns its descriptor and its diff ID. */
async function writeLayer(layerDir: string, layoutDir: string, mtime: Date) {
  const tar = pack();
  const uncompressed = new Digest();
  const compressed = new Digest();
  const scratch = join(layoutDir, 'blobs', 'layer.partial');
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  const written = pipeline(tar, uncompressed, createGzip(), compressed, createWriteStream(scratch));
  for (const path of await walk(layerDir)) {
    const abs = join(layerDir, path);
    const st = await lstat(abs);
    const owner = layerOwner(path);
    const common = {
      name: path,
      mtime,
      uid: owner,
      gid: owner,
      uname: '',
      gname: '',
      mode: st.mode & 0o7777,
    };
    if (st.isDirectory()) {
      await entry(tar, { ...common, name: `${path}/`, type: 'directory' });
    } else if (st.isSymbolicLink()) {
      await entry(tar, { ...common, type: 'symlink', linkname: await readlink(abs) });
    } else if (st.isFile()) {
      await new Promise<void>((done, fail) => {
        const sink = tar.entry({ ...common, type: 'file', size: st.size }, (err) =>
          err ? fail(err) : done(),
        );
        createReadStream(abs).on('error', fail).pipe(sink);
      });
    } else {
      throw new Error(`${abs}: only files, folders and symlinks go into a layer`);
    }
  }
  tar.finalize();
  await written;
  const digest = compressed.digest();
  await rename(scratch, join(layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length)));
  const descriptor: Descriptor = { mediaType: OCI_MEDIA_TYPES.layer, digest, size: compressed.size };
  return { descriptor, diffId: uncompressed.digest() };
}

function entry(tar: ReturnType<typeof pack>, header: Parameters<ReturnType<typeof pack>['entry']>[0]) {
  return new Promise<void>((done, fail) => tar.entry(header, '', (err) => (err ? fail(err) : done())));
}

/** Debian's architecture names are OCI's, except for the 32-bit ARM and x86 ones Node.js does not ship. */
function ociArchitecture(debian: string): string {
  if (!['amd64', 'arm64', 'ppc64el', 's390x'].includes(debian)) {
    throw new Error(`architecture ${debian}: Node.js is built for amd64, arm64, ppc64el and s390x`);
  }
  return debian === 'ppc64el' ? 'ppc64le' : debian;
}

export interface WrittenImage {
  layoutDir: string;
  /** The manifest's digest: what `REF@sha256:…` names. */
  digest: string;
  config: Record<string, unknown>;
}

/** Writes the staged tree as an OCI image layout in `layoutDir` (emptied first). */
export async function writeImageLayout(staged: StagedImage, layoutDir: string): Promise<WrittenImage> {
  await rm(layoutDir, { recursive: true, force: true });
  const seconds = sourceDateEpoch();
  const mtime = new Date(seconds * 1000);
  const created = mtime.toISOString().replace('.000Z', 'Z');
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const layer of LAYERS) {
    const { descriptor, diffId } = await writeLayer(join(staged.dir, layer), layoutDir, mtime);
    layers.push(descriptor);
    diffIds.push(diffId);
  }
  const packages = staged.packages.map((p) => `${p.name}=${p.version}`).join(' ');
  const config = {
    created,
    architecture: ociArchitecture(staged.architecture),
    os: 'linux',
    config: imageRuntimeConfig(staged.version),
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: [
      { created, created_by: `scripts/build-image: Debian ${packages}; Node.js ${staged.nodeVersion}` },
      { created, created_by: 'scripts/build-image: the controller and poller bundles' },
    ],
  };
  const json = (value: unknown) => Buffer.from(JSON.stringify(value));
  const configBlob = await writeLayoutBlob(layoutDir, OCI_MEDIA_TYPES.config, json(config));
  const manifest = await writeLayoutBlob(
    layoutDir,
    OCI_MEDIA_TYPES.manifest,
    json({ schemaVersion: 2, mediaType: OCI_MEDIA_TYPES.manifest, config: configBlob, layers }),
  );
  await writeLayoutIndex(layoutDir, manifest, staged.version);
  return { layoutDir, digest: manifest.digest, config };
}

export interface BuildImageOptions {
  /** Working folder: `stage/` (the file tree) and `oci/` (the image layout). Default .local/image. */
  outDir?: string;
  /** Push to this `host/repository:tag` with crane. */
  push?: string;
  /** Folder holding crane (default: the one scripts/build-binaries.sh builds). */
  binDir?: string;
  /** Credentials and CA of the registry pushed to (e.g. a local environment's registry). */
  endpoint?: RegistryEndpoint;
  insecure?: boolean;
  cacheDir?: string;
  log?: (line: string) => void;
}

export interface BuiltImage extends WrittenImage {
  staged: StagedImage;
  /** `REF@sha256:…` when pushed. */
  pushed?: string;
}

/** Stages, writes and (with `push`) pushes the image. The bundles must be built (pnpm -r run build). */
export async function buildImage(options: BuildImageOptions = {}): Promise<BuiltImage> {
  const outDir = options.outDir ?? join(repoRoot, '.local', 'image');
  const log = options.log ?? (() => {});
  const staged = await stageImage({
    dir: join(outDir, 'stage'),
    log,
    ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
  });
  log(`writing the OCI image layout (${LAYERS.join(', ')})`);
  const written = await writeImageLayout(staged, join(outDir, 'oci'));
  if (!options.push) return { ...written, staged };
  const reference = options.push;
  if (reference.includes('@'))
    throw new Error(`--push: "${reference}" must be host/repository:tag, no digest`);
  const binDir = options.binDir ?? (await craneDir());
  log(`pushing to ${reference}`);
  await pushLayout({
    layoutDir: written.layoutDir,
    reference,
    digest: written.digest,
    binDir,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.insecure ? { insecure: true } : {}),
  });
  return { ...written, staged, pushed: `${reference}@${written.digest}` };
}

/** The folder of the crane scripts/build-binaries.sh builds (built first when missing). */
async function craneDir(): Promise<string> {
  const dir = (
    await tool('bash', [join(repoRoot, 'scripts/build-binaries.sh'), '--print-dir'], 'crane')
  ).trim();
  if (existsSync(join(dir, 'crane'))) return dir;
  const { resolveBinDir } = await import('./local-cluster.ts');
  return resolveBinDir();
}
