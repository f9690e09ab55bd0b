import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * Makes stack traces name the TypeScript sources (`packages/poller/src/cli.ts:87:5`) instead of the
 * bundle's lines, reading a file's source map (`<file>.map`) only when a stack trace that passes through
 * it is formatted. `node --enable-source-maps` does the same eagerly: it parses every map as its module
 * loads, which for the 8 MB bundle costs ~0.2 CPU s and ~85-160 MB on every start, in runs that never
 * print a stack. Formatting is not rare even when nothing is printed: Node's streams read `err.stack`
 * of every error they are destroyed with (a watch's inactivity timeout, a reset socket), so the map is
 * indexed, not decoded (`LineIndexedSourceMap`). Does nothing when Node already maps stack traces (`--enable-source-maps`), and leaves
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
  const maps = new Map<string, LineIndexedSourceMap | null>();
  const mapOf = (fileName: string): LineIndexedSourceMap | null => {
    let map = maps.get(fileName);
    if (map === undefined) {
      try {
        const path = fileName.startsWith('file://') ? fileURLToPath(fileName) : fileName;
        map = new LineIndexedSourceMap(JSON.parse(readFileSync(mapFiles[path] ?? `${path}.map`, 'utf8')));
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

function mappedFrame(
  frame: NodeJS.CallSite,
  mapOf: (fileName: string) => LineIndexedSourceMap | null,
): string {
  const text = frame.toString();
  const fileName = frame.getFileName();
  const line = frame.getLineNumber();
  const column = frame.getColumnNumber();
  if (!fileName || line === null || column === null || fileName.startsWith('node:')) return text;
  const entry = mapOf(fileName)?.find(line - 1, column - 1);
  if (!entry) return text;
  const original = `${entry.source}:${entry.line + 1}:${entry.column + 1}`;
  return text.replace(`${fileName}:${line}:${column}`, original);
}

/** A source map (version 3, not an index map) as its JSON says it. */
interface SourceMapPayload {
  sources: string[];
  mappings: string;
}

/** Where a generated position came from: a source and its 0-based line and column. */
export interface OriginalPosition {
  source: string;
  line: number;
  column: number;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const BASE64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64.length; i++) BASE64_VALUE[BASE64.charCodeAt(i)] = i;
const COMMA = 44;
const SEMICOLON = 59;

/**
 * A source map that answers `find` without decoding every mapping. Node's `SourceMap` turns each
 * segment into an array of its own: for the 3 MB bundles (80,000 lines, 1.6 MB of mappings) that is
 * ~35 MB of heap, ~50 MB of RSS and 0.1 CPU s, paid by a long-running controller the first time any
 * stack is formatted. This keeps the `mappings` text and, per generated line, where its segments start
 * and the running source, line and column there (one pass, ~1.3 MB); a lookup decodes one line.
 * Same answer as Node's `findEntry`: the last segment at or before the position, on that line or an
 * earlier one; none when that segment names no source.
 */
export class LineIndexedSourceMap {
  readonly #sources: string[];
  readonly #mappings: string;
  /** Per generated line: the offset of its first segment in `mappings`. */
  readonly #start: Int32Array;
  /** Per generated line: the running source index, line and column before its first segment. */
  readonly #source: Int32Array;
  readonly #line: Int32Array;
  readonly #column: Int32Array;
  /** Per generated line: 1 when the last segment before it named a source. */
  readonly #mappedBefore: Uint8Array;

  constructor(payload: SourceMapPayload) {
    if (typeof payload?.mappings !== 'string' || !Array.isArray(payload.sources)) {
      throw new Error('not a source map: mappings or sources missing');
    }
    // As Node's SourceMap: sources as written (`sourceRoot` is not applied; the bundles have none).
    this.#sources = payload.sources;
    const mappings = payload.mappings;
    this.#mappings = mappings;
    let lines = 1;
    for (let i = 0; i < mappings.length; i++) if (mappings.charCodeAt(i) === SEMICOLON) lines++;
    // One more entry: the state after the last line, for positions past it (Node answers those with
    // the last segment, too).
    this.#start = new Int32Array(lines + 1);
    this.#source = new Int32Array(lines + 1);
    this.#line = new Int32Array(lines + 1);
    this.#column = new Int32Array(lines + 1);
    this.#mappedBefore = new Uint8Array(lines + 1);
    // state[1..3]: running source index, original line and column; state[0] is the generated column.
    const state = [0, 0, 0, 0];
    let mapped = 0;
    let line = 0;
    let field = 0;
    let value = 0;
    let shift = 0;
    for (let i = 0; i <= mappings.length; i++) {
      const c = i < mappings.length ? mappings.charCodeAt(i) : SEMICOLON;
      if (c === COMMA || c === SEMICOLON) {
        if (field > 0) mapped = field >= 4 ? 1 : 0;
        field = 0;
        if (c === SEMICOLON && ++line <= lines) {
          this.#start[line] = i + 1;
          this.#source[line] = state[1] as number;
          this.#line[line] = state[2] as number;
          this.#column[line] = state[3] as number;
          this.#mappedBefore[line] = mapped;
        }
        continue;
      }
      const digit = c < 128 ? (BASE64_VALUE[c] as number) : -1;
      if (digit < 0) throw new Error(`not a source map: mappings has ${JSON.stringify(mappings[i])} at ${i}`);
      value += (digit & 31) * 2 ** shift;
      shift += 5;
      if (digit & 32) continue;
      const delta = value % 2 === 1 ? -(value - 1) / 2 : value / 2;
      if (field >= 1 && field <= 3) state[field] = (state[field] as number) + delta;
      field++;
      value = 0;
      shift = 0;
    }
  }

  /** The original position of generated `line`, `column` (both 0-based), if a source is named there. */
  find(line: number, column: number): OriginalPosition | undefined {
    if (line < 0) return undefined;
    line = Math.min(line, this.#start.length - 1);
    const mappings = this.#mappings;
    const state = this.#stateBefore(line);
    let best: OriginalPosition | undefined;
    let found = false;
    let field = 0;
    let value = 0;
    let shift = 0;
    // At the end of a segment: false when it starts after the column (segments are in column order),
    // else it is the best so far.
    const settle = () => {
      if (field === 0 || (state[0] as number) > column) return false;
      found = true;
      best = field >= 4 ? this.#position(state) : undefined;
      return true;
    };
    for (let i = this.#start[line] as number; ; i++) {
      const c = i < mappings.length ? mappings.charCodeAt(i) : SEMICOLON;
      if (c === COMMA || c === SEMICOLON) {
        if (field > 0 && !settle()) break;
        field = 0;
        if (c === SEMICOLON) break;
        continue;
      }
      const digit = c < 128 ? (BASE64_VALUE[c] as number) : -1;
      if (digit < 0) return undefined;
      value += (digit & 31) * 2 ** shift;
      shift += 5;
      if (digit & 32) continue;
      const delta = value % 2 === 1 ? -(value - 1) / 2 : value / 2;
      if (field <= 3) state[field] = (state[field] as number) + delta;
      field++;
      value = 0;
      shift = 0;
    }
    if (found) return best;
    // Nothing on this line at or before the column: the last segment of an earlier line.
    return this.#mappedBefore[line] ? this.#position(this.#stateBefore(line)) : undefined;
  }

  /** [generated column 0, source index, original line, original column] before `line`'s first segment. */
  #stateBefore(line: number): number[] {
    return [0, this.#source[line] as number, this.#line[line] as number, this.#column[line] as number];
  }

  #position(state: readonly number[]): OriginalPosition | undefined {
    const source = this.#sources[state[1] as number];
    if (source === undefined) return undefined;
    return { source, line: state[2] as number, column: state[3] as number };
  }
}
