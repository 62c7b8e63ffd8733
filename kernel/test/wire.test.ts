/** Framing and signing of wire messages, checked against an HMAC computed here independently. */
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { DELIMITER, decode, encode, makeHeader, WireError } from "../src/wire";

const KEY = "a0436f6c-1916-498b-8eb9-e81ab9368e84";

describe("wire", () => {
  it("encodes [ids, <IDS|MSG>, hmac-sha256 of the 4 JSON frames, frames]", () => {
    const header = makeHeader("kernel_info_reply", "s1");
    const frames = encode(
      {
        identities: [Buffer.from("peer")],
        header,
        parent_header: {},
        metadata: {},
        content: { status: "ok" },
      },
      KEY,
    );
    expect(frames[0]!.toString()).toBe("peer");
    expect(frames[1]!.toString()).toBe(DELIMITER);
    const hmac = createHmac("sha256", KEY);
    for (const f of frames.slice(3, 7)) hmac.update(f);
    expect(frames[2]!.toString()).toBe(hmac.digest("hex"));
    expect(JSON.parse(frames[3]!.toString()).msg_type).toBe("kernel_info_reply");
    expect(JSON.parse(frames[3]!.toString()).version).toBe("5.3");
    expect(JSON.parse(frames[6]!.toString())).toEqual({ status: "ok" });
  });

  it("decodes what it encodes, keeping identities and extra buffers", () => {
    const header = makeHeader("execute_request", "s2");
    const frames = encode(
      {
        identities: [Buffer.from("a"), Buffer.from("b")],
        header,
        parent_header: {},
        metadata: { x: 1 },
        content: { code: "1" },
        buffers: [Buffer.from([1, 2])],
      },
      KEY,
    );
    const msg = decode(frames, KEY);
    expect(msg.identities.map(String)).toEqual(["a", "b"]);
    expect(msg.header).toEqual(header);
    expect(msg.metadata).toEqual({ x: 1 });
    expect(msg.content).toEqual({ code: "1" });
    expect(msg.buffers).toEqual([Buffer.from([1, 2])]);
  });

  it("rejects a bad signature, a missing delimiter and non-JSON frames", () => {
    const frames = encode(
      {
        identities: [],
        header: makeHeader("x", "s"),
        parent_header: {},
        metadata: {},
        content: {},
      },
      KEY,
    );
    const tampered = [...frames];
    tampered[5] = Buffer.from('{"changed":true}');
    expect(() => decode(tampered, KEY)).toThrow(WireError);
    expect(() => decode(tampered, KEY)).toThrow(/signature does not match/);
    expect(() => decode(frames.slice(1), KEY)).toThrow(/no <IDS\|MSG> delimiter/);
    // Without a key nothing is signed, but frames must still parse.
    const unsigned = encode(
      {
        identities: [],
        header: makeHeader("x", "s"),
        parent_header: {},
        metadata: {},
        content: {},
      },
      "",
    );
    expect(unsigned[1]!.toString()).toBe("");
    unsigned[5] = Buffer.from("not json");
    expect(() => decode(unsigned, "")).toThrow(/content is not a JSON object/);
  });
});
