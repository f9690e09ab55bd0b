import { execFile } from 'node:child_process';
import { generateKeyPair } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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
  /** Client certificate kube-apiserver presents to kubelets (logs, exec); RBAC binds it to kubelet-api-admin. */
  apiServerKubeletClientCert: string;
  apiServerKubeletClientKey: string;
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
[loopback_server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,DNS:localhost
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
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
    apiServerKubeletClientCert: file('apiserver-kubelet-client.crt'),
    apiServerKubeletClientKey: file('apiserver-kubelet-client.key'),
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
  const leaf = (cert: string, key: string, cn: string, ext: CertificateUse) =>
    issueCertificate(pki, { cert, key, subject: `/CN=${cn}`, use: ext });
  await Promise.all([
    leaf(pki.apiServerCert, pki.apiServerKey, 'kube-apiserver', 'apiserver_ext'),
    leaf(
      pki.apiServerKubeletClientCert,
      pki.apiServerKubeletClientKey,
      'kube-apiserver-kubelet-client',
      'client_ext',
    ),
    leaf(pki.registryCert, pki.registryKey, 'kubewatcher-registry', 'loopback_server_ext'),
    leaf(pki.tokenSigningCert, pki.tokenSigningKey, 'kubewatcher-token-signer', 'signing_ext'),
    serviceAccountKeys,
  ]);
  return pki;
}

/** What a certificate is for: serving on 127.0.0.1 and localhost, a TLS client, or signing tokens. */
export type CertificateUse = 'apiserver_ext' | 'loopback_server_ext' | 'client_ext' | 'signing_ext';

/**
 * Issues a certificate signed by the environment's CA, e.g. a kubelet's client certificate with subject
 * `/O=system:nodes/CN=system:node:127.0.0.1` (the Node authorizer's identity of node 127.0.0.1).
 */
export async function issueCertificate(
  pki: Pick<LocalPki, 'caCert' | 'caKey'>,
  o: { cert: string; key: string; subject: string; use: CertificateUse },
): Promise<void> {
  await openssl([
    'req',
    '-x509',
    '-config',
    join(dirname(pki.caCert), 'openssl.cnf'),
    ...ecKey,
    '-keyout',
    o.key,
    '-out',
    o.cert,
    '-days',
    '825',
    '-subj',
    o.subject,
    '-extensions',
    o.use,
    '-CA',
    pki.caCert,
    '-CAkey',
    pki.caKey,
  ]);
}
