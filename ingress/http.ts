/**
 * What the HTTP surfaces share: the interface of a set of routes served on the ingress's port, and
 * reading a request body with a size limit.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Routes served on the ingress's port beside its own (the clinician viewer). */
export interface HttpRoutes {
  /** Handles the request when it is one of these routes; `false` leaves it to the caller. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /** Ends long-lived responses (live feeds), so the server can close. */
  close(): Promise<void>;
}

/** Reads a body up to `max` bytes; `null` when it is larger (declared or actual). */
export async function readBody(req: IncomingMessage, max: number): Promise<Buffer | null> {
  const declared = Number(req.headers['content-length']);
  if (declared > max) return null;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
