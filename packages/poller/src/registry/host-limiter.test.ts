import { describe, expect, it } from 'vitest';
import { HostLimiter } from './host-limiter.ts';

describe('HostLimiter', () => {
  it('holds requests beyond the limit per host, and only for that host', async () => {
    const limiter = new HostLimiter(2);
    const a1 = await limiter.acquire('a');
    const a2 = await limiter.acquire('a');
    let third = false;
    const a3 = limiter.acquire('a').then((r) => {
      third = true;
      return r;
    });
    const b1 = await limiter.acquire('b');
    await Promise.resolve();
    expect(third).toBe(false);
    expect(limiter.active('a')).toBe(2);
    a1();
    const r3 = await a3;
    expect(third).toBe(true);
    expect(limiter.active('a')).toBe(2);
    a2();
    r3();
    b1();
    expect(limiter.active('a')).toBe(0);
    expect(limiter.active('b')).toBe(0);
  });

  it('ignores a second release of the same slot', async () => {
    const limiter = new HostLimiter(1);
    const r = await limiter.acquire('a');
    r();
    r();
    expect(limiter.active('a')).toBe(0);
    const again = await limiter.acquire('a');
    expect(limiter.active('a')).toBe(1);
    again();
  });

  it('refuses a limit below 1', () => {
    expect(() => new HostLimiter(0)).toThrow(RangeError);
  });
});
