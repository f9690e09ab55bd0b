import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES } from '../message.ts';
import {
  CONDITION_TYPE,
  findCondition,
  isConditionTrue,
  kubeTime,
  READY_REASON,
  RESOLVED_REASON,
  setCondition,
} from './conditions.ts';
import type { Condition } from './meta.ts';
import { validateWatchedImage } from './validation.ts';

const T0 = new Date('2025-01-31T12:00:00.123Z');
const T1 = new Date('2025-01-31T12:05:00.999Z');

const resolved: Condition = {
  type: CONDITION_TYPE.Resolved,
  status: 'True',
  lastTransitionTime: '2025-01-31T11:00:00Z',
  reason: RESOLVED_REASON.Resolved,
  message: 'sha256:…',
};

describe('setCondition', () => {
  it('bounds the message and keeps it on one line, whatever a registry or the API server sent', () => {
    const hostile = `${'x'.repeat(40_000)}\n\u202eforged line`;
    const [written] = setCondition(
      undefined,
      { type: 'Resolved', status: 'False', reason: 'RegistryError', message: hostile },
      T0,
    );
    expect(Buffer.byteLength(written!.message)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(written!.message).not.toMatch(/[\n\u202e]/);
    expect(written!.message.endsWith('…')).toBe(true);
  });

  it('appends a new condition with lastTransitionTime now, in whole seconds', () => {
    expect(
      setCondition(
        undefined,
        { type: 'Ready', status: 'True', reason: READY_REASON.WorkloadsFound, message: '2' },
        T0,
      ),
    ).toEqual([
      {
        type: 'Ready',
        status: 'True',
        lastTransitionTime: '2025-01-31T12:00:00Z',
        reason: 'WorkloadsFound',
        message: '2',
      },
    ]);
  });

  it('keeps lastTransitionTime while the status stays, even when reason and message change', () => {
    const next = setCondition(
      [resolved],
      {
        type: 'Resolved',
        status: 'True',
        reason: 'Resolved',
        message: 'other digest',
        observedGeneration: 2,
      },
      T1,
    );
    expect(next).toEqual([
      {
        ...resolved,
        message: 'other digest',
        observedGeneration: 2,
        lastTransitionTime: '2025-01-31T11:00:00Z',
      },
    ]);
  });

  it('moves lastTransitionTime when the status flips', () => {
    const next = setCondition(
      [resolved],
      { type: 'Resolved', status: 'False', reason: RESOLVED_REASON.RateLimited, message: '429' },
      T1,
    );
    expect(next[0]).toMatchObject({
      status: 'False',
      reason: 'RateLimited',
      lastTransitionTime: '2025-01-31T12:05:00Z',
    });
  });

  it('replaces in place, leaves the other types alone and never mutates its input', () => {
    const ready: Condition = { ...resolved, type: 'Ready', reason: 'WorkloadsFound' };
    const input = [resolved, ready];
    const frozen = structuredClone(input);
    const next = setCondition(
      input,
      { type: 'Resolved', status: 'Unknown', reason: 'Suspended', message: '' },
      T0,
    );
    expect(next.map((condition) => condition.type)).toEqual(['Resolved', 'Ready']);
    expect(next[1]).toBe(ready);
    expect(input).toEqual(frozen);
  });

  it('produces conditions the schema accepts', () => {
    const conditions = setCondition(
      [],
      { type: 'Ready', status: 'False', reason: 'NoWorkloads', message: '' },
      T0,
    );
    const result = validateWatchedImage({
      apiVersion: 'kubewatcher.io/v1alpha1',
      kind: 'WatchedImage',
      metadata: { name: 'web' },
      spec: { image: 'nginx' },
      status: { conditions },
    });
    expect(result.ok).toBe(true);
  });
});

describe('condition lookups', () => {
  it('finds by type and reads True', () => {
    expect(findCondition([resolved], 'Resolved')).toBe(resolved);
    expect(findCondition(undefined, 'Resolved')).toBeUndefined();
    expect(isConditionTrue([resolved], 'Resolved')).toBe(true);
    expect(isConditionTrue([{ ...resolved, status: 'Unknown' }], 'Resolved')).toBe(false);
    expect(isConditionTrue([resolved], 'Ready')).toBe(false);
  });

  it('formats metav1.Time', () => {
    expect(kubeTime(T1)).toBe('2025-01-31T12:05:00Z');
  });
});
