/**
 * The reference documentation under docs/ stays true to the code:
 *  - the generated pages (api.md, cli.md, metrics.md) match what scripts/generate-docs.ts writes now;
 *  - every field of the committed CRDs, every printer column and every CEL message is in api.md;
 *  - every `--flag` the hand-written pages mention is a flag of the controller or the poller, or one
 *    of the other tools' flags listed here (so renaming a flag fails until the pages follow);
 *  - every relative link between the pages points at a file and a heading that exist;
 *  - every repository path that a page or a code comment names (from the root, or from the file's
 *    folder when it starts with a dot) exists, and none points outside the repository.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { controllerOptions } from '../packages/controller/src/cli.ts';
import { pollerOptions } from '../packages/poller/src/cli.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (path: string) => readFileSync(join(root, path), 'utf8');

const HAND_WRITTEN = [
  'docs/private-registries.md',
  'docs/rate-limits.md',
  'docs/troubleshooting.md',
  'docs/architecture.md',
  'docs/install.md',
  'README.md',
];
/** Checked for links only: their flags are the benchmark and local-environment scripts', the registry README's are options. */
const LINKS_ONLY = [
  'docs/benchmarks.md',
  'bench/README.md',
  'packages/poller/src/registry/README.md',
  'docs/local-environment.md',
];
const GENERATED = ['docs/api.md', 'docs/cli.md', 'docs/metrics.md'];

describe('generated docs', () => {
  it('match the code (run `node --conditions=@kubewatcher/source scripts/generate-docs.ts` after changing it)', async () => {
    const run = promisify(execFile)(
      process.execPath,
      ['--conditions=@kubewatcher/source', join(root, 'scripts/generate-docs.ts'), '--check'],
      { cwd: root },
    );
    const result = await run.catch((err: { stdout?: string; stderr?: string; code?: number }) => err);
    expect(result.stderr ?? '', 'generate-docs --check reported stale files').toBe('');
    for (const path of GENERATED) expect(result.stdout).toContain(`${path}: up to date`);
  }, 120_000);
});

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  'x-kubernetes-validations'?: { rule: string; message?: string }[];
  additionalProperties?: SchemaNode;
}

interface Crd {
  spec: {
    names: { kind: string };
    versions: {
      additionalPrinterColumns: { name: string; jsonPath: string }[];
      schema: { openAPIV3Schema: SchemaNode };
    }[];
  };
}

/** Field paths as api.md writes them: `spec.pullSecrets[].name`. */
function fieldPaths(node: SchemaNode, path: string): string[] {
  const out: string[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const childPath = path ? `${path}.${name}` : name;
    out.push(childPath, ...fieldPaths(child, childPath));
  }
  if (node.items) out.push(...fieldPaths(node.items, `${path}[]`));
  return out;
}

function celMessages(node: SchemaNode): string[] {
  return [
    ...(node['x-kubernetes-validations'] ?? []).map((r) => r.message ?? r.rule),
    ...Object.values(node.properties ?? {}).flatMap(celMessages),
    ...(node.items ? celMessages(node.items) : []),
    ...(node.additionalProperties ? celMessages(node.additionalProperties) : []),
  ];
}

const crds = ['crds/kubewatcher.io_watchedimages.yaml', 'crds/kubewatcher.io_imageupdates.yaml'].map(
  (path) => [path, parseYaml(read(path).replace(/^(#.*\n)+---\n/, '')) as Crd] as const,
);

describe.each(crds)('docs/api.md covers %s', (_path, crd) => {
  const api = read('docs/api.md');
  const version = crd.spec.versions[0]!;
  const schema = version.schema.openAPIV3Schema;

  it('has every field', () => {
    const missing = fieldPaths(schema, '').filter((path) => !api.includes(`\`${path}\``));
    expect(missing).toEqual([]);
  });

  it('has every printer column', () => {
    const missing = version.additionalPrinterColumns.filter(
      (c) => !api.includes(c.name.toUpperCase()) || !api.includes(`\`${c.jsonPath}\``),
    );
    expect(missing).toEqual([]);
  });

  it('has every CEL rule message', () => {
    const missing = celMessages(schema).filter((message) => !api.includes(message));
    expect(missing).toEqual([]);
  });
});

/** Flags of other tools that the hand-written pages use in examples. */
const OTHER_TOOLS_FLAGS = new Set([
  // node
  '--build-snapshot',
  '--conditions',
  '--enable-source-maps',
  '--import',
  '--max-old-space-size',
  '--max-semi-space-size',
  '--snapshot-blob',
  // kubectl
  '--as',
  '--docker-password',
  '--docker-server',
  '--docker-username',
  '--dry-run',
  '--field-selector',
  '--from',
  '--from-file',
  '--image',
  '--list',
  '--load-restrictor',
  '--overwrite',
  '--previous',
  '--server-side',
  '--show-managed-fields',
  '--sort-by',
  '--target',
  '--type',
  // helm
  '--create-namespace',
  '--reuse-values',
  '--set',
  '--strict',
  '--version',
  '--wait',
  // docker / buildx
  '--build-arg',
  '--password-stdin',
  '--platform',
  '--push',
  '--rm',
  // scripts/local-cluster
  '--real-node',
  // pnpm, vitest, the project's own generators (scripts/*.ts --check), the helm build script
  '--filter',
  '--frozen-lockfile',
  '--legacy',
  '--prod',
  '--project',
  '--check',
  '--print-path',
  // scripts/push-image
  '--runnable',
  // scripts/build-image (--push is docker's too)
  '--insecure',
  '--stage',
  // cloud CLIs
  '--expose-token', // az acr login
  '--region', // aws ecr get-login-password
]);

describe('hand-written docs', () => {
  const ownFlags = new Set(
    [...Object.keys(controllerOptions({})), ...Object.keys(pollerOptions()), 'help'].map((f) => `--${f}`),
  );

  it.each(HAND_WRITTEN)('%s names only flags that exist', (path) => {
    const flags = [...read(path).matchAll(/(?<![\w-])--[a-z][a-z-]*[a-z]/g)].map((m) => m[0]);
    const unknown = [...new Set(flags)].filter((f) => !ownFlags.has(f) && !OTHER_TOOLS_FLAGS.has(f));
    expect(unknown).toEqual([]);
  });

  /** GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes. */
  function anchors(markdown: string): Set<string> {
    const out = new Set<string>();
    let inFence = false;
    for (const line of markdown.split('\n')) {
      if (line.startsWith('```')) inFence = !inFence;
      const heading = !inFence && /^#{1,6} (.*)$/.exec(line);
      if (heading)
        out.add(
          heading[1]!
            .trim()
            .toLowerCase()
            .replace(/[^\p{L}\p{N}\s_-]/gu, '')
            .replace(/\s/g, '-'),
        );
    }
    return out;
  }

  it.each([...HAND_WRITTEN, ...GENERATED, ...LINKS_ONLY])(
    '%s links only to pages and headings that exist',
    (path) => {
      const broken: string[] = [];
      // Links outside code: fenced blocks and inline code hold regular expressions that look like links.
      const prose = read(path)
        .replace(/^```[\s\S]*?^```/gm, '')
        .replace(/`[^`\n]*`/g, '');
      for (const [, target] of prose.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // https:, mailto:
        const [file, anchor] = target!.split('#');
        const targetPath = file ? join(dirname(path), file) : path;
        let text: string;
        try {
          text = read(targetPath);
        } catch {
          broken.push(`${target} (no file ${targetPath})`);
          continue;
        }
        if (anchor && !anchors(text).has(anchor)) broken.push(`${target} (no heading #${anchor})`);
      }
      expect(broken).toEqual([]);
    },
  );
});

// Paths named in prose and comments

/** Not written by hand, or not in the repository at all. */
const UNSCANNED_DIRS = new Set(['node_modules', 'dist', '.git', '.local', 'coverage']);
/** Generated from the schemas and CLIs: checked by the drift tests instead. */
const GENERATED_FILES = new Set([...GENERATED, 'manifests/install.yaml']);

function repositoryFiles(dir = ''): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) return UNSCANNED_DIRS.has(entry.name) ? [] : repositoryFiles(path);
    return GENERATED_FILES.has(path) ? [] : [path];
  });
}

/**
 * The text of a file that talks about the repository: all of a Markdown page; the comments of
 * TypeScript (block and line comments, a URL's `//` included, which the path rule skips) and of
 * shell scripts, YAML and the Dockerfile.
 */
function prose(path: string, text: string): string | undefined {
  if (path.endsWith('.md')) return text;
  if (path.endsWith('.ts')) return (text.match(/\/\*[\s\S]*?\*\/|\/\/.*$/gm) ?? []).join('\n');
  const hashComments = /\.(sh|ya?ml)$/.test(path) || path === 'Dockerfile' || /^scripts\/[\w-]+$/.test(path);
  if (hashComments) return (text.match(/(^|\s)#.*$/gm) ?? []).join('\n');
  return undefined;
}

const TOP_LEVEL = new Set(readdirSync(root).filter((name) => !UNSCANNED_DIRS.has(name)));

/**
 * Paths in `text` that should name something in the repository: those starting at one of its
 * top-level folders (`scripts/lib/demo.ts`), resolved from the root, and in TypeScript and Markdown
 * those starting with `./` or `../`, resolved from the file's folder (shell comments use them for
 * paths inside Go modules). A name stops at characters a path here never holds (`*`, `<`, `#`, a
 * backtick), so a glob or an anchor leaves its checkable head. An image reference
 * (`bench/img-1:stable`) is not a path.
 */
function namedPaths(file: string, text: string): { named: string; resolved: string }[] {
  const out: { named: string; resolved: string }[] = [];
  for (const match of text.matchAll(/(?<![\w.:/@~$-])(?:\.{1,2}\/)*[\w][\w.-]*(?:\/[\w.-]+)*\/?/g)) {
    const after = text.slice(match.index + match[0].length);
    if (/^:\w/.test(after)) continue; // repository:tag
    const named = match[0].replace(/[.:]+$/, '');
    const relativeToFile = /\.(ts|md)$/.test(file) && (named.startsWith('./') || named.startsWith('../'));
    const first = named.split('/')[0]!;
    if (!relativeToFile && !(named.includes('/') && TOP_LEVEL.has(first))) continue;
    if ((named.startsWith('./') || named.startsWith('../')) && !relativeToFile) continue;
    if (named.split('/').some((segment) => segment === 'dist' || segment === 'node_modules')) continue;
    const resolved = relative(root, join(root, relativeToFile ? dirname(file) : '', named));
    out.push({ named, resolved });
  }
  return out;
}

describe('paths named in docs and comments', () => {
  const scanned = repositoryFiles()
    .map((path) => [path, prose(path, read(path))] as const)
    .filter((entry): entry is readonly [string, string] => entry[1] !== undefined);

  it('finds the files to read', () => {
    const paths = scanned.map(([path]) => path);
    expect(paths).toContain('README.md');
    expect(paths).toContain('packages/poller/src/registry/client.ts');
    expect(paths).toContain('scripts/test');
  });

  it.each(scanned)('%s names only paths that exist', (path, text) => {
    const missing = namedPaths(path, text)
      .filter(({ resolved }) => resolved.startsWith('..') || !existsSync(join(root, resolved)))
      .map(({ named, resolved }) => (named === resolved ? named : `${named} (${resolved})`));
    expect([...new Set(missing)]).toEqual([]);
  });

  it.each(scanned)('%s cites nothing outside the repository', (_path, text) => {
    // Design notes kept outside the repository: what a reader needs from them is in docs/.
    const outside = text.match(/\bDESIGN\.md\b|\bresearch\/[\w.-]+|\.\.\/shared\b/g) ?? [];
    expect(outside).toEqual([]);
  });

  it.each([
    [
      'a root path',
      'packages/poller/src/registry/client.ts',
      'see scripts/lib/demo.ts.',
      ['scripts/lib/demo.ts'],
    ],
    ['a folder', 'README.md', 'under `manifests/overlays/namespaced`,', ['manifests/overlays/namespaced']],
    [
      'relative to the file',
      'packages/poller/src/registry/client.ts',
      '(./README.md)',
      ['packages/poller/src/registry/README.md'],
    ],
    ['a glob keeps its head', 'vitest.config.ts', "'packages/*/src/**'", ['packages']],
    ['an image reference is no path', 'docs/benchmarks.md', '`bench/img-NNN:stable`', []],
    ["a shell comment's ./ is no path", 'scripts/build-keel.sh', 'by a local path (./x)', []],
    ['an anchor is cut off', 'x.ts', 'docs/architecture.md#who-writes-what', ['docs/architecture.md']],
    ['not a repository path', 'README.md', 'ghcr.io/acme/web:stable, https://example.com/docs/x, run.ts', []],
  ])('reads %s', (_what, file, text, expected) => {
    expect(namedPaths(file, text).map((p) => p.resolved)).toEqual(expected);
  });
});
