/**
 * The CustomResourceDefinitions, built from the TypeBox schemas: the schemas are the source of
 * truth, `pnpm crds` writes crds/*.yaml from here, and a unit test fails when those files drift.
 *
 * TypeBox emits JSON Schema; a CRD takes a structural OpenAPI v3 subset of it. The conversion turns
 * unions of literals into `enum`, TypeBox records into `additionalProperties`, drops what a CRD
 * cannot hold (`additionalProperties: false`, `$id`, TypeBox's symbol keys) and refuses any other key
 * it does not know, so a misspelt keyword fails generation instead of vanishing.
 */
import { Kind, type TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';
import { CATEGORY, GROUP, IMAGE_UPDATE, VERSION, WATCHED_IMAGE } from '../constants.ts';
import { IMAGE_UPDATE_PRINTER_COLUMNS, ImageUpdate } from './image-update.ts';
import type { PrinterColumn } from './meta.ts';
import { WATCHED_IMAGE_PRINTER_COLUMNS, WatchedImage } from './watched-image.ts';

/** apiextensions.k8s.io/v1 JSONSchemaProps, the subset these CRDs use. */
export interface CrdSchema {
  description?: string;
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  enum?: unknown[];
  default?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  items?: CrdSchema;
  properties?: Record<string, CrdSchema>;
  additionalProperties?: CrdSchema;
  required?: string[];
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: { rule: string; message?: string; fieldPath?: string; reason?: string }[];
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: 'Namespaced';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      selectableFields?: { jsonPath: string }[];
      schema: { openAPIV3Schema: CrdSchema };
    }[];
  };
}

// Copied as they are, in this order (the order the YAML is written in).
const COPIED_KEYS = [
  'description',
  'type',
  'format',
  'enum',
  'default',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
] as const;
const EXTENSION_KEYS = [
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
] as const;
// Handled structurally below, or TypeBox bookkeeping a CRD has no place for.
const CONVERTED_KEYS = new Set([
  'items',
  'properties',
  'required',
  'additionalProperties',
  'patternProperties',
  'anyOf',
  'const',
  'x-kubernetes-validations',
]);
const DROPPED_KEYS = new Set(['$id', '$schema', 'title', 'examples']);

type JsonSchema = Record<string, unknown>;

/** A TypeBox schema as a CRD's structural OpenAPI v3 schema. */
export function toCrdSchema(schema: TSchema | JsonSchema, path = ''): CrdSchema {
  const source = schema as JsonSchema;
  for (const key of Object.keys(source)) {
    const known =
      (COPIED_KEYS as readonly string[]).includes(key) ||
      (EXTENSION_KEYS as readonly string[]).includes(key) ||
      CONVERTED_KEYS.has(key) ||
      DROPPED_KEYS.has(key);
    if (!known)
      throw new Error(`${path || '<root>'}: schema keyword ${JSON.stringify(key)} has no place in a CRD`);
  }
  const result: Record<string, unknown> = {};
  for (const key of COPIED_KEYS) if (source[key] !== undefined) result[key] = source[key];

  const literals = literalValues(source);
  if (literals !== undefined) {
    result.type = typeof literals[0];
    result.enum = literals;
  } else if (source.anyOf !== undefined) {
    throw new Error(`${path}: only unions of literals (enums) can go into a CRD`);
  }
  if (source.items !== undefined) result.items = toCrdSchema(source.items as JsonSchema, `${path}[]`);
  if (source.properties !== undefined) {
    const properties: Record<string, CrdSchema> = {};
    for (const [name, property] of Object.entries(source.properties as Record<string, JsonSchema>)) {
      properties[name] = toCrdSchema(property, path ? `${path}.${name}` : name);
    }
    result.properties = properties;
    const required = source.required as string[] | undefined;
    if (required !== undefined && required.length > 0) result.required = [...required];
  }
  if (source.patternProperties !== undefined) {
    // Type.Record(Type.String(), V): any key, values V.
    const values = Object.values(source.patternProperties as Record<string, JsonSchema>);
    if (values.length !== 1 || (schema as TSchema)[Kind] !== 'Record')
      throw new Error(`${path}: unsupported patternProperties`);
    result.additionalProperties = toCrdSchema(values[0]!, `${path}[*]`);
  } else if (typeof source.additionalProperties === 'object') {
    result.additionalProperties = toCrdSchema(source.additionalProperties as JsonSchema, `${path}[*]`);
  }
  for (const key of EXTENSION_KEYS) if (source[key] !== undefined) result[key] = source[key];
  const rules = source['x-kubernetes-validations'] as CrdSchema['x-kubernetes-validations'];
  if (rules !== undefined) {
    // Rebuilt field by field: the TypeScript twin rides on the rule object under a symbol.
    result['x-kubernetes-validations'] = rules.map(({ rule, message, fieldPath, reason }) => ({
      rule,
      ...(message === undefined ? {} : { message }),
      ...(fieldPath === undefined ? {} : { fieldPath }),
      ...(reason === undefined ? {} : { reason }),
    }));
  }
  return inCanonicalOrder(result) as CrdSchema;
}

// The order keys are written in: what a reader looks for first, first.
const KEY_ORDER = [
  ...COPIED_KEYS,
  'items',
  'properties',
  'additionalProperties',
  'required',
  ...EXTENSION_KEYS,
  'x-kubernetes-validations',
];

function inCanonicalOrder(schema: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    KEY_ORDER.filter((key) => schema[key] !== undefined).map((key) => [key, schema[key]]),
  );
}

/** The values of a literal or a union of literals, else undefined. */
function literalValues(schema: JsonSchema): unknown[] | undefined {
  if (schema.const !== undefined) return [schema.const];
  const variants = schema.anyOf as JsonSchema[] | undefined;
  if (variants === undefined || !variants.every((variant) => variant.const !== undefined)) return undefined;
  const values = variants.map((variant) => variant.const);
  if (new Set(values.map((value) => typeof value)).size !== 1) return undefined;
  return values;
}

const API_VERSION_DESCRIPTION =
  'APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources';
const KIND_DESCRIPTION =
  'Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds';

/** The openAPIV3Schema of a kind: spec and status from the schema; apiVersion, kind and metadata as the API server wants them. */
export function rootSchema(schema: TSchema): CrdSchema {
  const root = toCrdSchema(schema);
  const properties = root.properties ?? {};
  return {
    ...root,
    properties: {
      ...properties,
      apiVersion: { description: API_VERSION_DESCRIPTION, type: 'string' },
      kind: { description: KIND_DESCRIPTION, type: 'string' },
      // The API server owns metadata's schema; a CRD may only say it is an object.
      metadata: { type: 'object' },
    },
    // apiVersion, kind and metadata are the server's to require.
    required: (root.required ?? []).filter((name) => !['apiVersion', 'kind', 'metadata'].includes(name)),
  };
}

interface KindNames {
  kind: string;
  plural: string;
  singular: string;
  shortName: string;
}

function customResourceDefinition(
  names: KindNames,
  schema: TSchema,
  columns: readonly PrinterColumn[],
  selectableFields: readonly string[] = [],
): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${names.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: names.kind,
        listKind: `${names.kind}List`,
        plural: names.plural,
        singular: names.singular,
        shortNames: [names.shortName],
        categories: [CATEGORY],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [...columns],
          ...(selectableFields.length > 0
            ? { selectableFields: selectableFields.map((jsonPath) => ({ jsonPath })) }
            : {}),
          schema: { openAPIV3Schema: rootSchema(schema) },
        },
      ],
    },
  };
}

export const WATCHED_IMAGE_CRD = customResourceDefinition(
  WATCHED_IMAGE,
  WatchedImage,
  WATCHED_IMAGE_PRINTER_COLUMNS,
);
// A field selector on the WatchedImage name also works where the name is too long for the label.
export const IMAGE_UPDATE_CRD = customResourceDefinition(
  IMAGE_UPDATE,
  ImageUpdate,
  IMAGE_UPDATE_PRINTER_COLUMNS,
  ['.spec.watchedImage'],
);

const HEADER = [
  '# Code generated by packages/shared/scripts/generate-crds.ts from packages/shared/src/api. DO NOT EDIT.',
  '# Change the TypeBox schemas and run `pnpm crds`; a unit test fails when this file drifts.',
].join('\n');

/** A CRD as the YAML file the repository holds. */
export function renderCrd(crd: CustomResourceDefinition): string {
  return `${HEADER}\n---\n${stringify(crd, { lineWidth: 0 })}`;
}

/** The generated files, by path relative to the repository root. */
export function crdFiles(): { path: string; content: string }[] {
  return [WATCHED_IMAGE_CRD, IMAGE_UPDATE_CRD].map((crd) => ({
    path: `crds/${crd.spec.group}_${crd.spec.names.plural}.yaml`,
    content: renderCrd(crd),
  }));
}
