/**
 * Vitest global setup: one set of secrets for the whole run (role keys, store key, and a CA of the
 * tests' own with a server certificate it signed), in a temp directory that `FM_SECRETS` names for
 * every test worker, the servers they start and the processes they spawn.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSecrets } from '../../auth/secrets.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'fullmind-secrets-'));
  await ensureSecrets(dir);
  process.env.FM_SECRETS = dir;
  return () => rm(dir, { recursive: true, force: true });
}
