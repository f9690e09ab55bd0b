import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type TSchema, Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { type CelRule, celCheck, celRule } from './cel.ts';
import {
  type CrdSchema,
  type CustomResourceDefinition,
  crdFiles,
  IMAGE_UPDATE_CRD,
  toCrdSchema,
  WATCHED_IMAGE_CRD,
} from './crd.ts';
import { ImageUpdate } from './image-update.ts';
import { WatchedImage } from './watched-image.ts';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const crds: [string, CustomResourceDefinition][] = [
  ['WatchedImage', WATCHED_IMAGE_CRD],
  ['ImageUpdate', IMAGE_UPDATE_CRD],
];

/** Every schema node with its field path. */
function* nodes(schema: CrdSchema, path: string): Generator<[string, CrdSchema]> {
  yield [path, schema];
  for (const [name, property] of Object.entries(schema.properties ?? {}))
    yield* nodes(property, `${path}.${name}`);
  if (schema.items) yield* nodes(schema.items, `${path}[]`);
  if (schema.additionalProperties) yield* nodes(schema.additionalProperties, `${path}[*]`);
}

function openApiSchema(crd: CustomResourceDefinition): CrdSchema {
  return crd.spec.versions[0]!.schema.openAPIV3Schema;
}

describe('generated CRD files', () => {
  it.each(crdFiles())(
    '$path matches the schemas (run `pnpm crds` after changing them)',
    ({ path, content }) => {
      expect(readFileSync(`${root}${path}`, 'utf8')).toBe(content);
    },
  );

  it('generate-crds --check agrees', async () => {
    const script = `${root}packages/shared/scripts/generate-crds.ts`;
    const { stdout } = await promisify(execFile)(process.execPath, [script, '--check']);
    expect(stdout).toContain('up to date');
  });
});

describe.each(crds)('%s CRD', (_kind, crd) => {
  const schema = openApiSchema(crd);

  it('describes every field, so kubectl explain answers', () => {
    const undocumented = [...nodes(schema, '')]
      .filter(([path, node]) => path !== '.metadata' && !node.description?.trim())
      .map(([path]) => path || '<root>');
    expect(undocumented).toEqual([]);
  });

  it('is structural: every node has a type, and nothing is free-form', () => {
    for (const [path, node] of nodes(schema, '')) {
      expect(node.type, path).toBeDefined();
      if (node.type === 'object' && path !== '.metadata') {
        expect(node.properties !== undefined || node.additionalProperties !== undefined, path).toBe(true);
      }
      expect(
        Object.keys(node).some((key) => key.startsWith('$')),
        path,
      ).toBe(false);
    }
  });

  it('keys map lists by required scalar fields and sets by scalars', () => {
    for (const [path, node] of nodes(schema, '')) {
      if (node['x-kubernetes-list-type'] === 'map') {
        const keys = node['x-kubernetes-list-map-keys'] ?? [];
        expect(keys.length, path).toBeGreaterThan(0);
        for (const key of keys) {
          expect(node.items?.required, `${path} key ${key}`).toContain(key);
          expect(['string', 'integer'], `${path} key ${key}`).toContain(node.items?.properties?.[key]?.type);
        }
      }
      if (node['x-kubernetes-list-type'] === 'set') {
        expect(['string', 'integer', 'boolean'], path).toContain(node.items?.type);
      }
    }
  });

  it('has printer columns that point at declared fields', () => {
    for (const column of crd.spec.versions[0]!.additionalPrinterColumns) {
      if (column.jsonPath === '.metadata.creationTimestamp') continue;
      // `.status.conditions[?(@.type=="Ready")].status` walks conditions' items.
      const segments = column.jsonPath
        .replace(/\[\?\(@\.type=="\w+"\)\]/g, '[]')
        .split('.')
        .slice(1);
      let node: CrdSchema | undefined = schema;
      for (const segment of segments) {
        const [name, each] = segment.endsWith('[]') ? [segment.slice(0, -2), true] : [segment, false];
        node = node?.properties?.[name];
        if (each) node = node?.items;
      }
      expect(node, column.jsonPath).toBeDefined();
      const expected = column.type === 'date' ? 'string' : column.type;
      expect(node?.type, column.jsonPath).toBe(expected);
    }
  });

  it('declares the names, category and status subresource', () => {
    expect(crd.spec.names.categories).toEqual(['kubewatcher']);
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.spec.versions[0]!.subresources).toEqual({ status: {} });
  });
});

describe('CEL rules', () => {
  function* rules(schema: TSchema): Generator<CelRule> {
    const node = schema as Record<string, unknown>;
    yield* (node['x-kubernetes-validations'] as CelRule[] | undefined) ?? [];
    for (const key of ['properties', 'patternProperties'] as const) {
      for (const child of Object.values((node[key] as Record<string, TSchema> | undefined) ?? {}))
        yield* rules(child);
    }
    if (node.items) yield* rules(node.items as TSchema);
    if (node.anyOf) for (const child of node.anyOf as TSchema[]) yield* rules(child);
  }

  it.each([
    ['WatchedImage', WatchedImage],
    ['ImageUpdate', ImageUpdate],
  ])('every %s rule has a TypeScript twin for client-side validation', (_kind, schema) => {
    const all = [...rules(schema)];
    expect(all.length).toBeGreaterThan(0);
    for (const rule of all) expect(celCheck(rule), rule.rule).toBeTypeOf('function');
  });

  it('are written without the TypeScript twin', () => {
    const rule = celRule<string>('self.size() > 0', 'must not be empty', (self) => self.length > 0);
    expect(toCrdSchema(Type.String({ description: 'd', 'x-kubernetes-validations': [rule] }))).toEqual({
      description: 'd',
      type: 'string',
      'x-kubernetes-validations': [{ rule: 'self.size() > 0', message: 'must not be empty' }],
    });
  });
});

describe('toCrdSchema', () => {
  it('turns unions of literals into enums and records into additionalProperties', () => {
    const schema = Type.Object({
      mode: Type.Union([Type.Literal('A'), Type.Literal('B')], { description: 'mode', default: 'A' }),
      labels: Type.Optional(
        Type.Record(Type.String(), Type.String({ description: 'v' }), { description: 'l' }),
      ),
    });
    expect(toCrdSchema(schema)).toEqual({
      type: 'object',
      properties: {
        mode: { description: 'mode', type: 'string', enum: ['A', 'B'], default: 'A' },
        labels: {
          description: 'l',
          type: 'object',
          additionalProperties: { description: 'v', type: 'string' },
        },
      },
      required: ['mode'],
    });
  });

  it('drops what a CRD cannot hold and refuses keywords it does not know', () => {
    expect(toCrdSchema(Type.Object({}, { $id: 'x', additionalProperties: false }))).toEqual({
      type: 'object',
      properties: {},
    });
    expect(() => toCrdSchema(Type.Object({ name: Type.String({ maxlength: 3 }) }))).toThrow(
      'name: schema keyword "maxlength" has no place in a CRD',
    );
    expect(() => toCrdSchema(Type.Union([Type.String(), Type.Integer()]))).toThrow('only unions of literals');
  });
});
