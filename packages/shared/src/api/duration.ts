/**
 * Go duration strings (`30s`, `5m`, `1h30m`, `1.5h`), the form Kubernetes APIs and CEL's `duration()`
 * use. The schema pattern admits the unsigned, unit-bearing subset of time.ParseDuration's grammar.
 */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$';

const UNIT_NANOSECONDS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  µs: 1e3, // U+00B5 micro sign
  μs: 1e3, // U+03BC Greek small letter mu
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
// time.Duration is an int64 of nanoseconds; CEL's duration() refuses anything larger.
const MAX_NANOSECONDS = 2 ** 63 - 1;
const TWO_CHAR_UNITS = new Set(['ns', 'us', 'µs', 'μs', 'ms']);

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/**
 * Milliseconds in a Go duration string, or undefined when it is not one (or overflows int64 ns).
 * Accepts exactly DURATION_PATTERN, read in one pass without a regular expression, so the work is
 * linear in the text whatever it holds (`probe`, when given, counts characters read, for tests).
 */
export function parseDuration(text: string, probe?: { steps: number }): number | undefined {
  if (text === '') return undefined;
  let nanoseconds = 0;
  let i = 0;
  while (i < text.length) {
    const start = i;
    while (isDigit(text[i])) {
      if (probe) probe.steps++;
      i++;
    }
    if (i === start) return undefined;
    if (text[i] === '.') {
      const fraction = ++i;
      while (isDigit(text[i])) {
        if (probe) probe.steps++;
        i++;
      }
      if (i === fraction) return undefined;
    }
    const amount = Number(text.slice(start, i));
    const two = text.slice(i, i + 2);
    let unit: string;
    if (TWO_CHAR_UNITS.has(two)) unit = two;
    else if (text[i] === 's' || text[i] === 'm' || text[i] === 'h') unit = text[i]!;
    else return undefined;
    if (probe) probe.steps += unit.length;
    i += unit.length;
    nanoseconds += amount * UNIT_NANOSECONDS[unit]!;
  }
  if (!(nanoseconds <= MAX_NANOSECONDS)) return undefined;
  return nanoseconds / 1e6;
}
