/**
 * The clinician token (`CLINICIAN_TOKEN`): API calls send it as `Authorization: Bearer <token>`;
 * a browser hands it over once (`/viewer?token=…` or the token form) and then holds a session
 * cookie: HttpOnly, SameSite=Strict, scoped to `/viewer`, valid for {@link SESSION_MS}. The cookie
 * is not the token: it is the time it was issued and an HMAC of that time keyed by the token, so a
 * new token ends every session. Every comparison is constant-time. With no token configured,
 * nothing is accepted.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'fm_viewer_session';
/** How long a browser session lasts. */
export const SESSION_MS = 8 * 60 * 60 * 1000;

/** Checks tokens and session cookies against the configured clinician token. */
export class ClinicianAuth {
  private readonly token: Buffer | null;

  constructor(token: string | undefined) {
    this.token = token ? Buffer.from(token, 'utf8') : null;
  }

  /** Whether a token is configured at all (without one, everything is refused). */
  get configured(): boolean {
    return this.token !== null;
  }

  /** Whether `candidate` is the clinician token (constant time for a given length). */
  tokenMatches(candidate: string | undefined | null): boolean {
    if (!this.token || !candidate) return false;
    const given = Buffer.from(candidate, 'utf8');
    // timingSafeEqual needs equal lengths: compare against the token itself when they differ, so
    // the time taken does not depend on where the strings differ.
    const same = timingSafeEqual(given.length === this.token.length ? given : this.token, this.token);
    return same && given.length === this.token.length;
  }

  /** A new session cookie value. */
  issueSession(now = Date.now()): string {
    return `${now}.${this.sign(now)}`;
  }

  /** Whether a session cookie value is ours and not expired. */
  sessionValid(value: string | undefined, now = Date.now()): boolean {
    if (!this.token || !value) return false;
    const [issued, mac] = value.split('.');
    const issuedAt = Number(issued);
    if (!Number.isSafeInteger(issuedAt) || !mac || issuedAt > now + 60_000 || now - issuedAt > SESSION_MS) return false;
    const expected = Buffer.from(this.sign(issuedAt));
    const given = Buffer.from(mac);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  /** Whether a request carries the bearer token or a valid session cookie. */
  authorized(req: IncomingMessage): boolean {
    if (!this.token) return false;
    const header = req.headers.authorization;
    if (header?.startsWith('Bearer ')) return this.tokenMatches(header.slice('Bearer '.length).trim());
    return this.sessionValid(cookie(req, SESSION_COOKIE));
  }

  /** The `Set-Cookie` header of a new session. */
  sessionCookie(): string {
    return `${SESSION_COOKIE}=${this.issueSession()}; Path=/viewer; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MS / 1000}`;
  }

  private sign(issuedAt: number): string {
    return createHmac('sha256', this.token!).update(`fm-viewer-session:${issuedAt}`).digest('base64url');
  }
}

/** One cookie of a request. */
export function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
