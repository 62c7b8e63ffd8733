/**
 * utf8Prefix: the part of a cell's output sent before the stream limit is cut between UTF-8
 * characters. Byte counts from UTF-8's rules: U+0000–U+007F take 1 byte, U+0080–U+07FF 2,
 * U+0800–U+FFFF 3, above U+FFFF 4 (a surrogate pair in UTF-16).
 */
import { describe, expect, it } from "vitest";
import { utf8Prefix } from "../src/handler";

describe("utf8Prefix", () => {
  it("keeps text that fits whole", () => {
    expect(utf8Prefix("abc", 3)).toBe("abc");
    expect(utf8Prefix("", 0)).toBe("");
  });

  it("cuts ASCII at the byte count", () => {
    expect(utf8Prefix("abcdef", 4)).toBe("abcd");
  });

  it("never splits a 2-, 3- or 4-byte character", () => {
    // "aé": 1 + 2 bytes; 2 bytes fit "a" only.
    expect(utf8Prefix("aé", 2)).toBe("a");
    expect(utf8Prefix("aé", 3)).toBe("aé");
    // "€" is 3 bytes.
    expect(utf8Prefix("€€", 5)).toBe("€");
    expect(utf8Prefix("€€", 6)).toBe("€€");
    // "😀" is 4 bytes (two UTF-16 code units).
    expect(utf8Prefix("😀😀", 7)).toBe("😀");
    expect(utf8Prefix("a😀", 4)).toBe("a");
    expect(utf8Prefix("a😀", 5)).toBe("a😀");
  });

  it("never ends in half a surrogate pair (that would encode as U+FFFD)", () => {
    // Two code units fit by count, but they are half of "😀" after "a".
    expect(utf8Prefix("a😀", 2)).toBe("a");
  });
});
