/**
 * The bundle of one program (the controller or the poller): what the image ships and the manifests run.
 * Each package's `build` runs rolldown with this file as its config (`-c`), in the package's folder, after tsc.
 *
 * Why a bundle: a poller run is a fresh Node.js process every minute, and most of its cost was loading
 * modules: tsc's output resolves and compiles hundreds of files from node_modules, the bundle is one file
 * with what the program reaches (tree-shaken), about half the CPU and 40 MB less memory per start
 * (bench/startup.ts measures both). The bundle is built from the TypeScript sources (the
 * `@kubewatcher/source` condition), so its source map points at them directly.
 *
 * Each package's build writes two outputs of the same code: the ES module bundle (`main.mjs`, the
 * package's `bin`) and the start-up snapshot's script (`main.cjs`, `snapshotBundleOptions`), from which
 * scripts/lib/programs.ts builds the blob the image runs.
 *
 * Source maps are written beside the bundle (`main.mjs.map`) but not loaded by `--enable-source-maps`:
 * Node parses the whole 19 MB map as the bundle loads (+0.2 CPU s, +160 MB). The entry point installs
 * `mapStackTracesLazily` (packages/shared/src/stack-traces.ts) instead, which reads the map only when a
 * stack trace is formatted.
 */
import { readFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { join, relative } from 'node:path';
import type { Plugin, RolldownOptions, TreeshakingOptions } from 'rolldown';
import type { BuiltinExportShape } from './packages/shared/src/startup-snapshot.ts';

const repoRoot = import.meta.dirname;

/**
 * Names of the original files in the map, relative to the repository (`packages/poller/src/cli.ts`) and
 * with pnpm's store path cut to the package (`node_modules/yargs/build/lib/yargs-factory.js`): readable in a
 * stack trace, and the same wherever the repository was checked out (the image build is reproducible).
 */
function sourceName(source: string, mapPath: string): string {
  const path = relative(repoRoot, join(mapPath, '..', source));
  const store = path.lastIndexOf('node_modules/');
  return store === -1 ? path : path.slice(store);
}

/**
 * client-node's package.json does not say `sideEffects: false`, so everything its index re-exports stayed
 * in the bundle (the generated API classes and ~900 models, exec/attach/cp with ws and tar-stream): 5.5 MB
 * more per program, loaded and compiled at every start. Its modules only declare classes and functions,
 * except the polyfill that sets `globalThis.File` on old Node versions.
 */
export const treeshake = {
  moduleSideEffects: [
    { test: /@kubernetes\/client-node\/dist\/polyfill\.js$/, sideEffects: true },
    { test: /@kubernetes\/client-node\/dist\//, sideEffects: false },
  ],
} satisfies TreeshakingOptions;

const STRING_SERIALIZER = '\0kubewatcher:list-watch-serializer';

/**
 * client-node's ListWatch (under the controller's informers) imports the generated ObjectSerializer only
 * to pass its label and field selectors through `serialize(selector, 'string')`, which returns a string
 * as it is; that one import keeps all ~900 generated models in the bundle. This plugin gives cache.js a
 * serializer that does exactly that, and fails the build when a client-node version uses it otherwise.
 */
export function listWatchWithoutModels(): Plugin {
  return {
    name: 'kubewatcher:list-watch-without-models',
    resolveId(source, importer) {
      if (source !== './serializer.js' || !importer?.match(/@kubernetes\/client-node\/dist\/cache\.js$/)) {
        return null;
      }
      const code = readFileSync(importer, 'utf8');
      const uses = code.match(/ObjectSerializer\.[^\n;]*/g) ?? [];
      const other = uses.filter((use) => !/^ObjectSerializer\.serialize\(this\.\w+, 'string'\)$/.test(use));
      if (other.length > 0) {
        throw new Error(
          `rolldown.config.ts: ${importer} uses its ObjectSerializer as ${other.join(', ')}: update listWatchWithoutModels`,
        );
      }
      return STRING_SERIALIZER;
    },
    load(id) {
      if (id !== STRING_SERIALIZER) return null;
      return "export const ObjectSerializer = { serialize: (value, type) => { if (type !== 'string') throw new Error('list-watch serializer: ' + type); return value; } };";
    },
  };
}

const NODE_HTTP = '\0kubewatcher:node-http';

/**
 * Node's `http` module has getters (WebSocket, CloseEvent, MessageEvent) that load Node's own copy of
 * undici. An ES `import` of `node:http` builds the module's ESM facade, which reads every export and so
 * runs them all: +0.03 CPU s and +13 MB at every start, for classes nobody here uses. The bundle takes
 * `http` through `require` instead (no facade) and re-exports what importers name; rolldown fails the
 * build on an import of a name this list lacks.
 */
export function nodeHttpWithoutFacade(): Plugin {
  const names = [
    'Agent',
    'ClientRequest',
    'IncomingMessage',
    'METHODS',
    'OutgoingMessage',
    'STATUS_CODES',
    'Server',
    'ServerResponse',
    'createServer',
    'get',
    'globalAgent',
    'maxHeaderSize',
    'request',
    'validateHeaderName',
    'validateHeaderValue',
  ];
  return {
    name: 'kubewatcher:node-http-without-facade',
    resolveId(source, importer) {
      if (importer !== NODE_HTTP && (source === 'http' || source === 'node:http')) return NODE_HTTP;
      return null;
    },
    load(id) {
      if (id !== NODE_HTTP) return null;
      return [
        "import { createRequire } from 'node:module';",
        "const http = createRequire(import.meta.url)('node:http');",
        'export default http;',
        `export const { ${names.join(', ')} } = http;`,
      ].join('\n');
    },
  };
}

const UNDICI_PARTS = '\0kubewatcher:undici-parts';

/** What the bundle's importers take from `undici` (client-node's config and watch, shared/src/kube.ts). */
const UNDICI_NAMES = ['Agent', 'ProxyAgent', 'fetch', 'getGlobalDispatcher'] as const;

/**
 * undici's index requires every part of the library at its top level (fetch, WebSocket, EventSource,
 * the cache and cookie APIs, mock agents, the SQLite cache store...) and builds objects for them: with
 * the snapshot, each start deserializes all of that. The bundle takes only the parts its importers name,
 * wired as undici's index wires them: the request methods on Dispatcher's prototype, and fetch loaded
 * at its first call (the controller's watches; the poller never calls it). A build against an undici
 * whose index no longer exports a name, or no longer wires its API this way, fails here.
 */
export function undiciUsedPartsOnly(): Plugin {
  return {
    name: 'kubewatcher:undici-used-parts-only',
    resolveId(source) {
      return source === 'undici' ? UNDICI_PARTS : null;
    },
    load(id) {
      if (id !== UNDICI_PARTS) return null;
      const index = createRequire(join(repoRoot, 'packages/shared/package.json')).resolve('undici');
      const at = (path: string) => JSON.stringify(join(index, '..', path));
      const code = readFileSync(index, 'utf8');
      const expected = [
        'Object.assign(Dispatcher.prototype, api)',
        "require('./lib/dispatcher/agent')",
        "require('./lib/dispatcher/proxy-agent')",
        "require('./lib/api')",
        "require('./lib/global')",
        "require('./lib/web/fetch').fetch",
        ...UNDICI_NAMES.map((name) => `module.exports.${name} =`),
      ];
      const missing = expected.filter((text) => !code.includes(text));
      if (missing.length > 0) {
        throw new Error(
          `rolldown.config.ts: ${index} no longer has ${missing.join(', ')}: update undiciUsedPartsOnly`,
        );
      }
      return [
        `import Dispatcher from ${at('lib/dispatcher/dispatcher.js')};`,
        `import api from ${at('lib/api/index.js')};`,
        `import Agent from ${at('lib/dispatcher/agent.js')};`,
        `import ProxyAgent from ${at('lib/dispatcher/proxy-agent.js')};`,
        `import { getGlobalDispatcher } from ${at('lib/global.js')};`,
        'Object.assign(Dispatcher.prototype, api);',
        'export { Agent, ProxyAgent, getGlobalDispatcher };',
        `export function fetch(input, init) { return require(${at('lib/web/fetch/index.js')}).fetch(input, init); }`,
      ].join('\n');
    },
  };
}

/** The bundle options of one program's package folder (packages/controller or packages/poller). */
export function bundleOptions(packageDir: string): RolldownOptions {
  const { name } = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { name: string };
  if (!/^@kubewatcher\/(controller|poller)$/.test(name)) {
    throw new Error(`rolldown.config.ts: run it in packages/controller or packages/poller, not in ${name}`);
  }
  return {
    cwd: packageDir,
    input: { main: join(packageDir, 'src/main.ts') },
    platform: 'node',
    resolve: { conditionNames: ['@kubewatcher/source', 'node', 'import', 'default'] },
    treeshake,
    plugins: [listWatchWithoutModels(), nodeHttpWithoutFacade(), undiciUsedPartsOnly()],
    output: {
      dir: join(packageDir, 'dist/bundle'),
      format: 'esm',
      // `.mjs`: the bundle is ESM wherever it is copied, without a package.json beside it.
      entryFileNames: '[name].mjs',
      // node-fetch loads its multipart parser on first use only: kept as a lazily imported chunk.
      chunkFileNames: '[name]-[hash].mjs',
      sourcemap: true,
      sourcemapPathTransform: sourceName,
      // The code is in the map's mappings; the sources are in the repository (and 3 MB instead of 19).
      sourcemapExcludeSources: true,
      cleanDir: true,
    },
  };
}

const STARTUP_SNAPSHOT_SUPPORT = join(repoRoot, 'packages/shared/src/startup-snapshot.ts');
const SNAPSHOT_ENTRY = '\0kubewatcher:snapshot-entry';
const SNAPSHOT_PRELUDE = '\0kubewatcher:snapshot-prelude';
const LAZY_BUILTIN = '\0kubewatcher:lazy-builtin:';

/**
 * Node's built-in modules whose native bindings V8 cannot put into a start-up snapshot: requiring one
 * while the blob is built crashes the build (`CheckGlobalAndEternalHandles failed`).
 */
export const UNSNAPSHOTTABLE_BUILTINS = ['http', 'http2', 'https', 'tls'] as const;

/** Each export of built-in `name` as this Node.js has it: what `lazyBuiltin` hands out at build time. */
function builtinShape(name: string): Record<string, BuiltinExportShape> {
  const mod = process.getBuiltinModule(`node:${name}`) as Record<string, unknown>;
  const shape: Record<string, BuiltinExportShape> = {};
  for (const [key, value] of Object.entries(mod)) {
    if (typeof value === 'function') shape[key] = { kind: 'function' };
    else if (value === null || typeof value !== 'object') shape[key] = { kind: 'value', value };
    else if (Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype) {
      shape[key] = { kind: 'value', value: JSON.parse(JSON.stringify(value)) };
    } else shape[key] = { kind: 'object' };
  }
  return shape;
}

/**
 * Dependencies' top-level code that must not run while the blob is built: what reads a value that
 * differs between starts (run once at build time, it would keep the build's value for ever), and what
 * would put the build's memory addresses into the blob. Each is rewritten to run when first used; the
 * build fails when a new version no longer has the text, so that a dependency update is looked at again.
 */
const SNAPSHOT_PATCHES = [
  {
    // Where yargs starts looking for a package.json: the working directory of each start.
    file: /\/yargs\/lib\/platform-shims\/esm\.mjs$/,
    replace: [
      [
        'mainFilename: mainFilename || process.cwd(),',
        'get mainFilename() { return mainFilename || process.cwd(); },',
      ],
    ],
  },
  {
    // The process_start_time_seconds metric: this process's start, not the blob's build.
    file: /\/prom-client\/lib\/metrics\/processStartTime\.js$/,
    replace: [
      ['const startInSeconds = Math.round(Date.now() / 1000 - process.uptime());', 'let startInSeconds;'],
      [
        'this.set(labels, startInSeconds);',
        'this.set(labels, (startInSeconds ??= Math.round(Date.now() / 1000 - process.uptime())));',
      ],
    ],
  },
  {
    // typebox's value hash views one Float64Array's buffer: V8 writes the address of that buffer into
    // the blob, so the blob would differ from build to build.
    file: /\/@sinclair\/typebox\/build\/esm\/value\/hash\/hash\.mjs$/,
    replace: [
      [
        'const F64 = new Float64Array(1);\nconst F64In = new DataView(F64.buffer);\nconst F64Out = new Uint8Array(F64.buffer);',
        'let F64In, F64Out;\nconst F64 = () => { if (!F64In) { const buffer = new Float64Array(1).buffer; F64In = new DataView(buffer); F64Out = new Uint8Array(buffer); } };',
      ],
      ['F64In.setBigInt64(0, value);', 'F64(); F64In.setBigInt64(0, value);'],
      ['F64In.setFloat64(0, value);', 'F64(); F64In.setFloat64(0, value);'],
    ],
  },
] as const;

/**
 * The snapshot bundle's entry: a prelude that defers Intl (`deferIntlWhileBuildingSnapshot`) before any
 * other module's top level runs, then the package's src/snapshot.ts. Every import of http, https, http2
 * or tls becomes `lazyBuiltin` of it (the module loads at first use, after deserialization), and the
 * SNAPSHOT_PATCHES rewrites are made.
 */
export function startupSnapshotSupport(packageDir: string): Plugin {
  return {
    name: 'kubewatcher:startup-snapshot-support',
    resolveId(source, importer) {
      if (source === SNAPSHOT_ENTRY || source === SNAPSHOT_PRELUDE) return source;
      const name = source.startsWith('node:') ? source.slice('node:'.length) : source;
      if (!(UNSNAPSHOTTABLE_BUILTINS as readonly string[]).includes(name) || !builtinModules.includes(name)) {
        return null;
      }
      return importer?.startsWith(LAZY_BUILTIN)
        ? { id: `node:${name}`, external: true }
        : LAZY_BUILTIN + name;
    },
    load(id) {
      if (id === SNAPSHOT_ENTRY) {
        return [
          `import ${JSON.stringify(SNAPSHOT_PRELUDE)};`,
          `import ${JSON.stringify(join(packageDir, 'src/snapshot.ts'))};`,
        ].join('\n');
      }
      if (id === SNAPSHOT_PRELUDE) {
        return [
          `import { deferIntlWhileBuildingSnapshot } from ${JSON.stringify(STARTUP_SNAPSHOT_SUPPORT)};`,
          'deferIntlWhileBuildingSnapshot();',
        ].join('\n');
      }
      if (!id.startsWith(LAZY_BUILTIN)) return null;
      const name = id.slice(LAZY_BUILTIN.length);
      // CommonJS, so that importers read each export when they use it (a getter), not once at import.
      return [
        `const { lazyBuiltin } = require(${JSON.stringify(STARTUP_SNAPSHOT_SUPPORT)});`,
        `module.exports = lazyBuiltin(${JSON.stringify(name)}, () => process.getBuiltinModule(${JSON.stringify(`node:${name}`)}), ${JSON.stringify(builtinShape(name))});`,
      ].join('\n');
    },
    transform(code, id) {
      const patch = SNAPSHOT_PATCHES.find(({ file }) => file.test(id));
      if (!patch) return null;
      let patched = code;
      for (const [from, to] of patch.replace) {
        if (!patched.includes(from)) {
          throw new Error(`rolldown.config.ts: ${id} no longer has "${from}": update SNAPSHOT_PATCHES`);
        }
        patched = patched.replace(from, to);
      }
      return patched;
    },
  };
}

/**
 * The start-up snapshot's script of one program: the same code as `bundleOptions`, one CommonJS file
 * (`main.cjs` beside `main.mjs`, what `node --build-snapshot` takes: no ES modules, no other files) from
 * src/snapshot.ts. scripts/lib/programs.ts builds the blob (`main.blob`) from it.
 */
export function snapshotBundleOptions(packageDir: string): RolldownOptions {
  const { plugins: _esmPlugins, output, ...common } = bundleOptions(packageDir);
  return {
    ...common,
    input: { main: SNAPSHOT_ENTRY },
    plugins: [listWatchWithoutModels(), undiciUsedPartsOnly(), startupSnapshotSupport(packageDir)],
    // The script runs as CommonJS: `import.meta` has no meaning there. yargs reads `import.meta.url` (for
    // paths it never uses here) and names `import.meta.resolve` (only for a config's `extends`).
    transform: {
      define: { 'import.meta.url': '__kubewatcherScriptUrl', 'import.meta.resolve': 'undefined' },
    },
    output: {
      ...output,
      format: 'cjs',
      entryFileNames: '[name].cjs',
      // One file: a snapshot's script cannot load chunks.
      codeSplitting: false,
      banner: 'const __kubewatcherScriptUrl = require("node:url").pathToFileURL(__filename).href;',
      // The ES module bundle, built first into the same folder, emptied it.
      cleanDir: false,
      // The source is part of the heap each start loads (V8 keeps it to compile functions on first call):
      // without comments and indentation it is 2.5 MB instead of 3.3, and a start ~5 MB smaller. Names
      // are kept (no mangling, no compression), so stack traces read as before, mapped by the source map.
      comments: false,
      minify: { compress: false, mangle: false, codegen: { removeWhitespace: true } },
    },
  };
}

/**
 * The config of the package rolldown runs in (its `build` script runs `rolldown -c` there): the ES module
 * bundle and the snapshot's script.
 */
export default (): RolldownOptions[] => [bundleOptions(process.cwd()), snapshotBundleOptions(process.cwd())];
