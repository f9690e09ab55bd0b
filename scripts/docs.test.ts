/**
 * The reference documentation under docs/ stays true to the code:
 *  - the generated pages (api.md, cli.md, metrics.md) match what scripts/generate-docs.ts writes now;
 *  - every field of the committed CRDs, every printer column and every CEL message is in api.md;
 *  - every `--flag` the hand-written pages mention is a flag of the controller or the poller, or one
 *    of the other tools' flags listed here (so renaming a flag fails until the pages follow);
 *  - every relative link between the pages points at a file and a heading that exist.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
/** Checked for links only: its flags are the benchmark scripts'. */
const LINKS_ONLY = ['docs/benchmarks.md', 'bench/README.md'];
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
  '--conditions',
  '--import',
  '--max-old-space-size',
  '--max-semi-space-size',
  // kubectl
  '--as',
  '--docker-password',
  '--docker-server',
  '--docker-username',
  '--dry-run',
  '--field-selector',
  '--from',
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
  // docker / buildx
  '--build-arg',
  '--password-stdin',
  '--platform',
  '--push',
  '--rm',
  // pnpm, vitest, the project's own generators (scripts/*.ts --check), the helm build script
  '--filter',
  '--frozen-lockfile',
  '--legacy',
  '--prod',
  '--project',
  '--check',
  '--print-path',
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
