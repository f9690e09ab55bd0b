import { describe, expect, it } from 'vitest';
import { lazyBuiltin, startupSnapshotBlob } from './startup-snapshot.ts';

describe('startupSnapshotBlob', () => {
  it('finds the blob among node’s own arguments, in both spellings, as an absolute path', () => {
    expect(
      startupSnapshotBlob(['--max-old-space-size=128', '--snapshot-blob', '/app/poller/main.blob']),
    ).toBe('/app/poller/main.blob');
    expect(startupSnapshotBlob(['--snapshot-blob=/app/controller/main.blob'])).toBe(
      '/app/controller/main.blob',
    );
    expect(startupSnapshotBlob(['--snapshot-blob', 'main.blob'])).toBe(`${process.cwd()}/main.blob`);
    expect(startupSnapshotBlob(['--max-semi-space-size=2'])).toBeUndefined();
    expect(startupSnapshotBlob(['--snapshot-blob'])).toBeUndefined();
  });
});

describe('lazyBuiltin, outside a snapshot build', () => {
  it('gives the real module’s exports, loading it at the first read', () => {
    let loads = 0;
    const http = process.getBuiltinModule('node:http');
    const lazy = lazyBuiltin(
      'http',
      () => {
        loads++;
        return http as unknown as Record<string, unknown>;
      },
      {
        Agent: { kind: 'function' },
        STATUS_CODES: { kind: 'value', value: {} },
        globalAgent: { kind: 'object' },
      },
    );
    expect(loads).toBe(0);
    expect(lazy.Agent).toBe(http.Agent);
    expect(lazy.STATUS_CODES).toBe(http.STATUS_CODES);
    expect(lazy.globalAgent).toBe(http.globalAgent);
    expect(Object.keys(lazy)).toEqual(['Agent', 'STATUS_CODES', 'globalAgent']);
  });
});
