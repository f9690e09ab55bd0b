/**
 * `scripts/push-image`: pushes a small random test image to a registry of the running local environment
 * and prints the digest the tag now points at.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { LocalClusterInfo } from './cluster-info.ts';
import { pushBusyboxImage, pushTestImage, type RegistryName } from './images.ts';

const usage = `Usage: scripts/push-image [options] [HOST/]REPOSITORY:TAG

Pushes a random image (new content, so a new digest, every time) and prints its digest.
HOST, when given, must be one of the environment's registries (e.g. "$KW_REGISTRY_BASIC/team/app:v1").

Options:
  --registry open|basic|token   registry to push to when the reference has no host (default: open)
  --multi-arch                  push an index of linux/amd64 and linux/arm64 images
  --docker                      Docker media types (manifest list / schema 2) instead of OCI
  --runnable TEXT               a runnable linux/amd64 image instead (static busybox, for the real node):
                                its container prints TEXT, then sleeps until stopped
  --json                        print reference, digest, media type and platform digests as JSON
  --cluster FILE                environment description (default: .local/cluster.json)`;

const registryNames = ['open', 'basic', 'token'] as const;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      registry: { type: 'string' },
      'multi-arch': { type: 'boolean', default: false },
      docker: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      runnable: { type: 'string' },
      cluster: {
        type: 'string',
        default: join(fileURLToPath(new URL('../..', import.meta.url)), '.local', 'cluster.json'),
      },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length !== 1) {
    console.error(usage);
    return values.help ? 0 : 2;
  }
  let info: LocalClusterInfo;
  try {
    info = JSON.parse(await readFile(values.cluster, 'utf8')) as LocalClusterInfo;
  } catch {
    console.error(
      `push-image: cannot read ${values.cluster}: start the environment with scripts/local-cluster up`,
    );
    return 1;
  }
  let reference = positionals[0] ?? '';
  let registry: RegistryName | undefined;
  const slash = reference.indexOf('/');
  const host = slash > 0 ? reference.slice(0, slash) : '';
  if (/[.:]|^localhost$/.test(host)) {
    registry = registryNames.find((n) => info.registries[n].host === host);
    if (!registry) {
      const known = registryNames.map((n) => `${n} ${info.registries[n].host}`).join(', ');
      console.error(`push-image: ${host} is not a registry of the local environment (${known})`);
      return 2;
    }
    reference = reference.slice(slash + 1);
  }
  if (values.registry !== undefined) {
    if (!registryNames.includes(values.registry as RegistryName)) {
      console.error(`push-image: --registry must be one of ${registryNames.join(', ')}`);
      return 2;
    }
    if (registry && registry !== values.registry) {
      console.error(
        `push-image: the reference names registry ${registry} but --registry says ${values.registry}`,
      );
      return 2;
    }
    registry = values.registry as RegistryName;
  }
  const colon = reference.lastIndexOf(':');
  if (colon <= 0 || reference.slice(colon).includes('/')) {
    console.error(`push-image: '${positionals[0]}' needs a tag (REPOSITORY:TAG)`);
    return 2;
  }
  if (values.runnable !== undefined && values['multi-arch']) {
    console.error('push-image: --runnable pushes one linux/amd64 image; it takes no --multi-arch');
    return 2;
  }
  const target = {
    info,
    registry: registry ?? 'open',
    repository: reference.slice(0, colon),
    tag: reference.slice(colon + 1),
    format: values.docker ? ('docker' as const) : ('oci' as const),
  };
  const pushed =
    values.runnable !== undefined
      ? await pushBusyboxImage({ ...target, content: `${values.runnable}\n` })
      : await pushTestImage({ ...target, multiArch: values['multi-arch'] });
  console.log(values.json ? JSON.stringify(pushed, null, 2) : pushed.digest);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`push-image: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
