/**
 * Device views on the wire: the strict schema, msgpack, and deflate for tiers whose sync policy
 * asks for compression (the `Content-Encoding` header says so; crisis views are never compressed).
 */
import { isDeepStrictEqual } from 'node:util';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { decode as unpack } from '@msgpack/msgpack';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';
import { CodecError, decode, encode } from './codec.ts';
import { DeviceView } from './schemas.ts';

/** Header naming the body's compression. */
export const CONTENT_ENCODING = 'Content-Encoding';

/** Encodes a view for its device subject. */
export function encodeDeviceView(view: DeviceView, compress: boolean): { data: Uint8Array; headers?: MsgHdrs } {
  const body = encode(DeviceView, view);
  if (!compress) return { data: body };
  const headers = natsHeaders();
  headers.set(CONTENT_ENCODING, 'deflate');
  return { data: deflateRawSync(body), headers };
}

/** Decodes a view received on a device subject; throws {@link CodecError}. */
export function decodeDeviceView(data: Uint8Array, headers?: MsgHdrs, expected?: { userId: string }): DeviceView {
  let body = data;
  if (headers?.get(CONTENT_ENCODING) === 'deflate') {
    try {
      body = inflateRawSync(data);
    } catch {
      throw new CodecError('malformed', 'bad deflate stream');
    }
  }
  return decode(DeviceView, body, expected ?? {});
}

/** Whether two views show a device the same thing, whatever their version and time of issue. */
export function sameDeviceContent(a: DeviceView, b: DeviceView): boolean {
  const content = (v: DeviceView) => unpack(encode(DeviceView, { ...v, version: 1, issuedAt: 0 }));
  return isDeepStrictEqual(content(a), content(b));
}
