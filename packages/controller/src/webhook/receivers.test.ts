import { describe, expect, it } from 'vitest';
import {
  authenticate,
  parseReceivers,
  pathTokenMatches,
  ReceiverConfigError,
  signBody,
  splitHookPath,
  validSignature,
} from './receivers.ts';

const TOKEN = 'tok-0123456789abcdef0123456789abcdef';
const SECRET = 'hmac-0123456789abcdef0123456789abcdef';
const AUTH = 'Bearer 0123456789abcdef0123456789abcdef';

describe('parseReceivers', () => {
  it('reads every kind of receiver', () => {
    const text = `
receivers:
  - { name: hub, format: dockerhub, token: ${TOKEN} }
  - { name: gh, format: github, hmacSecret: ${SECRET} }
  - { name: harbor, format: harbor, token: ${TOKEN}, authorization: "${AUTH}" }
  - { name: local, format: distribution, authorization: "${AUTH}", registry: registry.acme.io }
`;
    expect(parseReceivers(text)).toEqual([
      { name: 'hub', format: 'dockerhub', token: TOKEN },
      { name: 'gh', format: 'github', hmacSecret: SECRET },
      { name: 'harbor', format: 'harbor', token: TOKEN, authorization: AUTH },
      { name: 'local', format: 'distribution', authorization: AUTH, registry: 'registry.acme.io' },
    ]);
  });

  const bad: [string, string, string][] = [
    ['no list', 'receivers: {}', 'must hold "receivers:", a list'],
    [
      'unknown format',
      `receivers: [{ name: a, format: gitlab, token: ${TOKEN} }]`,
      'receivers[0].format "gitlab" must be one of',
    ],
    [
      'bad name',
      `receivers: [{ name: A_b, format: quay, token: ${TOKEN} }]`,
      'receivers[0].name "A_b" must be a DNS label',
    ],
    [
      'twice',
      `receivers: [{ name: a, format: quay, token: ${TOKEN} }, { name: a, format: quay, token: ${TOKEN} }]`,
      'receivers[1].name "a" is used twice',
    ],
    [
      'short token',
      'receivers: [{ name: a, format: quay, token: short }]',
      'receivers[0].token must be at least 32 characters',
    ],
    [
      'no secret',
      'receivers: [{ name: a, format: generic }]',
      'receivers[0] (a) needs a token, an hmacSecret or an authorization',
    ],
    [
      'Docker Hub cannot sign',
      `receivers: [{ name: a, format: dockerhub, hmacSecret: ${SECRET} }]`,
      'format dockerhub does not sign',
    ],
    [
      'Quay sends no header',
      `receivers: [{ name: a, format: quay, authorization: "${AUTH}" }]`,
      'format quay sends no Authorization',
    ],
    [
      'unknown field',
      `receivers: [{ name: a, format: quay, token: ${TOKEN}, secret: x }]`,
      'receivers[0].secret is not a receiver field',
    ],
  ];
  it.each(bad)('refuses %s', (_, text, message) => {
    expect(() => parseReceivers(text)).toThrow(ReceiverConfigError);
    expect(() => parseReceivers(text)).toThrow(message);
  });

  it('never repeats a secret in its errors', () => {
    try {
      parseReceivers(`receivers: [{ name: a, format: quay, token: ${TOKEN.slice(0, 20)} }]`);
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain(TOKEN.slice(0, 20));
    }
  });
});

describe('splitHookPath', () => {
  it.each([
    ['/hook/hub/abc', { name: 'hub', token: 'abc' }],
    ['/hook/gh', { name: 'gh' }],
    ['/hook/gh/', { name: 'gh' }],
    ['/hook/a%2Fb', undefined],
    ['/metrics', undefined],
    ['/hook/hub/abc/extra', undefined],
    ['/hook/hub/%E0%A4%A', undefined],
  ])('%s', (path, expected) => {
    expect(splitHookPath(path)).toEqual(expected);
  });
});

describe('authenticate', () => {
  const body = Buffer.from('{"image":"web","tag":"1"}');

  it('GitHub: the signature of the raw body', () => {
    const gh = { name: 'gh', format: 'github' as const, hmacSecret: SECRET };
    expect(authenticate(gh, { body, signature: signBody(SECRET, body) })).toBe(true);
    expect(authenticate(gh, { body, signature: signBody(SECRET, Buffer.from(`${body} `)) })).toBe(false);
    expect(authenticate(gh, { body, signature: signBody(`${SECRET}x`, body) })).toBe(false);
    expect(authenticate(gh, { body })).toBe(false);
    expect(authenticate(gh, { body, signature: 'sha1=abc' })).toBe(false);
  });

  it('token and header both required when both are set', () => {
    const harbor = { name: 'h', format: 'harbor' as const, token: TOKEN, authorization: AUTH };
    expect(authenticate(harbor, { body, pathToken: TOKEN, authorization: AUTH })).toBe(true);
    expect(authenticate(harbor, { body, pathToken: TOKEN })).toBe(false);
    expect(authenticate(harbor, { body, authorization: AUTH })).toBe(false);
    expect(authenticate(harbor, { body, pathToken: `${TOKEN}x`, authorization: AUTH })).toBe(false);
  });

  it('path token checked on its own before the body is read', () => {
    expect(pathTokenMatches({ name: 'q', format: 'quay', token: TOKEN }, TOKEN)).toBe(true);
    expect(pathTokenMatches({ name: 'q', format: 'quay', token: TOKEN }, undefined)).toBe(false);
    expect(pathTokenMatches({ name: 'g', format: 'github', hmacSecret: SECRET }, undefined)).toBe(true);
  });

  it('validSignature accepts upper-case hex and refuses a truncated one', () => {
    const sig = signBody(SECRET, body);
    expect(validSignature(SECRET, body, sig.toUpperCase().replace('SHA256', 'sha256'))).toBe(true);
    expect(validSignature(SECRET, body, sig.slice(0, -2))).toBe(false);
  });
});
