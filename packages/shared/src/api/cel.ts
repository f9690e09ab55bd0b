/**
 * CEL validation rules (`x-kubernetes-validations`) with their TypeScript twins. The API server runs
 * the CEL; clients cannot, so every rule is declared together with a function that decides the same
 * thing, and `validateWatchedImage`/`validateImageUpdate` run those functions. A unit test checks
 * that every rule in the schemas has its twin.
 */

/** One entry of `x-kubernetes-validations`, as the CRD carries it. */
export interface CelRule {
  rule: string;
  message: string;
  /** Relative JSON path (`.values`) the error is reported under, instead of the node itself. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

/** The TypeScript twin of a rule: `oldSelf` is passed only to transition rules, as the API server does. */
export type CelCheck<T> = (self: T, oldSelf: T) => boolean;

/** Symbol-keyed so that YAML/JSON output and the CRD converter never see it. */
const CHECK = Symbol('kubewatcher.celCheck');

interface CelRuleWithCheck extends CelRule {
  [CHECK]: CelCheck<never>;
}

/** Declares a rule and its TypeScript twin; `T` is the JSON type of the node the rule sits on. */
export function celRule<T>(
  rule: string,
  message: string,
  check: CelCheck<T>,
  options: Pick<CelRule, 'fieldPath' | 'reason'> = {},
): CelRule {
  const entry: CelRuleWithCheck = { rule, message, ...options, [CHECK]: check as CelCheck<never> };
  return entry;
}

/** The TypeScript twin of a rule declared with `celRule`, or undefined for a rule declared otherwise. */
export function celCheck(rule: CelRule): CelCheck<unknown> | undefined {
  return (rule as Partial<CelRuleWithCheck>)[CHECK] as CelCheck<unknown> | undefined;
}

/** A transition rule compares with the stored object and only runs on update, when both exist. */
export function isTransitionRule(rule: CelRule): boolean {
  return /\boldSelf\b/.test(rule.rule);
}

/** A CEL string literal for `value`: raw (`r'…'`, backslashes as they are) unless it holds a quote. */
export function celString(value: string): string {
  if (!value.includes("'")) return `r'${value}'`;
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

/** `self == oldSelf` on a field: the field keeps the value it was created with. */
export function immutable<T>(): CelRule {
  return celRule<T>('self == oldSelf', 'is immutable', (self, oldSelf) => deepEqual(self, oldSelf));
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  return aKeys.every(
    (key) =>
      Object.hasOwn(b, key) &&
      deepEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]),
  );
}
