/**
 * Client-side validation with the same TypeBox schemas the CRDs are generated from, so a client
 * decides what the API server decides:
 *  - defaults are applied first, as the API server does before validating;
 *  - the schema (types, enums, patterns, formats, bounds, required fields) is checked by TypeBox;
 *  - list-type `set` and `map` uniqueness, which the API server checks apart from the schema;
 *  - CEL rules run as their TypeScript twins (see cel.ts), and, as in the API server, not at all when
 *    a type, enum, required, too-long or too-many error would make them meaningless; transition
 *    rules run only when the stored object is given.
 * Unknown fields are not errors: the API server prunes them, and a client reading a newer CRD's
 * objects must not refuse them. Messages name the field path (`spec.interval: …`); their wording
 * follows the API server's but is not byte-for-byte the same.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import { type CelRule, celCheck, isTransitionRule } from './cel.ts';
import { ImageUpdate } from './image-update.ts';
import { WatchedImage } from './watched-image.ts';

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: string[] };

/** What the API server adds when blocking errors kept it from running the CEL rules. */
export const RULES_NOT_CHECKED =
  'some validation rules were not checked because the object was invalid; correct the existing errors to complete validation';

// The API server's blocking errors (NotSupported, Required, TooLong, TooMany, TypeInvalid).
const BLOCKING_ERRORS = new Set<ValueErrorType>([
  ValueErrorType.ObjectRequiredProperty,
  ValueErrorType.Union,
  ValueErrorType.Literal,
  ValueErrorType.StringMaxLength,
  ValueErrorType.ArrayMaxItems,
  ValueErrorType.ObjectMaxProperties,
  ValueErrorType.String,
  ValueErrorType.Integer,
  ValueErrorType.Number,
  ValueErrorType.Boolean,
  ValueErrorType.Object,
  ValueErrorType.Array,
]);

type JsonSchema = Record<string, unknown>;

/** A validator for one kind: `old` is the stored object, for the transition rules of an update. */
function validator<T extends TSchema>(
  schema: T,
): (obj: unknown, old?: unknown) => ValidationResult<Static<T>> {
  const compiled = TypeCompiler.Compile(schema);
  return (obj, old) => {
    const value = Value.Default(schema, Value.Clone(obj));
    const errors: string[] = [];
    let blocked = false;
    if (!compiled.Check(value)) {
      const required = new Set<string>();
      for (const error of compiled.Errors(value)) {
        const path = fieldPath(value, error.path);
        // TypeBox reports a missing required field twice (required, then wrong type).
        if (required.has(path)) continue;
        if (error.type === ValueErrorType.ObjectRequiredProperty) required.add(path);
        if (BLOCKING_ERRORS.has(error.type)) blocked = true;
        const line = `${path}: ${describe(error)}`;
        if (!errors.includes(line)) errors.push(line);
      }
    }
    errors.push(...listErrors(schema as unknown as JsonSchema, value, ''));
    if (blocked) errors.push(RULES_NOT_CHECKED);
    else errors.push(...ruleErrors(schema as unknown as JsonSchema, value, old, ''));
    return errors.length === 0 ? { ok: true, value: value as Static<T> } : { ok: false, errors };
  };
}

/** Validates a WatchedImage, defaults applied; the value returned carries the defaults. */
export const validateWatchedImage: (obj: unknown) => ValidationResult<WatchedImage> = validator(WatchedImage);

/**
 * Validates an ImageUpdate, defaults applied. Given the stored object (`old`), also checks that the
 * spec did not change except `approved`, as the API server's transition rules do on update.
 */
export const validateImageUpdate: (obj: unknown, old?: unknown) => ValidationResult<ImageUpdate> =
  validator(ImageUpdate);

/** A JSON pointer (`/spec/kinds/0`) as a Kubernetes field path (`spec.kinds[0]`). */
function fieldPath(root: unknown, pointer: string): string {
  let path = '';
  let node: unknown = root;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    path = Array.isArray(node) || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `${path}[${key}]` : join(path, key);
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
  }
  return path || '<root>';
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

function describe(error: ValueError): string {
  const schema = error.schema as JsonSchema;
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'Required value';
    case ValueErrorType.Union:
    case ValueErrorType.Literal: {
      const variants = (schema.anyOf as JsonSchema[] | undefined) ?? [schema];
      const supported = variants.map((variant) => show(variant.const)).join(', ');
      return `Unsupported value: ${show(error.value)}: supported values: ${supported}`;
    }
    case ValueErrorType.StringPattern:
      return `Invalid value: ${show(error.value)}: should match '${schema.pattern}'`;
    case ValueErrorType.StringFormat:
      return `Invalid value: ${show(error.value)}: must be a ${schema.format} (RFC 3339, e.g. 2025-01-31T12:00:00Z)`;
    case ValueErrorType.StringMaxLength:
      return `Too long: may not be more than ${schema.maxLength} bytes`;
    case ValueErrorType.StringMinLength:
      return `Invalid value: ${show(error.value)}: should be at least ${schema.minLength} chars long`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `Invalid value: ${show(error.value)}: should be greater than or equal to ${schema.minimum}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `Invalid value: ${show(error.value)}: should be less than or equal to ${schema.maximum}`;
    case ValueErrorType.ArrayMinItems:
      return `Invalid value: ${(error.value as unknown[]).length}: should have at least ${schema.minItems} items`;
    case ValueErrorType.ArrayMaxItems:
      return `Too many: ${(error.value as unknown[]).length}: must have at most ${schema.maxItems} items`;
    case ValueErrorType.ObjectMaxProperties:
      return `Too many: must have at most ${schema.maxProperties} items`;
    case ValueErrorType.String:
    case ValueErrorType.Integer:
    case ValueErrorType.Number:
    case ValueErrorType.Boolean:
    case ValueErrorType.Object:
    case ValueErrorType.Array:
      return `Invalid value: ${show(error.value)}: must be of type ${schema.type}`;
    default:
      return error.message;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Whether `value` has the JSON type the schema node declares (CEL only sees well-typed values). */
function hasSchemaType(schema: JsonSchema, value: unknown): boolean {
  switch (schema.type) {
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
    default:
      return true;
  }
}

/** The schema of a record's values (Type.Record), if `schema` is one. */
function recordValues(schema: JsonSchema): JsonSchema | undefined {
  const patterns = schema.patternProperties as Record<string, JsonSchema> | undefined;
  return patterns === undefined ? undefined : Object.values(patterns)[0];
}

/** Duplicates in `set` lists and duplicate keys in `map` lists, reported as the API server does. */
function listErrors(schema: JsonSchema, value: unknown, path: string): string[] {
  const errors: string[] = [];
  if (Array.isArray(value)) {
    const listType = schema['x-kubernetes-list-type'];
    const mapKeys = schema['x-kubernetes-list-map-keys'] as string[] | undefined;
    if (listType === 'set' || (listType === 'map' && mapKeys !== undefined)) {
      const seen = new Set<string>();
      value.forEach((item, index) => {
        const identity =
          listType === 'set'
            ? show(item)
            : show(Object.fromEntries(mapKeys!.map((key) => [key, isObject(item) ? item[key] : undefined])));
        if (seen.has(identity)) errors.push(`${path}[${index}]: Duplicate value: ${identity}`);
        seen.add(identity);
      });
    }
    const items = schema.items as JsonSchema | undefined;
    if (items !== undefined) {
      for (const [index, item] of value.entries())
        errors.push(...listErrors(items, item, `${path}[${index}]`));
    }
  } else if (isObject(value)) {
    for (const [key, child] of childSchemas(schema, value))
      errors.push(...listErrors(child, value[key], join(path, key)));
  }
  return errors;
}

/** The (key, schema) pairs of an object value's known properties and record entries. */
function childSchemas(schema: JsonSchema, value: Record<string, unknown>): [string, JsonSchema][] {
  const properties = schema.properties as Record<string, JsonSchema> | undefined;
  if (properties !== undefined) return Object.entries(properties).filter(([key]) => value[key] !== undefined);
  const values = recordValues(schema);
  return values === undefined ? [] : Object.keys(value).map((key) => [key, values]);
}

/** The CEL rules' TypeScript twins, run over the value (and the stored value, for transition rules). */
function ruleErrors(schema: JsonSchema, value: unknown, old: unknown, path: string): string[] {
  if (value === undefined || !hasSchemaType(schema, value)) return [];
  const errors: string[] = [];
  for (const rule of (schema['x-kubernetes-validations'] as CelRule[] | undefined) ?? []) {
    const check = celCheck(rule);
    if (check === undefined)
      throw new Error(`${path}: CEL rule ${JSON.stringify(rule.rule)} has no TypeScript twin`);
    const transition = isTransitionRule(rule);
    if (transition && (old === undefined || !hasSchemaType(schema, old))) continue;
    if (!check(value, transition ? old : undefined)) {
      errors.push(`${(rule.fieldPath ? `${path}${rule.fieldPath}` : path) || '<root>'}: ${rule.message}`);
    }
  }
  if (Array.isArray(value)) {
    const items = schema.items as JsonSchema | undefined;
    if (items === undefined) return errors;
    const mapKeys = schema['x-kubernetes-list-map-keys'] as string[] | undefined;
    const oldItems = Array.isArray(old) && schema['x-kubernetes-list-type'] === 'map' ? old : [];
    value.forEach((item, index) => {
      // Only map-list items have a stored counterpart: the one with the same keys.
      const counterpart = oldItems.find(
        (candidate) =>
          isObject(candidate) &&
          isObject(item) &&
          (mapKeys ?? []).every((key) => candidate[key] === item[key]),
      );
      errors.push(...ruleErrors(items, item, counterpart, `${path}[${index}]`));
    });
  } else if (isObject(value)) {
    for (const [key, child] of childSchemas(schema, value)) {
      errors.push(...ruleErrors(child, value[key], isObject(old) ? old[key] : undefined, join(path, key)));
    }
  }
  return errors;
}
