/**
 * The clinician viewer's HTTP routes, served by the ingress on its port (everything under `/viewer`):
 *
 * | route | what |
 * |---|---|
 * | `GET /viewer` | the page (statechart inline, user picker, devices, crisis episodes, timeline) |
 * | `GET /viewer?token=…` | checks the token once, sets the session cookie, redirects to `/viewer` |
 * | `POST /viewer/session` | the token form: the same, from a form field |
 * | `GET /viewer/statechart.svg` | the statechart as a standalone SVG |
 * | `GET /viewer/page.js`, `page.css`, `statechart.css` | the page's own script and styles (no CDN) |
 * | `GET /viewer/api/users/:id` | `{ user, devices }`: where the user is, what each device holds |
 * | `GET /viewer/api/users/:id/audit` | the user's audit records in order, with stream sequences |
 * | `GET /viewer/api/users/:id/events?after=<seq>` | Server-Sent Events: `user`, `view`, `audit` |
 *
 * Read-only; every route answers 401 without the clinician token (see `auth.ts`), and all of
 * them when no token is configured. The statechart is drawn once, at start, from the machine.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { AnyStateMachine } from 'xstate';
import { SubjectToken } from '../machines/events.ts';
import type { Topology } from '../transport/topology.ts';
import { readBody, type HttpRoutes } from '../ingress/http.ts';
import { ClinicianAuth } from './auth.ts';
import { ViewerData, type LiveEvent } from './data.ts';
import { layoutStatechart, renderStatechartSvg, STATECHART_CSS, statechartGraph, type StatechartLayout } from './statechart.ts';

/** Options of {@link createViewer}. */
export interface ViewerOptions {
  /** A connection of the viewer's own (read-only use). */
  nc: NatsConnection;
  topology: Topology;
  /** `CLINICIAN_TOKEN`; when unset, every route answers 401. */
  token: string | undefined;
  /** The statechart to draw: the user machine. */
  machine: AnyStateMachine;
  log: Logger;
  /** Interval of the keep-alive comments on live feeds. */
  heartbeatMs?: number;
}

const asset = (name: string) => readFileSync(new URL(name, import.meta.url), 'utf8');
const PAGE_HTML = asset('./page.html');
const PAGE_JS = asset('./page.js');
const PAGE_CSS = asset('./page.css');

const LOGIN_STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;color:#1b1f24;background:#fff;max-width:32rem;margin:4rem auto;padding:0 1rem}' +
  'label{display:block;font-weight:600;margin:1rem 0 .25rem}input{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;border:2px solid #3d4852;border-radius:4px}' +
  'button{font:inherit;margin-top:1rem;padding:.4rem 1.2rem;background:#0b57d0;color:#fff;border:0;border-radius:4px}' +
  ':focus-visible{outline:3px solid #9a5b00;outline-offset:2px}.error{color:#b3261e;font-weight:600}';
const LOGIN_STYLE_HASH = createHash('sha256').update(LOGIN_STYLE).digest('base64');

const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const LOGIN_CSP = `default-src 'none'; img-src data:; style-src 'sha256-${LOGIN_STYLE_HASH}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`;

/** Longest token form body accepted. */
const MAX_FORM_BYTES = 4_096;

/** Creates the viewer's routes; draws the statechart once. */
export async function createViewer(options: ViewerOptions): Promise<HttpRoutes> {
  const auth = new ClinicianAuth(options.token);
  if (!auth.configured) options.log.warn('CLINICIAN_TOKEN is not set: the clinician viewer answers 401 to everything');
  const graph = statechartGraph(options.machine);
  const files = staticFiles(await layoutStatechart(graph));
  const data = new ViewerData(options.nc, options.topology, graph);
  return new ViewerRoutes(auth, files, data, options.log, options.heartbeatMs ?? 15_000);
}

/** A response that never changes: the page, its script and styles, the drawing. */
interface StaticFile {
  type: string;
  body: string;
  headers?: Record<string, string>;
}

/** The fixed responses by path; the statechart is rendered into the page and as a standalone SVG. */
function staticFiles(layout: StatechartLayout): ReadonlyMap<string, StaticFile> {
  const css = 'text/css; charset=utf-8';
  return new Map<string, StaticFile>([
    [
      '/viewer',
      {
        type: 'text/html; charset=utf-8',
        body: PAGE_HTML.replace('<!--STATECHART-->', () => renderStatechartSvg(layout)),
        headers: { 'content-security-policy': PAGE_CSP },
      },
    ],
    ['/viewer/page.js', { type: 'text/javascript; charset=utf-8', body: PAGE_JS }],
    ['/viewer/page.css', { type: css, body: PAGE_CSS }],
    ['/viewer/statechart.css', { type: css, body: STATECHART_CSS }],
    [
      '/viewer/statechart.svg',
      {
        type: 'image/svg+xml; charset=utf-8',
        body: renderStatechartSvg(layout, { embedStyle: true }),
        headers: { 'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'" },
      },
    ],
  ]);
}

class ViewerRoutes implements HttpRoutes {
  private readonly auth: ClinicianAuth;
  private readonly files: ReadonlyMap<string, StaticFile>;
  private readonly data: ViewerData;
  private readonly log: Logger;
  private readonly heartbeatMs: number;
  /** Open live feeds, ended by {@link close}. */
  private readonly feeds = new Set<ServerResponse>();

  constructor(auth: ClinicianAuth, files: ReadonlyMap<string, StaticFile>, data: ViewerData, log: Logger, heartbeatMs: number) {
    this.auth = auth;
    this.files = files;
    this.data = data;
    this.log = log;
    this.heartbeatMs = heartbeatMs;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://viewer');
    if (url.pathname !== '/viewer' && !url.pathname.startsWith('/viewer/')) return false;
    try {
      await this.route(req, res, url);
    } catch (err) {
      // Logged by path only: the query may hold the token.
      this.log.error({ err: (err as Error).message, path: url.pathname }, 'viewer request failed');
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.end();
    }
    return true;
  }

  async close(): Promise<void> {
    for (const res of this.feeds) res.end();
    this.feeds.clear();
  }

  private async route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (req.method === 'GET' && path === '/viewer' && url.searchParams.has('token')) return this.signIn(res, url.searchParams.get('token'));
    if (req.method === 'POST' && path === '/viewer/session') return this.signIn(res, (await readForm(req))?.get('token'));
    if (!this.auth.authorized(req)) {
      if (req.method === 'GET' && path === '/viewer') return login(res);
      return json(res, 401, { error: 'clinician token required' });
    }
    if (req.method !== 'GET') return json(res, 405, { error: 'read-only' });
    const file = this.files.get(path);
    if (file) return send(res, 200, file.type, file.body, file.headers);
    return this.api(req, res, path, url);
  }

  /** The token, handed over once: a session cookie and back to the page, or the token form again. */
  private signIn(res: ServerResponse, token: string | null | undefined): void {
    if (!this.auth.tokenMatches(token)) return login(res, 'That token was not accepted.');
    res.writeHead(303, { ...COMMON_HEADERS, location: '/viewer', 'set-cookie': this.auth.sessionCookie() });
    res.end();
  }

  private async api(req: IncomingMessage, res: ServerResponse, path: string, url: URL): Promise<void> {
    const api = /^\/viewer\/api\/users\/([^/]+)(?:\/(audit|events))?$/.exec(path);
    if (!api) return json(res, 404, { error: 'not found' });
    const userId = safeDecode(api[1]!);
    if (userId === null || !SubjectToken.safeParse(userId).success) return json(res, 400, { error: 'not a user id' });
    switch (api[2]) {
      case undefined: {
        const user = await this.data.user(userId);
        if (!user) return json(res, 404, { error: 'no record for this user' });
        return json(res, 200, { user, devices: await this.data.devices(userId, user.devices) });
      }
      case 'audit':
        return json(res, 200, await this.data.timeline(userId));
      case 'events':
        return this.liveFeed(req, res, userId, url);
    }
  }

  private async liveFeed(req: IncomingMessage, res: ServerResponse, userId: string, url: URL): Promise<void> {
    const cursor = (v: unknown) => (typeof v === 'string' && /^\d{1,15}$/.test(v) ? Number(v) : 0);
    const after = Math.max(cursor(url.searchParams.get('after')), cursor(req.headers['last-event-id']));
    // `connection: close`: when the feed ends (the viewer stops), the socket goes with it.
    res.writeHead(200, { ...COMMON_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'close', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    this.feeds.add(res);
    const write = (e: LiveEvent) => {
      // Audit records carry their stream sequence as the event id: a reconnecting browser sends it
      // back as Last-Event-ID and resumes after it.
      const id = e.type === 'audit' ? `id: ${e.data.seq}\n` : '';
      res.write(`event: ${e.type}\n${id}data: ${JSON.stringify(e.data)}\n\n`);
    };
    let stop: (() => void) | undefined;
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), this.heartbeatMs);
    const end = () => {
      clearInterval(heartbeat);
      stop?.();
      this.feeds.delete(res);
      if (!res.writableEnded) res.end();
    };
    res.once('close', end);
    try {
      stop = await this.data.follow(userId, after, write, (err) => {
        this.log.warn({ err: err.message, userId }, 'viewer live feed failed');
        end();
      });
      if (res.writableEnded || res.destroyed) stop();
    } catch (err) {
      this.log.warn({ err: (err as Error).message, userId }, 'viewer live feed could not start');
      end();
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': type, ...headers });
  res.end(body);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

/** The token form (401), with a message when a token was refused. */
function login(res: ServerResponse, message?: string): void {
  send(res, 401, 'text/html; charset=utf-8', loginPage(message), {
    'content-security-policy': LOGIN_CSP,
    'www-authenticate': 'Bearer realm="clinician viewer"',
  });
}

function safeDecode(component: string): string | null {
  try {
    return decodeURIComponent(component);
  } catch {
    return null;
  }
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) return null;
  const body = await readBody(req, MAX_FORM_BYTES);
  return body && new URLSearchParams(body.toString('utf8'));
}

function loginPage(message?: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Clinician viewer: sign in</title><link rel="icon" href="data:,"><style>${LOGIN_STYLE}</style></head>
<body>
<main>
<h1>Clinician viewer</h1>
<p>This read-only viewer needs the clinician token.</p>
${message ? `<p class="error" role="alert">${message}</p>` : ''}
<form method="post" action="/viewer/session">
<label for="token">Clinician token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Open the viewer</button>
</form>
</main>
</body>
</html>
`;
}
