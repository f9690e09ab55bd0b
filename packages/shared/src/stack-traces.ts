import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Makes stack traces name the TypeScript sources (`packages/poller/src/cli.ts:87:5`) instead of the
 * bundle's lines, reading a file's source map (`<file>.map`) only when a stack trace that passes through
 * it is formatted. `node --enable-source-maps` does the same eagerly: it parses every map as its module
 * loads, which for the 8 MB bundle costs ~0.2 CPU s and ~85-160 MB on every start, in runs that never
 * print a stack. Does nothing when Node already maps stack traces (`--enable-source-maps`), and leaves
 * frames of files without a map (Node's own, or sources run through type stripping) as they are.
 * Call it first thing in an entry point.
 *
 * `mapFiles` names the map of a script whose map is not `<file>.map`: a bundle compiled into a start-up
 * snapshot keeps the name it was built under, while its map lies beside the blob.
 */
export function mapStackTracesLazily(mapFiles: Readonly<Record<string, string>> = {}): void {
  if (process.sourceMapsEnabled) return;
  Error.prepareStackTrace = sourceMappedStackTraces(mapFiles);
}

/** The `Error.prepareStackTrace` that `mapStackTracesLazily` installs, with its own cache of maps. */
export function sourceMappedStackTraces(
  mapFiles: Readonly<Record<string, string>> = {},
): (error: Error, frames: NodeJS.CallSite[]) => string {
  const maps = new Map<string, SourceMap | null>();
  const mapOf = (fileName: string): SourceMap | null => {
    let map = maps.get(fileName);
    if (map === undefined) {
      try {
        const path = fileName.startsWith('file://') ? fileURLToPath(fileName) : fileName;
        map = new SourceMap(JSON.parse(readFileSync(mapFiles[path] ?? `${path}.map`, 'utf8')));
      } catch {
        map = null; // no map (or an unreadable one): the frame stays as V8 wrote it
      }
      maps.set(fileName, map);
    }
    return map;
  };
  return (error, frames) => {
    const lines = [describe(error)];
    for (const frame of frames) lines.push(`    at ${mappedFrame(frame, mapOf)}`);
    return lines.join('\n');
  };
}

function describe(error: unknown): string {
  try {
    return Error.prototype.toString.call(error);
  } catch {
    return 'Error';
  }
}

function mappedFrame(frame: NodeJS.CallSite, mapOf: (fileName: string) => SourceMap | null): string {
  const text = frame.toString();
  const fileName = frame.getFileName();
  const line = frame.getLineNumber();
  const column = frame.getColumnNumber();
  if (!fileName || line === null || column === null || fileName.startsWith('node:')) return text;
  const entry = mapOf(fileName)?.findEntry(line - 1, column - 1);
  if (!entry || !('originalSource' in entry)) return text;
  const original = `${entry.originalSource}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  return text.replace(`${fileName}:${line}:${column}`, original);
}
