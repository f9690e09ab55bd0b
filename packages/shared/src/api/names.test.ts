import { describe, expect, it } from 'vitest';
import { DNS1123_SUBDOMAIN_PATTERN, isDnsLabel, isDnsSubdomain } from './meta.ts';
import { imageUpdateName, shortDigest } from './names.ts';

const DIGEST = 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const subdomain = new RegExp(DNS1123_SUBDOMAIN_PATTERN);

describe('shortDigest', () => {
  it('keeps the first 12 hex digits', () => {
    expect(shortDigest(DIGEST)).toBe('0123456789ab');
  });

  it('refuses what is not a sha256 digest', () => {
    expect(() => shortDigest('0123456789abcdef')).toThrow(TypeError);
    expect(() => shortDigest('sha256:XYZ')).toThrow('not a sha256 digest');
  });
});

describe('imageUpdateName', () => {
  it('is the WatchedImage name and the first 10 hex digits of the new digest', () => {
    expect(imageUpdateName('web', DIGEST)).toBe('web-0123456789');
    expect(imageUpdateName('web.prod', DIGEST)).toBe('web.prod-0123456789');
  });

  it('is deterministic', () => {
    expect(imageUpdateName('web', DIGEST)).toBe(imageUpdateName('web', DIGEST));
  });

  it('keeps names that fit exactly', () => {
    const name = 'a'.repeat(242);
    expect(imageUpdateName(name, DIGEST)).toBe(`${name}-0123456789`);
    expect(imageUpdateName(name, DIGEST)).toHaveLength(253);
  });

  it('cuts long names to a valid DNS subdomain of at most 253 characters, unique per name', () => {
    const long = 'a'.repeat(253);
    const other = `${'a'.repeat(252)}b`;
    const name = imageUpdateName(long, DIGEST);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(subdomain);
    expect(name.endsWith('-0123456789')).toBe(true);
    expect(imageUpdateName(other, DIGEST)).not.toBe(name);
  });

  it('never leaves a label starting with a dash after a cut at a dot', () => {
    for (let dot = 225; dot < 240; dot++) {
      const long = `${'a'.repeat(dot)}.${'b'.repeat(252 - dot)}`;
      const name = imageUpdateName(long, DIGEST);
      expect(name, long).toMatch(subdomain);
      expect(name.length).toBeLessThanOrEqual(253);
    }
  });

  it('refuses a bad digest', () => {
    expect(() => imageUpdateName('web', 'latest')).toThrow(TypeError);
  });
});

describe('DNS names', () => {
  it.each([
    ['kubewatcher-system', true, true],
    ['a', true, true],
    ['kubewatcher.io', false, true],
    ['Kubewatcher', false, false],
    ['-a', false, false],
    ['a-', false, false],
    ['a..b', false, false],
    ['', false, false],
    ['a'.repeat(63), true, true],
    ['a'.repeat(64), false, true],
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, false, true],
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`, false, false],
  ])('%s: label %s, subdomain %s', (name, label, subdomain) => {
    expect(isDnsLabel(name)).toBe(label);
    expect(isDnsSubdomain(name)).toBe(subdomain);
  });
});
