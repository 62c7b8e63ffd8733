/**
 * The spte format (spte.h / spte.c) bit by bit. Every expected value is built here as a 64-bit
 * number from the EPT entry layout (Intel SDM, "EPT paging-structure entries": R 0, W 1, X 2,
 * memory type 3..5, ignore-PAT 6, leaf 7, A 8, D 9, address 12..51) and KVM's software bits
 * (`SPTE_MMU_PRESENT_MASK` bit 11, `EPT_SPTE_HOST_WRITABLE` 57, `EPT_SPTE_MMU_WRITABLE` 58, the
 * MMIO generation in 3..10 and 52..62, `kvm_mmu_set_ept_masks`), or for shadow paging's view from
 * the x86 PTE layout (P 0, W 1, U 2, A 5, D 6, PS 7, NX 63), never from the module's own masks.
 */
import { describe, expect, it } from "vitest";
import { ACC_EXEC_MASK, ACC_USER_MASK, ACC_WRITE_MASK } from "../src/arch/constants";
import {
  isAccessAllowed,
  isHostWritable,
  isLastSpte,
  isMmioSpte,
  isPossiblyWritable,
  isShadowPresent,
  makeMmioSpte,
  makeNonleafSpte,
  makeSplitSpte,
  makeSpte,
  mmioSpteGen,
  mmioSpteGfn,
  pfnHi,
  pfnLo,
  SpteOut,
  spteFlags,
  spteHex,
  spteHexLayout,
  spteHexX86,
  spteIndex,
  spteInvariantViolation,
  sptePfn,
} from "../src/mmu/spte";

const b = (k: number) => 1n << BigInt(k);
const R = b(0);
const W = b(1);
const X = b(2);
const MT_WB_IPAT = (6n << 3n) | b(6);
const PS = b(7);
const A = b(8);
const D = b(9);
const PRESENT = b(11);
const HOST_W = b(57);
const MMU_W = b(58);
const addr = (pfn: number) => BigInt(pfn) << 12n;
const lo = (v: bigint) => Number(v & 0xffffffffn);
const hi = (v: bigint) => Number(v >> 32n);
const val = (o: { lo: number; hi: number }) => (BigInt(o.hi >>> 0) << 32n) | BigInt(o.lo >>> 0);
const hex = (v: bigint) => `0x${v.toString(16)}`;

const PFN = 0xfedcba987; // above 2^20: both words of the address field
const ACC_ALL = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK;

describe("geometry and predicates", () => {
  it("SPTE_INDEX: 9 bits of gfn per level", () => {
    const gfn = 0x123456789a;
    for (let level = 1; level <= 5; level++)
      expect(spteIndex(gfn, level)).toBe(Number((BigInt(gfn) >> BigInt(9 * (level - 1))) & 511n));
  });

  it("address field round trip, both words", () => {
    const v = addr(PFN);
    expect([pfnLo(PFN), pfnHi(PFN)]).toEqual([lo(v), hi(v)]);
    expect(sptePfn(lo(v | PRESENT | R), hi(v | HOST_W | MMU_W))).toBe(PFN);
    expect(pfnHi(2 ** 40 - 1)).toBe(0xfffff);
  });

  it("present, last, MMIO, host-writable", () => {
    expect([isShadowPresent(lo(PRESENT)), isShadowPresent(lo(R | W | X | A | D | PS))]).toEqual([
      true,
      false,
    ]);
    expect([isLastSpte(0, 1), isLastSpte(lo(PRESENT), 2), isLastSpte(lo(PRESENT | PS), 2)]).toEqual(
      [true, false, true],
    );
    // EPT misconfig: W|X without R, and not MMU-present.
    expect([W | X, W | X | PRESENT, R | W | X, W, X].map((v) => isMmioSpte(lo(v)))).toEqual([
      true,
      false,
      false,
      false,
      false,
    ]);
    expect([isHostWritable(hi(HOST_W)), isHostWritable(hi(MMU_W))]).toEqual([true, false]);
  });

  it("is_access_allowed: write needs W, fetch X, read R", () => {
    const cases: [bigint, boolean, boolean, boolean][] = [
      [W, true, false, true],
      [R | X, true, false, false],
      [X, false, true, true],
      [R | W, false, true, false],
      [R, false, false, true],
      [W | X, false, false, false],
    ];
    for (const [v, write, fetch, want] of cases)
      expect([hex(v), write, fetch, isAccessAllowed(lo(v), write, fetch)]).toEqual([
        hex(v),
        write,
        fetch,
        want,
      ]);
  });

  it("is_possible_writable_spte: present and (W or MMU-writable)", () => {
    expect(isPossiblyWritable(lo(PRESENT | W), 0)).toBe(true);
    expect(isPossiblyWritable(lo(PRESENT), hi(MMU_W))).toBe(true);
    expect(isPossiblyWritable(lo(PRESENT), hi(HOST_W))).toBe(false);
    expect(isPossiblyWritable(lo(W), hi(MMU_W))).toBe(false);
  });
});

describe("make_spte", () => {
  const make = (
    level: number,
    access: number,
    oldLo: number,
    prefetch: boolean,
    hostWritable: boolean,
    canWrite: boolean,
    adKeep = -1,
  ) => {
    const out = new SpteOut();
    out.adKeep = adKeep;
    makeSpte(out, level, access, PFN, oldLo, prefetch, hostWritable, canWrite);
    return { v: hex(val(out)), wrprot: out.wrprot };
  };
  const base = PRESENT | MT_WB_IPAT | addr(PFN);

  it("a writable 4K leaf: RWX, A and D, Host- and MMU-writable", () => {
    expect(make(1, ACC_ALL, 0, false, true, true)).toEqual({
      v: hex(base | R | W | X | A | D | HOST_W | MMU_W),
      wrprot: false,
    });
  });

  it("huge leaves carry the leaf bit; prefetch leaves A clear", () => {
    expect(make(2, ACC_ALL, 0, false, true, true).v).toBe(
      hex(base | PS | R | W | X | A | D | HOST_W | MMU_W),
    );
    expect(make(3, ACC_ALL, 0, true, true, true).v).toBe(
      hex(base | PS | R | W | X | D | HOST_W | MMU_W),
    );
  });

  it("user and exec access map to R and X", () => {
    expect(make(1, ACC_USER_MASK, 0, false, true, true).v).toBe(hex(base | R | A | HOST_W));
    expect(make(1, ACC_EXEC_MASK, 0, false, true, true).v).toBe(hex(base | X | A | HOST_W));
  });

  it("a read-only host mapping: no W, no D, neither writable bit", () => {
    expect(make(1, ACC_ALL, 0, false, false, true)).toEqual({
      v: hex(base | R | X | A),
      wrprot: false,
    });
  });

  it("a write-tracked gfn: W refused (wrprot), unless the old spte was writable (no new D)", () => {
    expect(make(1, ACC_ALL, 0, false, true, false)).toEqual({
      v: hex(base | R | X | A | HOST_W),
      wrprot: true,
    });
    expect(make(1, ACC_ALL, lo(W), false, true, false)).toEqual({
      v: hex(base | R | W | X | A | HOST_W | MMU_W),
      wrprot: false,
    });
    expect(make(1, ACC_USER_MASK, 0, false, true, false).wrprot).toBe(false);
  });

  it("with A/D disabled (adKeep) neither A nor D is set", () => {
    const keep = lo(~(A | D) & 0xffffffffn) | 0;
    expect(make(1, ACC_ALL, 0, false, true, true, keep).v).toBe(
      hex(base | R | W | X | HOST_W | MMU_W),
    );
  });
});

describe("make_nonleaf_spte, make_mmio_spte, make_huge_page_split_spte", () => {
  it("non-leaf: RWX + A + present at the child's frame", () => {
    const out = new SpteOut();
    expect([out.lo, out.hi, out.wrprot, out.adKeep]).toEqual([0, 0, false, -1]);
    out.wrprot = true;
    makeNonleafSpte(out, PFN);
    expect([hex(val(out)), out.wrprot]).toEqual([hex(PRESENT | R | W | X | A | addr(PFN)), false]);
    out.adKeep = lo(~A & 0xffffffffn) | 0;
    makeNonleafSpte(out, PFN);
    expect(hex(val(out))).toBe(hex(PRESENT | R | W | X | addr(PFN)));
  });

  it("MMIO: W|X, the gfn, generation bits 0..7 at 3..10 and 8..18 at 52..62", () => {
    const out = new SpteOut();
    out.wrprot = true;
    const gen = 0x5a5a5; // 19 bits
    makeMmioSpte(out, PFN, gen | (1 << 19)); // bits above 19 are dropped
    const g = BigInt(gen);
    const want = W | X | addr(PFN) | ((g & 0xffn) << 3n) | ((g >> 8n) << 52n);
    expect([hex(val(out)), out.wrprot]).toEqual([hex(want), false]);
    expect([mmioSpteGen(out.lo, out.hi), mmioSpteGfn(out.lo, out.hi)]).toEqual([gen, PFN]);
    expect(isMmioSpte(out.lo)).toBe(true);
    makeMmioSpte(out, 1, 0x7ffff);
    expect(mmioSpteGen(out.lo, out.hi)).toBe(0x7ffff);
    expect(hex(val(out))).toBe(hex(W | X | addr(1) | (0xffn << 3n) | (0x7ffn << 52n)));
  });

  it("split: child i maps the huge frame + i pages of its level, flags kept, PS only above 4K", () => {
    const flags = PRESENT | MT_WB_IPAT | PS | R | W | X | A | D;
    const huge2 = flags | addr(0x40000200);
    const out = new SpteOut();
    out.wrprot = true;
    makeSplitSpte(out, lo(huge2), hi(huge2 | HOST_W | MMU_W), 2, 5);
    expect([hex(val(out)), out.wrprot]).toEqual([
      hex((flags & ~PS) | addr(0x40000205) | HOST_W | MMU_W),
      false,
    ]);
    const huge3 = flags | addr(0x40000000);
    makeSplitSpte(out, lo(huge3), hi(huge3 | HOST_W), 3, 511);
    expect(hex(val(out))).toBe(hex(flags | addr(0x40000000 + 511 * 512) | HOST_W));
  });
});

describe("spte_invariant_violation and flag names", () => {
  it("each invariant", () => {
    const leaf = PRESENT | R | W | X | HOST_W | MMU_W;
    const check = (v: bigint, level = 1, nonLeafWrprot = false) =>
      spteInvariantViolation(lo(v), hi(v), level, nonLeafWrprot);
    expect(check(W | X)).toBe(""); // not present: nothing to check
    expect(check(leaf)).toBe("");
    expect(check(leaf & ~HOST_W)).toBe("writable leaf without Host-writable");
    expect(check(leaf & ~MMU_W)).toBe("writable leaf without MMU-writable");
    expect(check(leaf & ~W & ~HOST_W)).toBe("MMU-writable leaf without Host-writable");
    expect(check(PRESENT | R | X | HOST_W)).toBe("");
    expect(check(PRESENT | R | X)).toBe(""); // read-only, no writable bit at all
    // nonLeafWrprot defaults to off: a non-leaf without W is a violation.
    expect(spteInvariantViolation(lo(PRESENT | R | X), 0, 2)).toBe("non-leaf spte lacks R/W/X");
    expect(check(PRESENT | R | W | X, 2)).toBe("");
    expect(check(PRESENT | R | X, 2)).toBe("non-leaf spte lacks R/W/X");
    expect(check(PRESENT | R | X, 2, true)).toBe("");
    expect(check(PRESENT | R | W, 2, true)).toBe("non-leaf spte lacks R/W/X");
    expect(check(PRESENT | W | X, 3)).toBe("non-leaf spte lacks R/W/X");
    expect(check(PRESENT | PS | R | X | HOST_W, 2)).toBe("");
  });

  it("flags", () => {
    const f = (v: bigint, level = 1) => spteFlags(lo(v), hi(v), level);
    expect(f(W | X | addr(5))).toEqual(["mmio"]);
    expect(f(R | W | X)).toEqual([]);
    expect(f(PRESENT | R | W | X | A | D | HOST_W | MMU_W)).toEqual([
      "present",
      "writable",
      "user",
      "exec",
      "accessed",
      "dirty",
      "host-writable",
      "mmu-writable",
    ]);
    expect(f(PRESENT | PS | R | HOST_W, 2)).toEqual([
      "present",
      "user",
      "huge",
      "host-writable",
      "write-protected",
    ]);
    // PS on a 4K entry is not "huge"; non-leaves carry no writability flags.
    expect(f(PRESENT | PS | X, 1)).toEqual(["present", "exec", "write-protected"]);
    expect(f(PRESENT | R | W | X | A | HOST_W, 2)).toEqual([
      "present",
      "writable",
      "user",
      "exec",
      "accessed",
    ]);
    expect(f(PRESENT | W | HOST_W)).toEqual(["present", "writable", "host-writable"]);
    expect(f(PRESENT | R | MMU_W | HOST_W)).toEqual([
      "present",
      "user",
      "host-writable",
      "mmu-writable",
    ]);
  });
});

describe("hex views", () => {
  const v = PRESENT | MT_WB_IPAT | R | W | A | D | addr(PFN) | HOST_W | MMU_W;

  it("EPT encoding as stored", () => {
    expect(spteHex(lo(v), hi(v))).toBe(hex(v));
    expect(spteHex(0x1234, 0)).toBe("0x1234");
    expect(spteHex(0x1234, 1)).toBe("0x100001234");
  });

  it("the x86 encoding shadow paging would hold (no X: NX set)", () => {
    const x86 = b(0) | b(1) | b(2) | b(5) | b(6) | b(9) | b(10) | PRESENT | addr(PFN) | b(63);
    expect(spteHexX86(lo(v), hi(v))).toBe(hex(x86));
    // Exec, huge, not user, not dirty, only Host-writable: no NX, PS kept.
    const v2 = PRESENT | PS | X | A | addr(0x200) | HOST_W;
    expect(spteHexX86(lo(v2), hi(v2))).toBe(hex(b(0) | b(5) | b(7) | b(9) | PRESENT | addr(0x200)));
    // Neither writable bit: no software bits but MMU-present.
    const v3 = PRESENT | R | addr(1);
    expect(spteHexX86(lo(v3), hi(v3))).toBe(hex(b(0) | b(2) | PRESENT | addr(1) | b(63)));
    // Not present: as is.
    expect(spteHexX86(lo(W | R), 5)).toBe(hex((5n << 32n) | W | R));
  });

  it("an MMIO spte in x86 form: P, bit 51, gfn, generation", () => {
    const out = new SpteOut();
    const gen = 0x5a5a5;
    makeMmioSpte(out, 0x12345, gen);
    const g = BigInt(gen);
    const want = b(0) | b(51) | addr(0x12345) | ((g & 0xffn) << 3n) | ((g >> 8n) << 52n);
    expect(spteHexX86(out.lo, out.hi)).toBe(hex(want));
  });

  it("the v4 layout: Host-writable at bit 10, MMU-writable at 11, no MMU-present bit", () => {
    const ept = (v & ~(PRESENT | HOST_W | MMU_W)) | b(10) | b(11);
    expect(spteHexLayout(lo(v), hi(v), false, "v4")).toBe(hex(ept));
    expect(spteHexLayout(lo(v), hi(v), false, "modern")).toBe(hex(v));
    const x86 = b(0) | b(1) | b(2) | b(5) | b(6) | b(10) | b(11) | addr(PFN) | b(63);
    expect(spteHexLayout(lo(v), hi(v), true, "v4")).toBe(hex(x86));
    const onlyHost = PRESENT | R | addr(1) | HOST_W;
    expect(spteHexLayout(lo(onlyHost), hi(onlyHost), true, "v4")).toBe(
      hex(b(0) | b(2) | b(10) | addr(1) | b(63)),
    );
    expect(spteHexLayout(lo(onlyHost), hi(onlyHost), true, "modern")).toBe(
      hex(b(0) | b(2) | b(9) | PRESENT | addr(1) | b(63)),
    );
    const readOnly = PRESENT | R | addr(1);
    expect(spteHexLayout(lo(readOnly), hi(readOnly), false, "v4")).toBe(hex(R | addr(1)));
    // Not present: unchanged in either layout.
    expect(spteHexLayout(lo(W | X), 0, false, "v4")).toBe(hex(W | X));
  });
});
