// The shadow-paging lab's check(): right answers are accepted, plausible wrong ones are refused
// with a hint. The right answers are worked out here from the lab guest's layout (PML4 0x100 →
// PDPT 0x101 → PD 0x102 → PT 0x103 for gva 0x400000; the 2 MiB page at gfn 0x800; PD entry 4 a
// read-only alias of the PT; PML4 0x106 for address space B) and KVM's rules, not read from the
// grader.
import { describe, expect, it } from "vitest";
import { check, createLab, createLab32, GVA32, pte } from "../lib/shadow-paging-lab";
import { type CheckCases, describeCheckCases } from "./check-cases";

// The x86 4-level walk of 0x400000: PML4 index 0, PDPT index 0, PD index 2, PT index 0.
const WALK = [0x100, 0x101, 0x102, 0x103];
const ACC_X = 1;
const ACC_W = 2;
const ACC_U = 4;
const GiB = 2 ** 30;

const CASES: CheckCases = {
  // account_shadowed: every table KVM shadows for the walk is write-protected, root included.
  ex1: {
    right: [WALK, [...WALK].reverse()],
    wrong: [
      [WALK.slice(0, 3), /missing: the PT \(level 1\)/],
      [WALK.slice(1), /missing: the PML4 \(level 4\)/],
      [[...WALK, 0x200], /0x200 is a data page/],
      [WALK.map((g) => g * 4096), /gfns \(gpa >> 12\), not gpas/],
      [[...WALK, 0x105], /window's tables/],
      ["0x100", /expected a list of gfns/],
    ],
  },
  // Only the upper levels are write-tracked (role.level > PG_LEVEL_4K).
  ex2: {
    right: [WALK.slice(0, 3)],
    wrong: [
      [WALK, /Not 0x103: the level-1 table is write-protected but not write-tracked/],
      [[0x100, 0x101], /missing: the PD \(level 2\)/],
      [[0x103], /Not 0x103.*missing: the PML4/s],
    ],
  },
  // The written table's shadow page goes unsync on the first write, which is the only exit.
  ex3: {
    right: [{ gfn: 0x103, exits: 1 }],
    wrong: [
      [{ gfn: 0x103, exits: 3 }, /Fewer than 3 writes exit/],
      [{ gfn: 0x103, exits: 0 }, /The first write does exit/],
      [{ gfn: 0x102, exits: 1 }, /upper-level table: those are write-tracked/],
      [{ gfn: 0x105, exits: 1 }, /0x105 is not the one/],
      [{ gfn: 0x103 }, /"exits" is missing/],
    ],
  },
  // Read: no exit; INVLPG: one entry re-synced, page stays unsync; MOV CR3: sync.
  ex4: {
    right: [[true, true, false]],
    wrong: [
      [
        [true, false, false],
        /Step 2 \(INVLPG 0x400000\): KVM intercepts INVLPG, but what does it re-read/,
      ],
      [[false, false, false], /Step 1 .*Step 2/s],
      [[true, true, true], /Step 3 \(MOV CR3 \(same value\)\): a CR3 load flushes the guest's TLB/],
      [[true, true], /three booleans/],
    ],
  },
  // detect_write_flooding: zap when the count reaches 3.
  ex5: {
    right: [3, 3n],
    wrong: [
      [1, /only zaps the one shadow entry/],
      [2, /After write 2 the page is still there/],
      [4, /Earlier than write 4/],
      ["never", /only level-1 pages are exempt/],
    ],
  },
  // A fault through the PD resets its count (2 + 3 = 5); a read without exit does not.
  ex6: {
    right: [{ newPage: 5, mappedPage: 3 }],
    wrong: [
      [{ newPage: 3, mappedPage: 3 }, /\(a\) Later: the read of a new page faults/],
      [{ newPage: 5, mappedPage: 5 }, /\(b\) 0x400000 is already mapped/],
      [{ newPage: 6, mappedPage: 3 }, /\(a\) The reset puts the count back to 0/],
    ],
  },
  // One unsync PT synced; a flush to write-protect it again and one for the dropped entry 1;
  // one local flush; the same CR3 keeps its root.
  ex7: {
    right: [{ synced: 1, remoteFlushes: 2, localFlushes: 1, newRoots: 0 }],
    wrong: [
      [{ synced: 1, remoteFlushes: 1, localFlushes: 1, newRoots: 0 }, /remoteFlushes: two things/],
      [
        { synced: 1, remoteFlushes: 3, localFlushes: 1, newRoots: 0 },
        /sync skips empty shadow entries/,
      ],
      [{ synced: 1, remoteFlushes: 2, localFlushes: 0, newRoots: 0 }, /every CR3 load flushes/],
      [
        { synced: 1, remoteFlushes: 2, localFlushes: 3, newRoots: 0 },
        /one local flush when it next enters/,
      ],
      [
        { synced: 2, remoteFlushes: 2, localFlushes: 1, newRoots: 1 },
        /synced: .*newRoots: the value of CR3 did not change/s,
      ],
    ],
  },
  // B's root is the only new (gfn, role); A's root comes back from prev_roots.
  ex8: {
    right: [[1, 0]],
    wrong: [
      [[4, 0], /same tables with the same rights/],
      [[0, 0], /0x106\) was never shadowed/],
      [[1, 1], /prev_roots/],
      [[1], /a list of two numbers/],
    ],
  },
  // Stale until INVLPG: 0x200000 (gfn 0x200), then 0x300000 (frame 0x300).
  ex9: {
    right: [{ before: 0x200000, after: 0x300000 }],
    wrong: [
      [{ before: 0x300000, after: 0x300000 }, /before: not yet.*unsync/],
      [{ before: 0x200000, after: 0x200000 }, /after: INVLPG makes KVM re-read/],
      [{ before: 0x200, after: 0x300 }, /neither the old nor the new frame/],
    ],
  },
  // The 2 MiB guest page starts at gfn 0x800; 4 KiB host pages → level-1 direct page.
  ex10: {
    right: [{ gfn: 0x800, level: 1, direct: true }],
    wrong: [
      [{ gfn: 0x803, level: 1, direct: true }, /first gfn of the region/],
      [{ gfn: 0x102, level: 1, direct: true }, /that is the guest's PD/],
      [{ gfn: 0x800, level: 1, direct: false }, /direct: no guest table lies below/],
      [{ gfn: 0x800, level: 2, direct: true }, /level: the host has only 4 KiB pages/],
      [{ gfn: 0x800, level: 1, direct: "yes" }, /direct is true or false/],
    ],
  },
  // Two roles: W|U|X through PD entry 2, U|X through the read-only PD entry 4.
  ex11: {
    right: [
      { count: 2, access: [ACC_X | ACC_W | ACC_U, ACC_X | ACC_U] },
      { count: 2, access: [5, 7] },
    ],
    wrong: [
      [{ count: 1, access: [7] }, /count: KVM looks shadow pages up by \(gfn, role\).*access:/s],
      [{ count: 2, access: [7, 7] }, /in the list twice/],
      [{ count: 2, access: [7, 3] }, /access: for each path AND the rights/],
      [{ count: 2, access: [7, 4] }, /unless one has XD/],
    ],
  },
  // 4 GiB / (512 × 2 MiB) = 4 shadow PDs; 0xc0400000 is in the fourth GiB.
  ex12: {
    right: [{ pages: (4 * GiB) / (512 * 2 * 2 ** 20), quadrant: Math.floor(GVA32 / GiB) }],
    wrong: [
      [{ pages: 1, quadrant: 3 }, /pages: compare what each covers/],
      [{ pages: 2, quadrant: 3 }, /512 entries of 2 MiB/],
      [{ pages: 4, quadrant: 0 }, /bits 31:30/],
      [{ pages: 4, quadrant: 768 }, /quadrant: it numbers the GiB/],
    ],
  },
};

describe("shadow-paging lab check()", () => {
  describeCheckCases(check, CASES);

  it("has at least eight exercises, each with two plausible wrong answers here", () => {
    expect(Object.keys(CASES).length).toBeGreaterThanOrEqual(8);
    for (const c of Object.values(CASES)) expect(c.wrong.length).toBeGreaterThanOrEqual(2);
  });

  it("says what is missing when there is no answer yet, without failing the cell", () => {
    const r = check("ex7", undefined);
    expect(r.ok).toBe(false);
    expect(r.answered).toBe(false);
    expect(r.message).toMatch(/synced.*remoteFlushes.*localFlushes.*newRoots/);
  });

  it("rejects an unknown exercise id, naming the ones that exist", () => {
    expect(() => check("ex13", 1)).toThrow(/unknown exercise "ex13".*ex1, ex2.*ex12/);
  });
});

describe("the lab machine", () => {
  it("setGpte goes through the window to guest memory; bad input is refused by name", () => {
    const lab = createLab();
    expect(lab.setGpte(0x103, 9, pte(0x300))).toEqual({ fault: false, gpa: 0x103000 + 9 * 8 });
    expect(lab.gpte(0x103, 9)).toBe((0x300n << 12n) | 7n);
    expect(() => lab.setGpte(0x200, 0, 0n)).toThrow(/gfn.*0x100 to 0x107/);
    expect(() => lab.setGpte(0x103, 512, 0n)).toThrow(/index.*0 to 511/);
    expect(() => lab.touch(-1)).toThrow(/gva/);
    expect(() => pte(-1)).toThrow(/gfn/);
    expect(() => pte(0x300, null as never)).toThrow(/options/);
    expect(() => pte(0x300, { user: "yes" as never })).toThrow(/user.*true or false/);
    expect(() => createLab({ backing: "1g" as never })).toThrow(/backing/);
  });

  it("32-bit lab: the user pages at GVA32 are mapped", () => {
    const lab = createLab32();
    expect(lab.touch(GVA32)).toMatchObject({ fault: false, gpa: 20 * 2 ** 20 });
  });
});
