/**
 * Reading whole streams quickly: an ordered consumer instead of one direct get per message
 * (`TestClient.readStream`), for tests that read thousands of audit records or views.
 */
import type { TestClient } from './client.ts';

/** Every message of `stream` stored when the call starts, in order, decoded by `read`. */
export async function readWholeStream<T>(client: TestClient, stream: string, read: (data: Uint8Array) => T): Promise<T[]> {
  const info = await client.jsm.streams.info(stream);
  const last = info.state.last_seq;
  if (info.state.messages === 0) return [];
  const consumer = await client.js.consumers.get(stream, {});
  const messages = await consumer.consume({ max_messages: 1_024 });
  const out: T[] = [];
  try {
    for await (const m of messages) {
      out.push(read(m.data));
      if (m.seq >= last) break;
    }
  } finally {
    messages.stop();
  }
  return out;
}
