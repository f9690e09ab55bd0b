import { describe, expect, it } from 'vitest';
import { type AuthChallenge, findChallenge, parseAuthChallenges } from './challenge.ts';

describe('parseAuthChallenges', () => {
  const cases: Array<[string, string | null | undefined, AuthChallenge[]]> = [
    ['absent header', null, []],
    ['empty header', '', []],
    [
      'Docker Hub bearer',
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/nginx:pull',
          },
        },
      ],
    ],
    [
      'scope with a comma inside quotes (push,pull)',
      'Bearer realm="https://r.example/token",scope="repository:a/b:pull,push",service="r.example"',
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://r.example/token',
            scope: 'repository:a/b:pull,push',
            service: 'r.example',
          },
        },
      ],
    ],
    [
      'case-insensitive scheme and parameter names',
      'BEARER Realm="https://x/token", SERVICE=x',
      [{ scheme: 'bearer', params: { realm: 'https://x/token', service: 'x' } }],
    ],
    [
      'basic with a realm',
      'Basic realm="Registry Realm"',
      [{ scheme: 'basic', params: { realm: 'Registry Realm' } }],
    ],
    ['bare scheme', 'Basic', [{ scheme: 'basic', params: {} }]],
    [
      'two challenges in one header',
      'Basic realm="x", Bearer realm="https://t/token",service="t"',
      [
        { scheme: 'basic', params: { realm: 'x' } },
        { scheme: 'bearer', params: { realm: 'https://t/token', service: 't' } },
      ],
    ],
    [
      'escaped quote and backslash in a quoted value',
      'Bearer realm="a\\"b\\\\c",error="insufficient_scope"',
      [{ scheme: 'bearer', params: { realm: 'a"b\\c', error: 'insufficient_scope' } }],
    ],
    [
      'whitespace around "=" and commas',
      'Bearer realm = "https://t/token" ,  service = "t"',
      [{ scheme: 'bearer', params: { realm: 'https://t/token', service: 't' } }],
    ],
    [
      'token68 followed by another challenge',
      'Negotiate YIIC4wYGKwYBBQUCoIIC1zCCAtOgMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHg==, Basic realm="r"',
      [
        {
          scheme: 'negotiate',
          params: {},
          token68: 'YIIC4wYGKwYBBQUCoIIC1zCCAtOgMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHg==',
        },
        { scheme: 'basic', params: { realm: 'r' } },
      ],
    ],
    [
      'unterminated quoted value keeps what there is',
      'Bearer realm="https://t/token',
      [{ scheme: 'bearer', params: { realm: 'https://t/token' } }],
    ],
    [
      'empty quoted value',
      'Bearer realm="https://t/token",service=""',
      [{ scheme: 'bearer', params: { realm: 'https://t/token', service: '' } }],
    ],
    [
      'leading commas and junk are skipped',
      ', , Bearer realm="r"',
      [{ scheme: 'bearer', params: { realm: 'r' } }],
    ],
  ];
  it.each(cases)('%s', (_name, header, expected) => {
    expect(parseAuthChallenges(header)).toEqual(expected);
  });

  it('finds a challenge by scheme, case-insensitively', () => {
    const challenges = parseAuthChallenges('Basic realm="b", Bearer realm="t"');
    expect(findChallenge(challenges, 'Bearer')?.params.realm).toBe('t');
    expect(findChallenge(challenges, 'BASIC')?.params.realm).toBe('b');
    expect(findChallenge(challenges, 'digest')).toBeUndefined();
  });
});
