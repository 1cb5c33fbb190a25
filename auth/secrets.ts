/**
 * The secrets a deployment runs on, and the environment nats.conf reads them from. `npm start`
 * makes a development set on first start (`ensureSecrets`), as do the tests (a set of their own,
 * with their own CA); a production deployment brings its own directory (README "Security model").
 */
import { randomBytes, type webcrypto } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createAccount, createUser, fromSeed } from '@nats-io/nkeys';
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { readSecret, ROLES, SECRET_FILES, secretsDirFromEnv, type Role } from '../transport/credentials.ts';

x509.cryptoProvider.set(crypto);

/** How long the development CA and server certificate are valid. */
const DEV_CERT_DAYS = 825;
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** Options of {@link ensureSecrets}. */
export interface SecretsOptions {
  /**
   * IP addresses the server certificate names besides loopback, when it is made here (servers
   * listening elsewhere, as the nemesis run's in their network namespaces). A certificate already
   * in the directory is kept as it is.
   * @default []
   */
  ipAddresses?: readonly string[];
}

/**
 * Makes a development set of secrets in `dir`, keeping every file it already has: a user key per
 * role (a role added by an upgrade gets its key), the callout's and the device tokens' account keys,
 * the store key, and a CA with a server certificate for localhost. Files are readable by the owner only.
 */
export function ensureSecrets(dir: string = secretsDirFromEnv(), options: SecretsOptions = {}): Promise<void> {
  // Once per directory and process: a cluster's servers start together, and two writers could pair
  // one's certificate with the other's key.
  let done = ensuring.get(dir);
  if (!done) ensuring.set(dir, (done = makeMissingSecrets(dir, options.ipAddresses ?? [])));
  return done;
}

const ensuring = new Map<string, Promise<void>>();

async function makeMissingSecrets(dir: string, ipAddresses: readonly string[]): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const missing = (file: string) => !existsSync(join(dir, file));
  const write = (file: string, text: string) => writeFile(join(dir, file), `${text}\n`, { mode: 0o600, flag: 'wx' });
  const seed = (kp: { getSeed(): Uint8Array }) => new TextDecoder().decode(kp.getSeed());
  const files: Array<[string, () => string]> = [
    ...ROLES.map((role): [string, () => string] => [SECRET_FILES.role(role), () => seed(createUser())]),
    [SECRET_FILES.calloutIssuer, () => seed(createAccount())],
    [SECRET_FILES.deviceTokens, () => seed(createAccount())],
    [SECRET_FILES.storeKey, () => randomBytes(32).toString('hex')],
  ];
  await Promise.all(files.filter(([file]) => missing(file)).map(([file, make]) => write(file, make())));
  if ([SECRET_FILES.ca, SECRET_FILES.serverCert, SECRET_FILES.serverKey].some(missing)) {
    const tls = await developmentCertificates(ipAddresses);
    await Promise.all([
      writeFile(join(dir, SECRET_FILES.ca), `${tls.ca}\n`, { mode: 0o600 }),
      writeFile(join(dir, SECRET_FILES.serverCert), `${tls.cert}\n`, { mode: 0o600 }),
      writeFile(join(dir, SECRET_FILES.serverKey), `${tls.key}\n`, { mode: 0o600 }),
    ]);
  }
}

/**
 * The environment nats.conf reads (`$FM_…`): each role's public key, the callout issuer's, the store
 * key and the certificate files; a value already in `env` wins (an operator's real certificate).
 * `FM_ALLOW_PLAIN` is `false` unless `env` says otherwise.
 */
export function serverEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const dir = secretsDirFromEnv(env);
  const publicKey = (file: string) => fromSeed(new TextEncoder().encode(readSecret(file, env))).getPublicKey();
  return {
    ...Object.fromEntries(ROLES.map((role) => [roleKeyVariable(role), publicKey(SECRET_FILES.role(role))])),
    FM_CALLOUT_ISSUER: publicKey(SECRET_FILES.calloutIssuer),
    FM_STORE_KEY: readSecret(SECRET_FILES.storeKey, env),
    FM_TLS_CERT: env.FM_TLS_CERT || join(dir, SECRET_FILES.serverCert),
    FM_TLS_KEY: env.FM_TLS_KEY || join(dir, SECRET_FILES.serverKey),
    FM_ALLOW_PLAIN: env.FM_ALLOW_PLAIN === 'true' ? 'true' : 'false',
  };
}

/** The variable nats.conf names a role's public key by, e.g. `FM_NKEY_RUNTIME`. */
export function roleKeyVariable(role: Role): string {
  return `FM_NKEY_${role.toUpperCase()}`;
}

/** A CA and a server certificate it signed for this host's loopback names (and `ipAddresses`), as PEM; the CA's key is not kept. */
async function developmentCertificates(ipAddresses: readonly string[]): Promise<{ ca: string; cert: string; key: string }> {
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + DEV_CERT_DAYS * 24 * 60 * 60 * 1000);
  const serial = () => randomBytes(8).toString('hex');
  const caKeys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=fullmind-sync development CA',
    notBefore,
    notAfter,
    signingAlgorithm: EC,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const serverKeys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=localhost',
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingAlgorithm: EC,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'dns', value: hostname() },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
        ...ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
    ],
  });
  return { ca: ca.toString('pem'), cert: cert.toString('pem'), key: await privatePem(serverKeys.privateKey) };
}

async function privatePem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').trimEnd()}\n-----END PRIVATE KEY-----`;
}
