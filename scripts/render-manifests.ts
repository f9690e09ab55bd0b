/**
 * Renders the generated parts of manifests/ from their sources:
 *   - manifests/base/crds/*.yaml and manifests/helm/kubewatcher/files/crds/*.yaml: copies of crds/*.yaml
 *     (kustomize and Helm only read files inside their own folders);
 *   - the RBAC rules on the workload kinds, between `# BEGIN workload kinds` and `# END workload kinds`
 *     in the kustomize base, the namespaced overlay and the Helm chart, from the kinds table in
 *     packages/shared/src/api/workload-kinds.ts (so a new kind gets its verbs everywhere);
 *   - manifests/helm/kubewatcher/files/admission/*.yaml: copies of manifests/base/admission/*.yaml (the
 *     chart names the service accounts and roles after its release when it renders them);
 *   - manifests/install.yaml: the release bundle, `kubectl kustomize manifests/base` with a header.
 *
 *   node scripts/render-manifests.ts           write them
 *   node scripts/render-manifests.ts --check   write nothing; exit 1 and name the files that drifted
 *
 * kubectl is the one `scripts/build-binaries.sh` builds (built first when missing), or $KUBECTL.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WORKLOAD_KIND_NAMES, WORKLOAD_KINDS } from '../packages/shared/src/api/workload-kinds.ts';
import { resolveBinDir } from './lib/local-cluster.ts';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Folders that hold copies of crds/*.yaml, relative to the repository root. */
export const CRD_COPY_DIRS = ['manifests/base/crds', 'manifests/helm/kubewatcher/files/crds'];
export const BUNDLE = 'manifests/install.yaml';
/** The admission policies: written once in the kustomize base, copied into the chart. */
export const ADMISSION_SOURCE_DIR = 'manifests/base/admission';
export const ADMISSION_COPY_DIR = 'manifests/helm/kubewatcher/files/admission';

/** The kubectl to render with: $KUBECTL, else the one scripts/build-binaries.sh builds (building it if missing). */
export async function findKubectl(): Promise<string> {
  if (process.env.KUBECTL) return process.env.KUBECTL;
  const built = join(
    execFileSync('bash', [join(repoRoot, 'scripts/build-binaries.sh'), '--print-dir'], {
      encoding: 'utf8',
    }).trim(),
    'kubectl',
  );
  // Only run the (slow) build when kubectl is not there yet.
  return existsSync(built) ? built : join(await resolveBinDir(), 'kubectl');
}

/** The verbs each component needs on every workload kind. */
const WORKLOAD_VERBS = {
  // Informers to match workloads and follow rollouts; patch pins the new digest.
  controller: ['get', 'list', 'watch', 'patch'],
  // Lists workloads once per run, for their imagePullSecrets.
  poller: ['list'],
} as const;

/** Files with generated workload-kind rules, relative to the repository root. */
export const RBAC_FILES = [
  'manifests/base/rbac/controller.yaml',
  'manifests/base/rbac/poller.yaml',
  'manifests/overlays/namespaced/namespace-rbac/controller.yaml',
  'manifests/overlays/namespaced/namespace-rbac/poller.yaml',
  'manifests/helm/kubewatcher/templates/_helpers.tpl',
];

const WORKLOAD_RULES_BLOCK =
  /^( *)# BEGIN workload kinds: (controller|poller)( [^\n]*)?\n[\s\S]*?^ *# END workload kinds\n/gm;

/** The rules on the workload kinds for one component: one per API group, resources in table order. */
export function workloadRules(component: keyof typeof WORKLOAD_VERBS, indent: string): string {
  const byGroup = new Map<string, string[]>();
  for (const kind of WORKLOAD_KIND_NAMES) {
    const { group, plural } = WORKLOAD_KINDS[kind];
    byGroup.set(group, [...(byGroup.get(group) ?? []), plural]);
  }
  return [...byGroup]
    .map(
      ([group, plurals]) =>
        `${indent}- apiGroups: [${group}]\n${indent}  resources: [${plurals.join(', ')}]\n${indent}  verbs: [${WORKLOAD_VERBS[component].join(', ')}]\n`,
    )
    .join('');
}

/** `text` with every workload-kinds block rendered again from the table. */
export function renderWorkloadRules(text: string, path: string): string {
  let found = 0;
  const out = text.replace(
    WORKLOAD_RULES_BLOCK,
    (_block, indent: string, component: 'controller' | 'poller', rest = '') => {
      found++;
      return `${indent}# BEGIN workload kinds: ${component}${rest}\n${workloadRules(component, indent)}${indent}# END workload kinds\n`;
    },
  );
  if (found === 0) throw new Error(`${path}: no "# BEGIN workload kinds" block`);
  return out;
}

function crdSources(root: string): string[] {
  const names = readdirSync(join(root, 'crds'))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
  if (names.length === 0) throw new Error('crds/ has no *.yaml: generate them first (pnpm crds)');
  return names;
}

function admissionSources(root: string): string[] {
  return readdirSync(join(root, ADMISSION_SOURCE_DIR))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
}

function crdCopy(root: string, name: string): string {
  return `# Copied from crds/${name} by scripts/render-manifests.ts: edit the source, never this copy.\n${readFileSync(join(root, 'crds', name), 'utf8')}`;
}

/**
 * Every generated file and its content, keyed by path relative to the repository root. CRD copies
 * and RBAC rules come first because the bundle is rendered from them.
 */
export function renderManifests(kubectl: string, root: string = repoRoot): Map<string, string> {
  const out = new Map<string, string>();
  const names = crdSources(root);
  for (const dir of CRD_COPY_DIRS) {
    for (const name of names) out.set(`${dir}/${name}`, crdCopy(root, name));
  }
  for (const path of RBAC_FILES) {
    out.set(path, renderWorkloadRules(readFileSync(join(root, path), 'utf8'), path));
  }
  for (const name of admissionSources(root)) {
    out.set(
      `${ADMISSION_COPY_DIR}/${name}`,
      `# Copied from ${ADMISSION_SOURCE_DIR}/${name} by scripts/render-manifests.ts: edit the source, never this copy.\n${readFileSync(join(root, ADMISSION_SOURCE_DIR, name), 'utf8')}`,
    );
  }
  out.set(BUNDLE, renderBundle(kubectl, root, out));
  return out;
}

/**
 * `kubectl kustomize manifests/base` over a scratch copy of manifests/base that has the CRD copies
 * about to be written, so the bundle and the copies always come from the same crds/.
 */
function renderBundle(kubectl: string, root: string, files: Map<string, string>): string {
  const scratch = mkdtempSync(join(tmpdir(), 'kubewatcher-render-'));
  try {
    copyTree(join(root, 'manifests/base'), join(scratch, 'base'), (p) => !p.startsWith('crds/'));
    for (const [path, content] of files) {
      if (!path.startsWith('manifests/base/')) continue;
      const target = join(scratch, 'base', path.slice('manifests/base/'.length));
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, content);
    }
    let rendered: string;
    try {
      rendered = execFileSync(kubectl, ['kustomize', join(scratch, 'base')], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new Error(
        `${kubectl} kustomize manifests/base failed: ${stderr.trim() || (err as Error).message}`,
      );
    }
    return `${bundleHeader(root)}${rendered}`;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function bundleHeader(root: string): string {
  const { version } = JSON.parse(readFileSync(join(root, 'packages/controller/package.json'), 'utf8')) as {
    version: string;
  };
  return [
    `# Kubewatcher ${version}: everything it needs, cluster-wide, in the namespace kubewatcher-system.`,
    '# Generated by `node scripts/render-manifests.ts` from manifests/base (kubectl kustomize); DO NOT EDIT.',
    '# `node scripts/render-manifests.ts --check` (and scripts/manifests.test.ts) fail when it drifts.',
    '#   install:   kubectl apply --server-side -f install.yaml',
    '#   uninstall: kubectl delete -f install.yaml',
    '#              (this deletes the CRDs, and with them every WatchedImage and ImageUpdate)',
    '# See docs/install.md.',
    '',
  ].join('\n');
}

function copyTree(from: string, to: string, keep: (relPath: string) => boolean, base: string = from): void {
  mkdirSync(to, { recursive: true });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    const rel = relative(base, src);
    if (!keep(entry.isDirectory() ? `${rel}/` : rel)) continue;
    if (entry.isDirectory()) copyTree(src, join(to, entry.name), keep, base);
    else writeFileSync(join(to, entry.name), readFileSync(src));
  }
}

/** Paths whose content on disk differs from `files` (missing files count), plus stale CRD copies. */
export function driftedFiles(files: Map<string, string>, root: string = repoRoot): string[] {
  const drifted: string[] = [];
  for (const [path, content] of files) {
    const abs = join(root, path);
    if (!existsSync(abs) || readFileSync(abs, 'utf8') !== content) drifted.push(path);
  }
  for (const dir of [...CRD_COPY_DIRS, ADMISSION_COPY_DIR]) {
    if (!existsSync(join(root, dir))) continue;
    for (const name of readdirSync(join(root, dir))) {
      if (!files.has(`${dir}/${name}`)) drifted.push(`${dir}/${name} (no longer has a source)`);
    }
  }
  return drifted;
}

function write(files: Map<string, string>, root: string): void {
  for (const dir of [...CRD_COPY_DIRS, ADMISSION_COPY_DIR])
    rmSync(join(root, dir), { recursive: true, force: true });
  for (const [path, content] of files) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

async function main(args: string[]): Promise<number> {
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(
      `render-manifests: unknown argument ${unknown[0]}\nusage: node scripts/render-manifests.ts [--check]\n`,
    );
    return 2;
  }
  const files = renderManifests(await findKubectl());
  if (args.includes('--check')) {
    const drifted = driftedFiles(files);
    if (drifted.length > 0) {
      process.stderr.write(
        `render-manifests: out of date:\n${drifted.map((p) => `  ${p}\n`).join('')}run: node scripts/render-manifests.ts\n`,
      );
      return 1;
    }
    process.stderr.write(`render-manifests: ${files.size} generated files are up to date\n`);
    return 0;
  }
  write(files, repoRoot);
  process.stderr.write(`render-manifests: wrote ${[...files.keys()].join(', ')}\n`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`render-manifests: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
