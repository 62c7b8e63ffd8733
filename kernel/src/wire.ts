/**
 * Jupyter wire protocol 5.3 framing: turning zeromq multipart frames into messages and back,
 * with HMAC-SHA256 signatures. Pure functions, no sockets — the transport and the tests share them.
 *
 * A message on the wire is
 * `[identities..., "<IDS|MSG>", signature, header, parent_header, metadata, content, buffers...]`,
 * the signature being the hex HMAC of the four JSON frames under the connection key
 * (empty when the key is empty).
 */
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

/** Protocol version this kernel speaks. */
export const PROTOCOL_VERSION = "5.3";
/** Separates routing identities from the message proper. */
export const DELIMITER = "<IDS|MSG>";

/** A message header (the same shape for header and parent_header). */
export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
}

/** A decoded message. `parent_header` is `{}` for unsolicited messages. */
export interface Message<C = Record<string, unknown>> {
  /** zeromq routing identities (Router sockets) or the topic (IOPub). */
  identities: Buffer[];
  header: Header;
  parent_header: Header | Record<string, never>;
  metadata: Record<string, unknown>;
  content: C;
  buffers: Buffer[];
}

/** Thrown for frames that are not a valid, correctly signed message. */
export class WireError extends Error {
  override name = "WireError";
}

/** Signs the four JSON frames with the connection key (`""` when there is no key). */
export function sign(key: string, scheme: string, frames: ReadonlyArray<Buffer | string>): string {
  if (key === "") return "";
  if (scheme !== "hmac-sha256") {
    throw new WireError(
      `unsupported signature_scheme ${JSON.stringify(scheme)}; allowed: "hmac-sha256"`,
    );
  }
  const hmac = createHmac("sha256", key);
  for (const f of frames) hmac.update(f);
  return hmac.digest("hex");
}

/** Decodes and verifies raw frames; throws {@link WireError} on a bad delimiter, signature or JSON. */
export function decode(
  frames: ReadonlyArray<Buffer>,
  key: string,
  scheme = "hmac-sha256",
): Message {
  const at = frames.findIndex((f) => f.length === DELIMITER.length && f.toString() === DELIMITER);
  if (at < 0) throw new WireError("message has no <IDS|MSG> delimiter");
  if (frames.length < at + 6) {
    throw new WireError(
      `message has ${frames.length - at - 1} frames after the delimiter; at least 5 needed`,
    );
  }
  const signature = frames[at + 1]!.toString();
  const body = frames.slice(at + 2, at + 6);
  const expected = sign(key, scheme, body);
  if (key !== "") {
    const a = Buffer.from(signature);
    const b = Buffer.from(expected);
    if (a.length !== b.length || !timingSafeEqual(a, b))
      throw new WireError("message signature does not match");
  }
  const parse = (i: number, name: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(body[i]!.toString("utf8"));
      if (v === null || typeof v !== "object") throw new Error("not an object");
      return v as Record<string, unknown>;
    } catch (e) {
      throw new WireError(`message ${name} is not a JSON object: ${(e as Error).message}`);
    }
  };
  return {
    identities: frames.slice(0, at) as Buffer[],
    header: parse(0, "header") as unknown as Header,
    parent_header: parse(1, "parent_header") as Message["parent_header"],
    metadata: parse(2, "metadata"),
    content: parse(3, "content"),
    buffers: frames.slice(at + 6) as Buffer[],
  };
}

/** Encodes a message into frames, signing it. */
export function encode(
  msg: Omit<Message, "buffers"> & { buffers?: Buffer[] },
  key: string,
  scheme = "hmac-sha256",
): Buffer[] {
  const body = [msg.header, msg.parent_header, msg.metadata, msg.content].map((o) =>
    Buffer.from(JSON.stringify(o), "utf8"),
  );
  return [
    ...msg.identities,
    Buffer.from(DELIMITER),
    Buffer.from(sign(key, scheme, body)),
    ...body,
    ...(msg.buffers ?? []),
  ];
}

/** A fresh header for a message of this kernel's session. */
export function makeHeader(msgType: string, session: string): Header {
  return {
    msg_id: randomUUID(),
    session,
    username: "mmulab",
    date: new Date().toISOString(),
    msg_type: msgType,
    version: PROTOCOL_VERSION,
  };
}
