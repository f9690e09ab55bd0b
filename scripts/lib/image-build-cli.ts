/**
 * `scripts/build-image`: builds the Kubewatcher image without a container engine (scripts/lib/image-build.ts)
 * and, with --push, pushes it and prints `REF@sha256:…`. `--stage DIR` only lays out the file tree (the
 * Dockerfile's build stage runs that).
 */
import { parseArgs } from 'node:util';
import { buildImage, stageImage } from './image-build.ts';

const usage = `Usage: scripts/build-image [--push HOST/REPOSITORY:TAG] [--insecure] [--out DIR]
       scripts/build-image --stage DIR

Builds the Kubewatcher image (controller and poller) from this checkout, without Docker: Debian
packages for the base, Node.js from the npm registry, the bundles of \`pnpm -r run build\`; user 65532.
The same checkout and packages give the same digest (SOURCE_DATE_EPOCH dates the files, default 0).

Options:
  --push REF     push the image with crane (your docker/crane credentials) and print REF@sha256:…
  --insecure     push over plain HTTP without TLS verification (a local registry)
  --out DIR      working folder: DIR/stage (file tree), DIR/oci (OCI image layout); default .local/image
  --stage DIR    only lay out the image's file tree in DIR/base and DIR/app (the Dockerfile does this)`;

async function main(): Promise<number> {
  let values: { push?: string; insecure?: boolean; out?: string; stage?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        push: { type: 'string' },
        insecure: { type: 'boolean', default: false },
        out: { type: 'string' },
        stage: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`build-image: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const log = (line: string) => process.stderr.write(`build-image: ${line}\n`);
  if (values.stage) {
    if (values.push || values.out) {
      process.stderr.write('build-image: --stage lays out files only; it takes no --push or --out\n');
      return 2;
    }
    const staged = await stageImage({ dir: values.stage, log });
    log(
      `staged ${staged.packages.map((p) => `${p.name}=${p.version}`).join(' ')}, Node.js ${staged.nodeVersion}`,
    );
    return 0;
  }
  const built = await buildImage({
    log,
    ...(values.out ? { outDir: values.out } : {}),
    ...(values.push ? { push: values.push } : {}),
    ...(values.insecure ? { insecure: true } : {}),
  });
  log(`OCI image layout in ${built.layoutDir}, ${built.digest}`);
  process.stdout.write(`${built.pushed ?? built.digest}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`build-image: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
