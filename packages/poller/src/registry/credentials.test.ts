import { normalizeReference } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import {
  findCredential,
  findCredentials,
  type Keyring,
  PullSecretError,
  parseConfigKey,
  parseDockerConfigSecret,
} from './credentials.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');

function jsonSecret(auths: Record<string, unknown>, name = 'regcred') {
  return {
    metadata: { name, namespace: 'team' },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': b64(JSON.stringify({ auths })) },
  };
}

/** A keyring whose entries are tagged by username, so tables can say which one was picked. */
function keyring(servers: string[], source = 'team/regcred'): Keyring {
  const auths = Object.fromEntries(servers.map((s) => [s, { username: s, password: 'pw' }]));
  return { ...parseDockerConfigSecret(jsonSecret(auths)), source };
}

describe('parseDockerConfigSecret', () => {
  it('reads kubernetes.io/dockerconfigjson with username and password', () => {
    const ring = parseDockerConfigSecret(
      jsonSecret({ 'ghcr.io': { username: 'u', password: 'p', email: 'e@x' } }),
    );
    expect(ring.source).toBe('team/regcred');
    expect(ring.entries).toEqual([
      {
        server: 'ghcr.io',
        key: 'ghcr.io',
        host: 'ghcr.io',
        path: '',
        credential: { username: 'u', password: 'p' },
      },
    ]);
  });

  it('reads the legacy kubernetes.io/dockercfg without the auths wrapper', () => {
    const ring = parseDockerConfigSecret({
      metadata: { name: 'old' },
      type: 'kubernetes.io/dockercfg',
      data: { '.dockercfg': b64(JSON.stringify({ 'https://index.docker.io/v1/': { auth: b64('me:pw') } })) },
    });
    expect(ring.entries[0]).toMatchObject({
      key: 'index.docker.io',
      credential: { username: 'me', password: 'pw' },
    });
  });

  it('splits auth at the first colon and lets it override username and password', () => {
    const ring = parseDockerConfigSecret(
      jsonSecret({ 'r.example': { username: 'ignored', password: 'ignored', auth: b64('user:pa:ss:word') } }),
    );
    expect(ring.entries[0]!.credential).toEqual({ username: 'user', password: 'pa:ss:word' });
  });

  it('keeps identity and registry tokens', () => {
    const ring = parseDockerConfigSecret(
      jsonSecret({
        'acr.example': { username: '00000000-0000-0000-0000-000000000000', identitytoken: 'refresh' },
        'x.example': { registrytoken: 'bearer' },
      }),
    );
    expect(ring.entries.map((e) => e.credential)).toEqual([
      { username: '00000000-0000-0000-0000-000000000000', identityToken: 'refresh' },
      { registryToken: 'bearer' },
    ]);
  });

  it('reads a secret without a type by the key it has, and takes its name from `name` when given', () => {
    const secret = jsonSecret({ 'r.example': { auth: b64('a:b') } });
    const ring = parseDockerConfigSecret({ name: 'ns/given', data: secret.data });
    expect(ring.source).toBe('ns/given');
    expect(ring.entries).toHaveLength(1);
  });

  const SECRET_TEXT = 'hunter2-very-secret';
  const bad: Array<[string, Parameters<typeof parseDockerConfigSecret>[0], RegExp]> = [
    [
      'a secret of another type',
      { metadata: { name: 's' }, type: 'Opaque', data: {} },
      /pull secret s: type is Opaque/,
    ],
    [
      'the data key missing',
      { metadata: { name: 's', namespace: 'n' }, type: 'kubernetes.io/dockerconfigjson', data: {} },
      /pull secret n\/s: data\["\.dockerconfigjson"\] is missing/,
    ],
    [
      'data that is not base64',
      {
        metadata: { name: 's' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': '%%%' },
      },
      /data\["\.dockerconfigjson"\] is not valid base64/,
    ],
    [
      'data that is not JSON (the message must not quote it)',
      {
        metadata: { name: 's' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64(`{"auths": ${SECRET_TEXT}`) },
      },
      /data\["\.dockerconfigjson"\] is not valid JSON$/,
    ],
    [
      'no auths',
      {
        metadata: { name: 's' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': b64('{}') },
      },
      /\.auths is missing/,
    ],
    [
      'an auth without a colon',
      jsonSecret({ 'r.example': { auth: b64(SECRET_TEXT) } }, 's'),
      /\.auths\["r\.example"\]\.auth must be base64 of "username:password"/,
    ],
    [
      'an auth that is not base64',
      jsonSecret({ 'r.example': { auth: `${SECRET_TEXT}!` } }, 's'),
      /\.auths\["r\.example"\]\.auth is not valid base64/,
    ],
    [
      'an entry that is not an object',
      jsonSecret({ 'r.example': 'x' }, 's'),
      /\.auths\["r\.example"\] is not a JSON object/,
    ],
    [
      'a password that is not a string',
      jsonSecret({ 'r.example': { username: 'u', password: 12 } }, 's'),
      /\.auths\["r\.example"\]\.password is not a string/,
    ],
    [
      'a type-less secret with neither key',
      { metadata: { name: 's' }, data: { other: 'eA==' } },
      /data has neither \.dockerconfigjson nor \.dockercfg/,
    ],
  ];
  it.each(bad)('refuses %s with the secret and field named', (_name, secret, message) => {
    let error: unknown;
    try {
      parseDockerConfigSecret(secret);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PullSecretError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain(SECRET_TEXT);
  });
});

describe('parseConfigKey', () => {
  const cases: Array<[string, string]> = [
    ['https://index.docker.io/v1/', 'index.docker.io'],
    ['index.docker.io/v1/', 'index.docker.io'],
    ['http://r.example:5000/v2/', 'r.example:5000'],
    ['R.Example.COM', 'r.example.com'],
    ['quay.io/acme/', 'quay.io/acme'],
    ['https://quay.io/acme/web', 'quay.io/acme/web'],
    ['https://quay.io/v2/acme', 'quay.io/acme'],
    ['*.gcr.io', '*.gcr.io'],
  ];
  it.each(cases)('%s → %s', (server, key) => {
    expect(parseConfigKey(server).key).toBe(key);
  });
});

describe('findCredential (kubelet keyring matching)', () => {
  // [name, keys in the keyring, image, key whose credential is expected (undefined: none)]
  const cases: Array<[string, string[], string, string | undefined]> = [
    ['exact host', ['ghcr.io'], 'ghcr.io/acme/web:1', 'ghcr.io'],
    ['host with scheme', ['https://ghcr.io'], 'ghcr.io/acme/web', 'https://ghcr.io'],
    ['host with /v2/', ['https://ghcr.io/v2/'], 'ghcr.io/acme/web', 'https://ghcr.io/v2/'],
    ['another host does not match', ['quay.io'], 'ghcr.io/acme/web', undefined],
    ['a subdomain does not match its parent', ['example.com'], 'r.example.com/app', undefined],
    ['port must match', ['r.example:5000'], 'r.example:5000/app', 'r.example:5000'],
    ['no port in the key does not match a port in the image', ['r.example'], 'r.example:5000/app', undefined],
    ['a port in the key does not match an image without one', ['r.example:5000'], 'r.example/app', undefined],
    ['127.0.0.1 with port', ['127.0.0.1:5000'], '127.0.0.1:5000/acme/web', '127.0.0.1:5000'],
    ['case-insensitive host', ['GHCR.IO'], 'ghcr.io/acme/web', 'GHCR.IO'],
    ['path prefix matches', ['quay.io/acme'], 'quay.io/acme/web', 'quay.io/acme'],
    ['path prefix is whole segments', ['quay.io/acme'], 'quay.io/acmecorp/web', undefined],
    [
      'longer path wins',
      ['quay.io', 'quay.io/acme', 'quay.io/acme/web'],
      'quay.io/acme/web:1',
      'quay.io/acme/web',
    ],
    [
      'longer path wins whatever the order',
      ['quay.io/acme/web', 'quay.io/acme', 'quay.io'],
      'quay.io/acme/web',
      'quay.io/acme/web',
    ],
    ['falls back to the host', ['quay.io', 'quay.io/other'], 'quay.io/acme/web', 'quay.io'],
    ['glob matches one host component', ['*.example.com'], 'r.example.com/app', '*.example.com'],
    ['glob does not match two components', ['*.example.com'], 'a.b.example.com/app', undefined],
    ['glob does not match the bare domain', ['*.example.com'], 'example.com/app', undefined],
    ['glob in the middle', ['r.*.example.com'], 'r.eu.example.com/app', 'r.*.example.com'],
    ['character class glob', ['r[0-9].example.com'], 'r7.example.com/app', 'r[0-9].example.com'],
    ['literal host beats a glob', ['*.example.com', 'r.example.com'], 'r.example.com/app', 'r.example.com'],
    ['glob with port', ['*.example.com:5000'], 'r.example.com:5000/app', '*.example.com:5000'],
    ['Docker Hub: docker.io key', ['docker.io'], 'nginx:1.27', 'docker.io'],
    ['Docker Hub: legacy v1 URL', ['https://index.docker.io/v1/'], 'nginx', 'https://index.docker.io/v1/'],
    ['Docker Hub: index.docker.io', ['index.docker.io'], 'acme/web', 'index.docker.io'],
    [
      'Docker Hub: registry-1.docker.io',
      ['registry-1.docker.io'],
      'docker.io/acme/web',
      'registry-1.docker.io',
    ],
    [
      'Docker Hub: docker.io before the legacy key',
      ['https://index.docker.io/v1/', 'docker.io'],
      'nginx',
      'docker.io',
    ],
    [
      'Docker Hub: a path key wins over the host',
      ['https://index.docker.io/v1/', 'docker.io/acme'],
      'acme/web',
      'docker.io/acme',
    ],
    [
      'Docker Hub keys do not serve other registries',
      ['https://index.docker.io/v1/'],
      'ghcr.io/acme/web',
      undefined,
    ],
    ['Docker Hub image does not match another host', ['ghcr.io'], 'nginx', undefined],
    ['IPv6 with port', ['[::1]:5000'], '[::1]:5000/app', '[::1]:5000'],
    ['localhost with port', ['localhost:5000'], 'localhost:5000/app', 'localhost:5000'],
  ];
  it.each(cases)('%s', (_name, keys, image, expected) => {
    const credential = findCredential([keyring(keys)], normalizeReference(image));
    expect(credential?.username).toBe(expected);
  });

  it('across secrets: most specific key first, then the order of the secrets', () => {
    const first = keyring(['quay.io'], 'team/a');
    const second = keyring(['quay.io/acme'], 'team/b');
    const third: Keyring = {
      source: 'team/c',
      entries: parseDockerConfigSecret(
        jsonSecret({ 'quay.io': { username: 'quay.io-again', password: 'x' } }),
      ).entries,
    };
    const all = findCredentials([first, second, third], normalizeReference('quay.io/acme/web'));
    expect(all.map((c) => c.username)).toEqual(['quay.io/acme', 'quay.io', 'quay.io-again']);
  });

  it('returns nothing for no keyrings', () => {
    expect(findCredential([], normalizeReference('nginx'))).toBeUndefined();
  });
});
