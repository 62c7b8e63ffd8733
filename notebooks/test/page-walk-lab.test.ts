// The lab's check(): right answers are accepted, plausible wrong ones are explained in words.
// Right answers come from the x86 architecture (page-fault error codes, access rights),
// not from the grader.
import { describe, expect, it } from "vitest";
import { check } from "../lib/page-walk-lab";
import { type CheckCases, describeCheckCases } from "./check-cases";

const gva3 = 0x7f1234567abcn;
const field = (lo: number, width: number) =>
  Number((gva3 >> BigInt(lo)) & ((1n << BigInt(width)) - 1n));

const CASES: CheckCases = {
  // user write to a present, read-only user page: P|W|U
  ex1: {
    right: [{ gva: 0x400000, user: true, write: true }],
    wrong: [
      [{ gva: 0x401000, user: true, write: true }, /succeeds/],
      [{ gva: 0x404000, user: true, write: true }, /0x6 \(W\|U\)/],
      [{ gva: 0x400000, write: true }, /0x3 \(P\|W\)|faults/],
      ["0x400000", /expected an access object/],
    ],
  },
  // user read of a not-present page: U only
  ex2: {
    right: [0x4],
    wrong: [
      [0x5, /P must be clear/],
      [0x0, /U is set/],
      ["4", /whole number/],
    ],
  },
  ex3: {
    right: [
      {
        pml4: field(39, 9),
        pdpt: field(30, 9),
        pd: field(21, 9),
        pt: field(12, 9),
        offset: field(0, 12),
      },
    ],
    wrong: [
      // indices read from the wrong end (little-endian order)
      [
        {
          pml4: field(12, 9),
          pdpt: field(21, 9),
          pd: field(30, 9),
          pt: field(39, 9),
          offset: field(0, 12),
        },
        /pml4 is bits 47\.\.39/,
      ],
      [
        { pml4: field(39, 9), pdpt: field(30, 9), pd: field(21, 9), pt: field(12, 9), offset: 0 },
        /offset is bits 11\.\.0/,
      ],
    ],
  },
  // SMEP forbids supervisor fetches from user pages: clearing U/S (bit 2) fixes it
  ex4: {
    right: [2],
    wrong: [
      [1, /still faults.*0x11/],
      [63, /still faults/],
      [0, /0x10/],
      [64, /0\.\.63/],
    ],
  },
  ex5: {
    right: ["a", " A "],
    wrong: [
      ["b", /not \(b\)/],
      ["c", /not \(c\)/],
      ["d", /CR0\.WP/],
      ["e", /one of/],
    ],
  },
  // CR0.WP=0: supervisor writes ignore R/W
  ex6: {
    right: [0],
    wrong: [
      [1, /0x3 \(P\|W\)/],
      [2, /0 or 1/],
    ],
  },
  // I is reported for fetch faults when EFER.NXE is set
  ex7: {
    right: [
      { gva: 0x402000, user: true, fetch: true },
      { gva: 0x401000, fetch: true },
      { gva: 0x404000, user: true, fetch: true },
    ],
    wrong: [
      [{ gva: 0x401000, user: true, fetch: true }, /succeeds/],
      [{ gva: 0x402000, user: true }, /not an instruction fetch/],
    ],
  },
  // reserved bit in a present entry: P|RSVD, plus U for a user access
  ex8: {
    right: [0xd],
    wrong: [
      [0x9, /not it/],
      [0x5, /RSVD/],
    ],
  },
  // PKRU: AD(k) = bit 2k, WD(k) = bit 2k+1; key 5 → WD5 = bit 11
  ex9: {
    right: [1 << 11, (1 << 11) | (1 << 1) | (1 << 30)],
    wrong: [
      [1 << 10, /read faults/],
      [1 << 3, /write succeeds/],
      [-1, /32 bits/],
    ],
  },
  // 2 MiB leaf at level 2: three entries read, each written back once
  ex10: {
    right: [{ reads: 3, writes: 3 }],
    wrong: [
      [{ reads: 4, writes: 4 }, /PML4, PDPT and PD/],
      [{ reads: 3, writes: 4 }, /one write per entry/],
    ],
  },
};

describe("page-walk lab check()", () => {
  describeCheckCases(check, CASES);
  it("says what is missing when there is no answer yet, without failing the cell", () => {
    const r = check("ex3", undefined);
    expect(r.ok).toBe(false);
    expect(r.answered).toBe(false);
    expect(r.message).toMatch(/pml4, pdpt, pd, pt, offset/);
  });
  it("rejects an unknown exercise id, naming the ones that exist", () => {
    expect(() => check("ex99", 1)).toThrow(/unknown exercise "ex99".*ex1, ex2/);
  });
  it("shows itself as a coloured box and as text", () => {
    const b = check("ex2", 0x5)[Symbol.for("Jupyter.display") as never] as unknown as () => Record<
      string,
      string
    >;
    const bundle = (b as () => Record<string, string>).call(check("ex2", 0x5));
    expect(bundle["text/html"]).toContain("Not yet");
    expect(bundle["text/plain"]).toContain("ex2: Not yet.");
  });
});
