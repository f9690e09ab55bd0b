/**
 * Text written into the API (condition messages, Event notes) from sources Kubewatcher does not
 * control: registry answers, API error texts, names chosen by tenants. The API server refuses an
 * object whose condition message or Event note is too long, and a refused status write is retried
 * every run, so every such message is bounded before it is written.
 */

/**
 * Longest message written, in UTF-8 bytes: an Event's note may hold 1 KiB (events.k8s.io/v1), and a
 * condition message far more; one limit for both keeps a message the same wherever it shows.
 */
export const MAX_MESSAGE_BYTES = 1024;

const ELLIPSIS = '…';
// C0, DEL, C1, zero-width characters, line and paragraph separators, bidirectional controls, BOM.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
const UNWRITABLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]+/g;
const ELLIPSIS_BYTES = 3;

/** Bytes of one code point in UTF-8 (a lone surrogate is written as U+FFFD, three bytes). */
function utf8Length(codePoint: number): number {
  if (codePoint < 0x80) return 1;
  if (codePoint < 0x800) return 2;
  return codePoint < 0x10000 ? 3 : 4;
}

/**
 * The message on one line, without control or invisible formatting characters (C0, C1, DEL, line and
 * paragraph separators, bidirectional overrides), runs of spaces folded into one, cut to at most
 * `maxBytes` UTF-8 bytes on a character boundary with '…' marking the cut. Linear in the input.
 */
export function boundMessage(text: string, maxBytes: number = MAX_MESSAGE_BYTES): string {
  if (!Number.isInteger(maxBytes) || maxBytes < ELLIPSIS_BYTES) {
    throw new RangeError(`boundMessage: maxBytes must be an integer ≥ ${ELLIPSIS_BYTES}, got ${maxBytes}`);
  }
  const clean = text.replace(UNWRITABLE, ' ');
  const folded = clean.replace(/ {2,}/g, ' ').trim();
  if (Buffer.byteLength(folded, 'utf8') <= maxBytes) return folded;
  let bytes = 0;
  let end = 0;
  for (const char of folded) {
    const size = utf8Length(char.codePointAt(0)!);
    if (bytes + size > maxBytes - ELLIPSIS_BYTES) break;
    bytes += size;
    end += char.length;
  }
  return `${folded.slice(0, end).trimEnd()}${ELLIPSIS}`;
}
