/**
 * Pushes small test images with random content to the local registries (or any registry), so every push
 * moves the tag to a new digest. The image is written as an OCI image layout and pushed with one
 * `crane push`: children by digest first, the tag last, so a watcher never sees a half-pushed
 * multi-arch tag, and each platform is recorded exactly (os/architecture in config and index).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { LocalClusterInfo, RegistryEndpoint } from './cluster-info.ts';

const run = promisify(execFile);

export type RegistryName = keyof LocalClusterInfo['registries'];

export interface PushImageOptions {
  /** A registry of `info` by name (default `open`), or any endpoint. */
  registry?: RegistryName | RegistryEndpoint;
  info?: LocalClusterInfo;
  /** Repository path inside the registry, e.g. `team/web`. */
  repository: string;
  tag: string;
  /** Push an index of linux/amd64 and linux/arm64 images instead of one linux/amd64 image. */
  multiArch?: boolean;
  /** Media types: `oci` (default) or `docker` (schema 2 manifest / manifest list). */
  format?: 'oci' | 'docker';
  /** Folder holding `crane` (default `info.binDir`). */
  binDir?: string;
}

export interface PushedImage {
  /** `host/repository:tag`. */
  reference: string;
  /** Digest the tag now points at (the index digest for a multi-arch push). */
  digest: string;
  mediaType: string;
  /** The platform images: one for a single-arch push, one per platform for an index. */
  platforms: { platform: string; digest: string }[];
}

const mediaTypes = {
  oci: {
    index: 'application/vnd.oci.image.index.v1+json',
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  },
  docker: {
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  },
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
}

export const OCI_MEDIA_TYPES = mediaTypes.oci;

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Writes `data` as a blob of the OCI image layout in `layoutDir`; returns its descriptor. */
export async function writeLayoutBlob(
  layoutDir: string,
  mediaType: string,
  data: Buffer,
): Promise<Descriptor> {
  const digest = sha256(data);
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
  return { mediaType, digest, size: data.length };
}

/** Writes `oci-layout` and an `index.json` that names `top` (what crane pushes) with the tag `refName`. */
export async function writeLayoutIndex(layoutDir: string, top: Descriptor, refName: string): Promise<void> {
  const entry = { mediaType: top.mediaType, digest: top.digest, size: top.size };
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layoutDir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: mediaTypes.oci.index,
      manifests: [{ ...entry, annotations: { 'org.opencontainers.image.ref.name': refName } }],
    }),
  );
}

/** One entry of a layer: a regular file, a folder or a symbolic link (owned by root). */
export type TarEntry =
  | { type: 'file'; name: string; content: Buffer; mode?: number }
  | { type: 'dir'; name: string; mode?: number }
  | { type: 'symlink'; name: string; target: string };

/** A tar archive (ustar) of `entries`, in the order given, with zero timestamps (same input, same bytes). */
export function tarArchive(entries: TarEntry[]): Buffer {
  const octal = (value: number, width: number) => `${value.toString(8).padStart(width - 1, '0')}\0`;
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const header = Buffer.alloc(512);
    const content = entry.type === 'file' ? entry.content : Buffer.alloc(0);
    const defaultMode = entry.type === 'file' ? 0o644 : 0o755;
    if (Buffer.byteLength(entry.name) > 100)
      throw new Error(`tar entry name longer than 100 bytes: ${entry.name}`);
    header.write(entry.name, 0, 100, 'utf8');
    header.write(octal(entry.type === 'symlink' ? 0o777 : (entry.mode ?? defaultMode), 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(content.length, 12), 124);
    header.write(octal(0, 12), 136);
    header.write(' '.repeat(8), 148); // the checksum counts its own field as spaces
    header.write({ file: '0', dir: '5', symlink: '2' }[entry.type], 156);
    if (entry.type === 'symlink') header.write(entry.target, 157, 100, 'utf8');
    header.write('ustar\0', 257);
    header.write('00', 263);
    const checksum = header.reduce((sum, byte) => sum + byte, 0);
    header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148);
    parts.push(header, content, Buffer.alloc((512 - (content.length % 512)) % 512));
  }
  return Buffer.concat([...parts, Buffer.alloc(1024)]);
}

/** A tar archive holding one regular file. */
function tarWithFile(name: string, content: Buffer): Buffer {
  return tarArchive([{ type: 'file', name, content }]);
}

/** One platform's image of a layout: its single layer (uncompressed tar) and what its config says. */
interface PlatformImage {
  architecture: string;
  layer: Buffer;
  /** The config's `config` section (Entrypoint, Cmd, Env, Labels...). */
  config: Record<string, unknown>;
}

/** Writes an OCI image layout whose index.json names the image (or index) to push; returns it. */
async function writeLayout(dir: string, tag: string, images: PlatformImage[], format: 'oci' | 'docker') {
  const types = mediaTypes[format];
  const blob = (mediaType: string, data: Buffer) => writeLayoutBlob(dir, mediaType, data);
  const json = (value: unknown) => Buffer.from(JSON.stringify(value));

  const image = async ({
    architecture,
    layer: tar,
    config: imageConfig,
  }: PlatformImage): Promise<Descriptor> => {
    const layer = await blob(types.layer, gzipSync(tar));
    const created = new Date().toISOString();
    const config = await blob(
      types.config,
      json({
        architecture,
        os: 'linux',
        created,
        config: imageConfig,
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
        history: [{ created, created_by: 'kubewatcher scripts/lib/images.ts' }],
      }),
    );
    const manifest = await blob(
      types.manifest,
      json({ schemaVersion: 2, mediaType: types.manifest, config, layers: [layer] }),
    );
    return { ...manifest, platform: { os: 'linux', architecture } };
  };

  const platforms = await Promise.all(images.map(image));
  const top =
    images.length > 1
      ? await blob(types.index, json({ schemaVersion: 2, mediaType: types.index, manifests: platforms }))
      : (platforms[0] as Descriptor);
  await writeLayoutIndex(dir, top, tag);
  return {
    top,
    platforms: platforms.map((p) => ({ platform: `linux/${p.platform?.architecture}`, digest: p.digest })),
  };
}

function resolveEndpoint(options: PushImageOptions): RegistryEndpoint {
  const registry = options.registry ?? 'open';
  if (typeof registry !== 'string') return registry;
  if (!options.info) throw new Error(`pushImage: registry '${registry}' given by name needs 'info'`);
  return options.info.registries[registry];
}

/** Writes the layout of `images` and pushes it with crane to `registry/repository:tag`. */
async function pushImages(options: PushImageOptions, images: PlatformImage[]): Promise<PushedImage> {
  const endpoint = resolveEndpoint(options);
  const binDir = options.binDir ?? options.info?.binDir;
  if (!binDir) throw new Error("pushImage: pass 'binDir' or 'info' to find crane");
  const reference = `${endpoint.host}/${options.repository}:${options.tag}`;
  const work = await mkdtemp(join(tmpdir(), 'kubewatcher-push-'));
  try {
    const { top, platforms } = await writeLayout(
      join(work, 'layout'),
      options.tag,
      images,
      options.format ?? 'oci',
    );
    await pushLayout({ layoutDir: join(work, 'layout'), reference, digest: top.digest, binDir, endpoint });
    return { reference, digest: top.digest, mediaType: top.mediaType, platforms };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface PushLayoutOptions {
  /** An OCI image layout whose index.json names one image or index. */
  layoutDir: string;
  /** `host/repository:tag` to push to. */
  reference: string;
  /** The digest the layout's image has: the push fails when crane reports another. */
  digest: string;
  /** Folder holding `crane`. */
  binDir: string;
  /**
   * The registry's credentials and CA (a local environment's registry): crane then sees only these.
   * Without it crane uses the caller's own docker config (`crane auth login`, `docker login`).
   */
  endpoint?: RegistryEndpoint;
  /** Plain HTTP (and no TLS verification) to the registry; implied by an `http://` endpoint. */
  insecure?: boolean;
}

/** `crane push` of an OCI image layout: children by digest first, the tag last. */
export async function pushLayout(options: PushLayoutOptions): Promise<void> {
  const { endpoint, reference } = options;
  const work = await mkdtemp(join(tmpdir(), 'kubewatcher-crane-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (endpoint) {
      // A private docker config: only these credentials, never the user's.
      const auths: Record<string, { auth: string }> = {};
      if (endpoint.username !== undefined) {
        auths[endpoint.host] = {
          auth: Buffer.from(`${endpoint.username}:${endpoint.password ?? ''}`).toString('base64'),
        };
      }
      await writeFile(join(work, 'config.json'), JSON.stringify({ auths }), { mode: 0o600 });
      env.DOCKER_CONFIG = work;
      if (endpoint.caFile) env.SSL_CERT_FILE = endpoint.caFile;
    }
    // --insecure also turns TLS verification off, so only plain-HTTP registries get it.
    const insecure = options.insecure || endpoint?.url.startsWith('http://') ? ['--insecure'] : [];
    let stdout: string;
    try {
      ({ stdout } = await run(
        join(options.binDir, 'crane'),
        ['push', ...insecure, options.layoutDir, reference],
        {
          env,
          maxBuffer: 16 << 20,
        },
      ));
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`crane push to ${reference} failed: ${e.stderr?.trim() || e.message}`);
    }
    const pushed = stdout.trim().split('@')[1];
    if (pushed !== options.digest) {
      throw new Error(`crane pushed ${reference} as ${pushed}, expected ${options.digest}`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Pushes a fresh random image (one file, no program) to `registry/repository:tag`; returns what was pushed. */
export async function pushTestImage(options: PushImageOptions): Promise<PushedImage> {
  const architectures = options.multiArch ? ['amd64', 'arm64'] : ['amd64'];
  return pushImages(
    options,
    architectures.map((architecture) => ({
      architecture,
      layer: tarWithFile(
        'kubewatcher-test-image',
        Buffer.from(`linux/${architecture} ${randomBytes(32).toString('hex')}\n`),
      ),
      config: { Labels: { 'io.kubewatcher.test-image': 'true' } },
    })),
  );
}

/** Pushes a fresh random image to `registry/repository:tag` and returns the digest the tag points at. */
export async function pushImage(options: PushImageOptions): Promise<string> {
  return (await pushTestImage(options)).digest;
}

/** Where Debian's busybox-static puts its binary (a static build: it runs in an image with nothing else). */
export const BUSYBOX_STATIC = '/bin/busybox';
/** Path of the content file inside a busybox image. */
export const BUSYBOX_CONTENT_FILE = '/kubewatcher/content';
const BUSYBOX_APPLETS = ['sh', 'cat', 'echo', 'ls', 'sleep', 'true', 'false', 'id', 'env'];

export interface BusyboxImageOptions extends Omit<PushImageOptions, 'multiArch'> {
  /** Written to /kubewatcher/content (default: a random line, so each push is a new digest). */
  content?: string;
  /** The image's Entrypoint (default: print the content file, then sleep until SIGTERM). */
  entrypoint?: string[];
  /** busybox binary to copy in (default /bin/busybox). */
  busybox?: string;
}

/**
 * Pushes a runnable linux/amd64 image of one layer: the host's static busybox as /bin/busybox with a few
 * applet links (/bin/sh, /bin/cat, ...), and a content file. By default it prints the content and sleeps,
 * exiting at once on SIGTERM (a plain `sleep` as PID 1 ignores it and would wait out the grace period).
 */
export async function pushBusyboxImage(
  options: BusyboxImageOptions,
): Promise<PushedImage & { content: string }> {
  const busyboxPath = options.busybox ?? BUSYBOX_STATIC;
  let busybox: Buffer;
  try {
    busybox = await readFile(busyboxPath);
  } catch (err) {
    throw new Error(
      `pushBusyboxImage: cannot read ${busyboxPath} (Debian package busybox-static): ${(err as Error).message}`,
    );
  }
  const content = options.content ?? `kubewatcher ${randomBytes(8).toString('hex')}\n`;
  const entrypoint = options.entrypoint ?? [
    '/bin/busybox',
    'sh',
    '-c',
    `trap 'exit 0' TERM INT; cat ${BUSYBOX_CONTENT_FILE}; while :; do sleep 3600 & wait $!; done`,
  ];
  const layer = tarArchive([
    { type: 'dir', name: 'bin/' },
    { type: 'file', name: 'bin/busybox', content: busybox, mode: 0o755 },
    ...BUSYBOX_APPLETS.map((applet) => ({
      type: 'symlink' as const,
      name: `bin/${applet}`,
      target: 'busybox',
    })),
    { type: 'dir', name: 'kubewatcher/' },
    { type: 'file', name: BUSYBOX_CONTENT_FILE.slice(1), content: Buffer.from(content) },
    { type: 'dir', name: 'tmp/', mode: 0o1777 },
  ]);
  const pushed = await pushImages(options, [
    {
      architecture: 'amd64',
      layer,
      config: {
        Entrypoint: entrypoint,
        Env: ['PATH=/bin'],
        Labels: { 'io.kubewatcher.test-image': 'true' },
      },
    },
  ]);
  return { ...pushed, content };
}
