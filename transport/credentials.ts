/**
 * Who a connection is: the role it signs in as (an nkey seed from the secrets directory) or a
 * device's token, and the CA it trusts for TLS. The layout of the secrets directory is defined
 * here, for the connections that read it and for `auth/secrets.ts`, which writes a development
 * set of it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tokenAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import { nkeySeedAuthenticator } from './nkeySigning.ts';

/**
 * The roles that sign in with a key of their own (DESIGN: runtime, ingress, services, viewer), plus
 * the auth callout service. Each service is a role of its own, so it can publish only its own event
 * kinds (`auth/roles.ts`). Devices have no role: they present a token (`auth/deviceToken.ts`).
 */
export const ROLES = ['runtime', 'ingress', 'viewer', 'callout', 'payments', 'assessments', 'care', 'accounts'] as const;
/** A role that signs in with a key of its own. */
export type Role = (typeof ROLES)[number];

/** The secrets directory when `FM_SECRETS` is unset: `.secrets/` in the checkout, made on first start. */
export const DEFAULT_SECRETS_DIR = fileURLToPath(new URL('../.secrets', import.meta.url));

/** The secrets directory: `FM_SECRETS`, else {@link DEFAULT_SECRETS_DIR}. The one place `FM_SECRETS` is read. */
export function secretsDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.FM_SECRETS || DEFAULT_SECRETS_DIR;
}

/** The files of a secrets directory. */
export const SECRET_FILES = {
  /** A role's user nkey seed (`SU…`). */
  role: (role: Role) => `${role}.nk`,
  /** The account nkey seed (`SA…`) the callout signs device users with; the server trusts its public key. */
  calloutIssuer: 'callout-issuer.nk',
  /** The account nkey seed (`SA…`) device tokens are signed with; the callout checks them against it. */
  deviceTokens: 'device-tokens.nk',
  /** The JetStream store's encryption key (`jetstream.key` in nats.conf). */
  storeKey: 'store.key',
  /** The CA clients trust, and the server's certificate and key it signed. */
  ca: 'ca.pem',
  serverCert: 'server.pem',
  serverKey: 'server-key.pem',
} as const;

/** Reads one file of the secrets directory, trimmed; a clear error when it is missing. */
export function readSecret(file: string, env: NodeJS.ProcessEnv = process.env): string {
  const path = join(secretsDirFromEnv(env), file);
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new Error(`missing secret ${path} (set FM_SECRETS, or run \`npm start\` once to make development secrets)`, { cause: err });
  }
}

/**
 * The CA file clients trust: `FM_TLS_CA`, else the secrets directory's `ca.pem`; undefined (the
 * system's roots) when neither exists, as with a certificate from a public CA.
 */
export function caFileFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.FM_TLS_CA) return env.FM_TLS_CA;
  const ca = join(secretsDirFromEnv(env), SECRET_FILES.ca);
  return existsSync(ca) ? ca : undefined;
}

/** How a connection signs in: as a role, or as a device with its token. */
export type Credentials = { role: Role } | { deviceToken: string; userId: string; deviceId: string };

/**
 * The inbox prefix of a connection. Roles share the `APP` account and devices the `DEVICES`
 * account, so each gets inboxes of its own, the only ones its permissions let it subscribe to:
 * nobody can read the replies (records, views) sent to another.
 */
export function inboxPrefix(who: { role: Role } | { userId: string; deviceId: string }): string {
  return 'role' in who ? `_INBOX.${who.role}` : `_INBOX.${who.userId}.${who.deviceId}`;
}

/**
 * The connection options that carry the credentials: the authenticator, TLS with the CA from
 * {@link caFileFromEnv}, and the connection's own {@link inboxPrefix}. With `FM_TLS=off` the connection is plain
 * (only a server started with `FM_ALLOW_PLAIN=true` takes it: the bench's baseline).
 */
export function credentialOptions(credentials: Credentials, env: NodeJS.ProcessEnv = process.env): Partial<ConnectionOptions> {
  const caFile = caFileFromEnv(env);
  // null, not undefined: nats.js upgrades to TLS whenever the server offers it unless `tls` is null.
  const tls = env.FM_TLS === 'off' ? null : caFile ? { caFile } : {};
  const authenticator =
    'role' in credentials
      ? nkeySeedAuthenticator(readSecret(SECRET_FILES.role(credentials.role), env))
      : tokenAuthenticator(credentials.deviceToken);
  return { tls, authenticator, inboxPrefix: inboxPrefix(credentials) };
}
