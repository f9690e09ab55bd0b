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
const durationRegExp = new RegExp(DURATION_PATTERN);
const termRegExp = /([0-9]+(?:\.[0-9]+)?)(ns|us|µs|μs|ms|s|m|h)/g;

/** Milliseconds in a Go duration string, or undefined when it is not one (or overflows int64 ns). */
export function parseDuration(text: string): number | undefined {
  if (!durationRegExp.test(text)) return undefined;
  let nanoseconds = 0;
  for (const [, amount, unit] of text.matchAll(termRegExp)) {
    nanoseconds += Number(amount) * UNIT_NANOSECONDS[unit!]!;
  }
  if (nanoseconds > MAX_NANOSECONDS) return undefined;
  return nanoseconds / 1e6;
}
