/**
 * What a program needs to start from a V8 start-up snapshot (`node --snapshot-blob main.blob -- ARGS`):
 * its bundle is evaluated once, when the blob is built (`node --build-snapshot`, scripts/lib/programs.ts),
 * and every start deserializes the evaluated heap instead of compiling and running 3 MB of modules.
 *
 * While the blob is built, no module may hold what V8 cannot serialize: Node's http, https, http2 and tls
 * modules (their native bindings), and ICU objects (`new Intl.Segmenter()` at a module's top level). The
 * snapshot bundle (rolldown.config.ts, `snapshotBundleOptions`) therefore takes those four modules through
 * `lazyBuiltin` and starts with `deferIntlWhileBuildingSnapshot`. Whatever reads the environment, the
 * arguments, the clock or the kubeconfig runs in the deserialized main function, at each start.
 */
import { dirname, resolve } from 'node:path';
import { startupSnapshot } from 'node:v8';

/** How a module's export looked in the Node.js that built the bundle (rolldown.config.ts records it). */
export type BuiltinExportShape =
  | { kind: 'function' }
  | { kind: 'object' }
  | { kind: 'value'; value: unknown };

/** Stand-ins handed out while the blob was built, linked to the real module's values at deserialization. */
const links: (() => void)[] = [];
if (startupSnapshot.isBuildingSnapshot()) {
  startupSnapshot.addDeserializeCallback(() => {
    for (const link of links) link();
  });
  // What Node.js records of the building process; each start sets its own again. Left in, the blob
  // would differ with the path of the node binary and the pid that built it.
  startupSnapshot.addSerializeCallback(() => {
    process.execPath = 'node';
    process.argv = ['node'];
    Object.defineProperty(process, 'pid', { value: 0 });
    Object.defineProperty(process, 'ppid', { value: 0 });
  });
}

/**
 * The exports of built-in module `name`, loaded (`load`) on first use at run time. While the blob is
 * built, reading an export (a top-level `const { STATUS_CODES } = require('http')`, or
 * `class extends https.Agent`) gives a stand-in instead of loading the module:
 * - a plain value (a number, `STATUS_CODES`, `http2.constants`): the value the building Node.js had;
 * - a function or class: one that forwards calls and `new` to the real one, and whose prototype chain is
 *   linked to the real one's as the snapshot is deserialized, so subclasses and `instanceof` work;
 * - another object (`globalAgent`): a proxy to the real one.
 * Calling a stand-in while the blob is built throws, naming the export: the module would have to load.
 */
export function lazyBuiltin(
  name: string,
  load: () => Record<string, unknown>,
  shape: Record<string, BuiltinExportShape>,
): Record<string, unknown> {
  const standIns = new Map<string, unknown>();
  const real = (key: string): unknown => {
    if (startupSnapshot.isBuildingSnapshot()) {
      throw new Error(
        `node:${name}.${key} was used while the start-up snapshot was built: only what runs after deserialization may use it`,
      );
    }
    return load()[key];
  };
  const exports: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(shape)) {
    Object.defineProperty(exports, key, {
      enumerable: true,
      get() {
        if (!startupSnapshot.isBuildingSnapshot()) return load()[key];
        if (!standIns.has(key)) standIns.set(key, standIn(key, kind, real));
        return standIns.get(key);
      },
    });
  }
  return exports;
}

function standIn(key: string, shape: BuiltinExportShape, real: (key: string) => unknown): unknown {
  if (shape.kind === 'value') return shape.value;
  if (shape.kind === 'object') {
    const target = () => real(key) as object;
    return new Proxy(
      {},
      {
        get: (_, property) => Reflect.get(target(), property),
        set: (_, property, value) => Reflect.set(target(), property, value),
        has: (_, property) => Reflect.has(target(), property),
      },
    );
  }
  const forward = function (this: unknown, ...args: unknown[]): unknown {
    const fn = real(key) as (...a: unknown[]) => unknown;
    return new.target ? Reflect.construct(fn, args, new.target) : fn.apply(this, args);
  };
  Object.defineProperty(forward, 'name', { value: key });
  links.push(() => {
    const fn = real(key) as { prototype?: object };
    Object.setPrototypeOf(forward, fn);
    if (fn.prototype) Object.setPrototypeOf(forward.prototype, fn.prototype);
  });
  return forward;
}

/**
 * While the blob is built, `new Intl.Segmenter()` and the other Intl constructors give an object that
 * makes the real one on first use (ICU objects cannot be serialized; string-width, under yargs, makes a
 * Segmenter at its top level). The real constructors are back once the snapshot is deserialized.
 */
export function deferIntlWhileBuildingSnapshot(): void {
  if (!startupSnapshot.isBuildingSnapshot()) return;
  const intl = Intl as unknown as Record<string, new (...args: unknown[]) => object>;
  const saved: [string, new (...args: unknown[]) => object][] = [];
  for (const name of [
    'Collator',
    'DateTimeFormat',
    'DisplayNames',
    'ListFormat',
    'NumberFormat',
    'PluralRules',
    'RelativeTimeFormat',
    'Segmenter',
  ]) {
    const found = intl[name];
    if (typeof found !== 'function') continue;
    const Real = found;
    saved.push([name, Real]);
    // A function declaration, not an arrow: modules call it with `new`.
    function Deferred(...args: unknown[]): object {
      let made: object | undefined;
      const real = () => (made ??= new Real(...args));
      return new Proxy(Object.create(Real.prototype) as object, {
        get: (_, property) => {
          const value = Reflect.get(real(), property);
          return typeof value === 'function' ? value.bind(real()) : value;
        },
      });
    }
    intl[name] = Deferred as unknown as new (...args: unknown[]) => object;
  }
  startupSnapshot.addDeserializeCallback(() => {
    for (const [name, Real] of saved) intl[name] = Real;
  });
}

/**
 * The blob this process started from (`--snapshot-blob FILE` among Node's own arguments), as an absolute
 * path; undefined when it started otherwise.
 */
export function startupSnapshotBlob(execArgv: readonly string[] = process.execArgv): string | undefined {
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (arg === '--snapshot-blob' && i + 1 < execArgv.length) return resolve(execArgv[i + 1]!);
    if (arg.startsWith('--snapshot-blob=')) return resolve(arg.slice('--snapshot-blob='.length));
  }
  return undefined;
}

/**
 * Makes `main` the program of the start-up snapshot being built: each start runs it with the command
 * line's arguments (`node --snapshot-blob main.blob -- ARGS`: process.argv holds node and ARGS only).
 * `scriptName` is the name the bundle was compiled under while the blob was built; its source map is
 * `mapName` beside the blob at run time, which is where the stack-trace formatter is told to look.
 */
export function runFromStartupSnapshot(
  scriptName: string,
  mapName: string,
  main: (argv: string[], sourceMaps: Record<string, string>) => void,
): void {
  if (!startupSnapshot.isBuildingSnapshot()) {
    throw new Error(
      'runFromStartupSnapshot: this bundle is the script of a start-up snapshot: build the blob from it',
    );
  }
  startupSnapshot.setDeserializeMainFunction(() => {
    const blob = startupSnapshotBlob();
    main(process.argv.slice(1), blob ? { [scriptName]: resolve(dirname(blob), mapName) } : {});
  });
}
