import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareKeys, namespacedKey, objectKey, splitKey } from './object-key.ts';

describe('object keys', () => {
  it.each([
    [undefined, 'node-1', 'node-1'],
    ['team-a', 'web', 'team-a/web'],
  ])('namespace %s, name %s → %s, and back', (namespace, name, key) => {
    expect(namespacedKey(namespace, name)).toBe(key);
    expect(objectKey({ metadata: { name, ...(namespace ? { namespace } : {}) } })).toBe(key);
    expect(splitKey(key)).toEqual(namespace ? { namespace, name } : { name });
  });
});

describe('compareKeys', () => {
  it('orders by code unit, upper case before lower case, in any locale', () => {
    const keys = ['b/web', 'a/web-2', 'a/web', 'Deployment/x', 'CronJob/y', 'a/web.1', 'a/Web'];
    expect([...keys].sort(compareKeys)).toEqual([
      'CronJob/y',
      'Deployment/x',
      'a/Web',
      'a/web',
      'a/web-2',
      'a/web.1',
      'b/web',
    ]);
  });

  it('agrees with the default sort and is antisymmetric', () => {
    fc.assert(
      fc.property(fc.array(fc.string()), (values) => {
        expect([...values].sort(compareKeys)).toEqual([...values].sort());
        for (const [a, b] of values.slice(1).map((v, i) => [values[i]!, v] as const)) {
          expect(Math.sign(compareKeys(a, b)) + Math.sign(compareKeys(b, a))).toBe(0);
        }
      }),
    );
  });
});
