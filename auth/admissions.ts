/**
 * What one auth callout replica remembers: the connections it admitted per device, until their
 * sessions end, so a revocation can close them through the server's kick API; and the devices
 * revoked a moment ago, so an admission decided while a revocation came in is refused instead of
 * answered after it. Pure bookkeeping; times are passed in.
 */

/** A client connection the callout admitted: the server it is on (`server_id.id`) and its client id there. */
export interface AdmittedConnection {
  server: string;
  cid: number;
}

/**
 * How long a revocation is remembered: longer than any admission can take (the server gives the
 * callout 2 s to answer before it refuses the client).
 */
export const REVOCATION_MEMORY_MS = 60_000;

/** The connections admitted and the revocations seen, per device key (`<userId>.<deviceId>`). */
export class Admissions {
  private readonly open = new Map<string, Array<AdmittedConnection & { untilMs: number }>>();
  private readonly revoked = new Map<string, { mark: number; atMs: number }>();
  private marks = 0;

  /** A point in the sequence of revocations, taken when an admission starts, for {@link revokedSince}. */
  mark(): number {
    return this.marks;
  }

  /** Whether `key` was revoked after `mark` was taken. */
  revokedSince(key: string, mark: number): boolean {
    return (this.revoked.get(key)?.mark ?? 0) > mark;
  }

  /** Records an admitted connection, remembered until its session ends at `untilMs`. */
  admit(key: string, connection: AdmittedConnection, untilMs: number): void {
    const list = this.open.get(key) ?? [];
    list.push({ ...connection, untilMs });
    this.open.set(key, list);
  }

  /** Records a revocation of `key` at `nowMs`; returns the connections admitted for it whose sessions had not ended. */
  revoke(key: string, nowMs: number): AdmittedConnection[] {
    this.revoked.set(key, { mark: ++this.marks, atMs: nowMs });
    const list = this.open.get(key) ?? [];
    this.open.delete(key);
    return list.filter((c) => c.untilMs > nowMs).map(({ server, cid }) => ({ server, cid }));
  }

  /** Forgets connections whose sessions ended (the server closed them) and revocations older than {@link REVOCATION_MEMORY_MS}. */
  prune(nowMs: number): void {
    for (const [key, list] of this.open) {
      const live = list.filter((c) => c.untilMs > nowMs);
      if (live.length) this.open.set(key, live);
      else this.open.delete(key);
    }
    for (const [key, r] of this.revoked) if (nowMs - r.atMs > REVOCATION_MEMORY_MS) this.revoked.delete(key);
  }
}
