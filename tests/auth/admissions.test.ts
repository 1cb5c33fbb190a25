/**
 * What a callout replica remembers (`auth/admissions.ts`), with explicit times: a revocation hands
 * back the connections admitted for the device whose sessions had not ended, once; an admission
 * that started before a revocation of its device learns of it; ended sessions and old revocations
 * are forgotten.
 */
import { describe, expect, it } from 'vitest';
import { Admissions, REVOCATION_MEMORY_MS } from '../../auth/admissions.ts';

const a = { server: 'NA', cid: 1 };
const b = { server: 'NB', cid: 7 };

describe('callout admissions', () => {
  it('a revocation returns the live connections of its device, once', () => {
    const admissions = new Admissions();
    admissions.admit('u.phone', a, 10_000);
    admissions.admit('u.phone', b, 5_000);
    admissions.admit('u.tablet', { server: 'NA', cid: 2 }, 10_000);
    // b's session ended at 5 s: the server closed it already.
    expect(admissions.revoke('u.phone', 6_000)).toEqual([a]);
    expect(admissions.revoke('u.phone', 6_000)).toEqual([]);
    expect(admissions.revoke('u.tablet', 6_000)).toEqual([{ server: 'NA', cid: 2 }]);
  });

  it('an admission under way when its device is revoked learns of it; others do not', () => {
    const admissions = new Admissions();
    const started = admissions.mark();
    expect(admissions.revokedSince('u.phone', started)).toBe(false);
    admissions.revoke('u.phone', 1_000);
    expect(admissions.revokedSince('u.phone', started)).toBe(true);
    expect(admissions.revokedSince('u.tablet', started)).toBe(false);
    // Decided after the revocation was heard: the standing it read already shows it.
    expect(admissions.revokedSince('u.phone', admissions.mark())).toBe(false);
  });

  it('prunes ended sessions and revocations older than REVOCATION_MEMORY_MS', () => {
    const admissions = new Admissions();
    admissions.admit('u.phone', a, 10_000);
    admissions.admit('u.tablet', b, 20_000);
    const started = admissions.mark();
    admissions.revoke('u.web', 0);
    admissions.prune(15_000);
    expect(admissions.revokedSince('u.web', started)).toBe(true);
    admissions.prune(REVOCATION_MEMORY_MS + 1);
    expect(admissions.revokedSince('u.web', started)).toBe(false);
    expect(admissions.revoke('u.phone', 0)).toEqual([]);
    expect(admissions.revoke('u.tablet', 0)).toEqual([]);
  });
});
