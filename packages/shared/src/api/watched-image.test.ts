import { describe, expect, it } from 'vitest';
import { historyLimitOf, intervalOf, kindsOf, updatePolicyOf, WatchedImageSpec } from './watched-image.ts';

describe('the spec getters', () => {
  it('give the defaults the CRD declares when a field is absent', () => {
    const fields = WatchedImageSpec.properties;
    expect(kindsOf({})).toEqual(fields.kinds.default);
    expect(historyLimitOf({})).toBe(fields.historyLimit.default);
    expect(intervalOf({})).toBe(fields.interval.default);
    expect(updatePolicyOf({})).toBe(fields.updatePolicy.default);
  });

  it('give the field when it is set', () => {
    expect(kindsOf({ kinds: ['StatefulSet'] })).toEqual(['StatefulSet']);
    expect(historyLimitOf({ historyLimit: 3 })).toBe(3);
    expect(intervalOf({ interval: '1h' })).toBe('1h');
    expect(updatePolicyOf({ updatePolicy: 'Manual' })).toBe('Manual');
  });
});
