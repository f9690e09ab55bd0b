import { execFile } from 'node:child_process';
import { generateKeyPair } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const generateKeyPairAsync = promisify(generateKeyPair);

/** Files of the certificates and keys one local environment uses; every one is made fresh per environment. */
export interface LocalPki {
  /** The environment's CA: signs the apiserver's, the registry's and the token server's certificates. */
  caCert: string;
  caKey: string;
  /** Serving certificate of kube-apiserver (127.0.0.1, localhost and the in-cluster `kubernetes` names). */
  apiServerCert: string;
  apiServerKey: string;
  /** Serving certificate of the HTTPS registry (127.0.0.1, localhost). */
  registryCert: string;
  registryKey: string;
  /** Certificate whose key signs the registry tokens; it travels in the JWT `x5c` header. */
  tokenSigningCert: string;
  tokenSigningKey: string;
  /** Service-account token signing key pair of kube-apiserver and kube-controller-manager. */
  serviceAccountPublicKey: string;
  serviceAccountPrivateKey: string;
}

// One config file for every openssl call, so the system's openssl.cnf cannot add or clash with extensions.
const opensslConfig = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[apiserver_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[registry_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,DNS:localhost
[signing_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
authorityKeyIdentifier = keyid
`;

// EC P-256 everywhere: generating it takes milliseconds where RSA takes a noticeable part of a second.
const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error('openssl is required to create the local certificates');
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Creates a CA and the certificates and keys signed by it in `dir`. */
export async function createLocalPki(dir: string): Promise<LocalPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = (name: string) => join(dir, name);
  const pki: LocalPki = {
    caCert: file('ca.crt'),
    caKey: file('ca.key'),
    apiServerCert: file('apiserver.crt'),
    apiServerKey: file('apiserver.key'),
    registryCert: file('registry.crt'),
    registryKey: file('registry.key'),
    tokenSigningCert: file('token-signing.crt'),
    tokenSigningKey: file('token-signing.key'),
    serviceAccountPublicKey: file('sa.pub'),
    serviceAccountPrivateKey: file('sa.key'),
  };
  const cnf = file('openssl.cnf');
  await writeFile(cnf, opensslConfig);

  const serviceAccountKeys = generateKeyPairAsync('ec', {
    namedCurve: 'prime256v1',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  }).then(async ({ publicKey, privateKey }) => {
    await writeFile(pki.serviceAccountPublicKey, publicKey);
    await writeFile(pki.serviceAccountPrivateKey, privateKey, { mode: 0o600 });
  });

  await openssl([
    'req',
    '-x509',
    '-config',
    cnf,
    ...ecKey,
    '-keyout',
    pki.caKey,
    '-out',
    pki.caCert,
    '-days',
    '3650',
    '-subj',
    '/CN=kubewatcher-local-ca',
    '-extensions',
    'ca_ext',
  ]);
  const leaf = (cert: string, key: string, cn: string, ext: string) =>
    openssl([
      'req',
      '-x509',
      '-config',
      cnf,
      ...ecKey,
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '825',
      '-subj',
      `/CN=${cn}`,
      '-extensions',
      ext,
      '-CA',
      pki.caCert,
      '-CAkey',
      pki.caKey,
    ]);
  await Promise.all([
    leaf(pki.apiServerCert, pki.apiServerKey, 'kube-apiserver', 'apiserver_ext'),
    leaf(pki.registryCert, pki.registryKey, 'kubewatcher-registry', 'registry_ext'),
    leaf(pki.tokenSigningCert, pki.tokenSigningKey, 'kubewatcher-token-signer', 'signing_ext'),
    serviceAccountKeys,
  ]);
  return pki;
}
