/**
 * Directed tests for mmu.ts behaviour that the broader suites reach without checking: each one
 * pins a rule that a StrykerJS mutant of mmu.ts broke while every other test still passed.
 * Expected values come from the rule (pte_list's encoding, the descriptor pool's growth), not
 * from running the code under test.
 */
import { describe, expect, it } from "vitest";
import { MC, MemCg } from "../src/kvm/memcg";
import {
  detectWriteMisaligned,
  kvmPageTableHashfn,
  PteListDescPool,
  pteListAdd,
  pteListContains,
  pteListForEach,
  pteListRemove,
} from "../src/mmu/mmu";
import { PTE_LIST_EXT_MODERN as PTE_LIST_EXT } from "./kvm-values";
import { contents } from "./pte-list-contents";

/** A descriptor is 16 Int32 words: `more`, `spte_count`, then PTE_LIST_EXT = 14 sptes. */
const DESC_BYTES = 16 * 4;
/** The pool starts with room for 64 descriptors and doubles when full. */
const INITIAL_DESCS = 64;

describe("pte_list_desc pool", () => {
  it("keeps every spte across the pool's growth, and charges each doubling to the VM's account", () => {
    const memcg = new MemCg(2 ** 40, 2 ** 40);
    const pool = new PteListDescPool(PTE_LIST_EXT, memcg);
    // The first 64 descriptors' storage, plus a heap estimate for the array object itself.
    const charged0 = memcg.bytes[MC.pteListDescs]!;
    expect(charged0).toBeGreaterThanOrEqual(INITIAL_DESCS * DESC_BYTES);
    // 200 lists of 2 sptes each: one descriptor per list, 200 descriptors in all.
    const heads = new Uint32Array(200);
    for (let i = 0; i < 200; i++) {
      pteListAdd(pool, heads, i, 1000 + i);
      pteListAdd(pool, heads, i, 5000 + i);
    }
    expect(pool.live).toBe(200);
    // 64 → 128 → 256 descriptors.
    expect(pool.bytes()).toBe(256 * DESC_BYTES);
    expect(memcg.bytes[MC.pteListDescs]! - charged0).toBe((256 - INITIAL_DESCS) * DESC_BYTES);
    for (let i = 0; i < 200; i++) expect(contents(pool, heads, i)).toEqual([1000 + i, 5000 + i]);
  });

  it("the pool doubles at the 65th descriptor, not the 64th", () => {
    const pool = new PteListDescPool();
    for (let k = 0; k < INITIAL_DESCS; k++) pool.alloc();
    expect(pool.bytes()).toBe(INITIAL_DESCS * DESC_BYTES);
    pool.alloc();
    expect(pool.bytes()).toBe(2 * INITIAL_DESCS * DESC_BYTES);
  });

  it("a pool without an account grows too", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(INITIAL_DESCS + 1);
    for (let i = 0; i <= INITIAL_DESCS; i++) {
      pteListAdd(pool, heads, i, 2 * i);
      pteListAdd(pool, heads, i, 2 * i + 1);
    }
    expect(pool.bytes()).toBe(2 * INITIAL_DESCS * DESC_BYTES);
    expect(contents(pool, heads, INITIAL_DESCS)).toEqual([
      2 * INITIAL_DESCS,
      2 * INITIAL_DESCS + 1,
    ]);
  });

  it("growBytesBound: the bytes a doubling adds, only when n more descriptors would not fit", () => {
    const pool = new PteListDescPool();
    expect(pool.growBytesBound(INITIAL_DESCS)).toBe(0);
    expect(pool.growBytesBound(INITIAL_DESCS + 1)).toBe(INITIAL_DESCS * DESC_BYTES);
    const heads = new Uint32Array(10);
    for (let i = 0; i < 10; i++) {
      pteListAdd(pool, heads, i, 2 * i);
      pteListAdd(pool, heads, i, 2 * i + 1);
    }
    expect(pool.growBytesBound(INITIAL_DESCS - 10)).toBe(0);
    expect(pool.growBytesBound(INITIAL_DESCS - 9)).toBe(INITIAL_DESCS * DESC_BYTES);
  });

  it("a released descriptor is reused before a new one, descriptor 0 included", () => {
    const pool = new PteListDescPool();
    const a = pool.alloc();
    const b = pool.alloc();
    expect([a, b]).toEqual([0, 1]);
    pool.release(a);
    expect(pool.alloc()).toBe(0);
    pool.release(b);
    expect(pool.alloc()).toBe(1);
    expect(pool.alloc()).toBe(2);
    expect(pool.live).toBe(3);
    // A free list of several: released 1, 0, 2 come back as 2, 0, 1 (last released first).
    pool.release(1);
    pool.release(0);
    pool.release(2);
    expect([pool.alloc(), pool.alloc(), pool.alloc(), pool.alloc()]).toEqual([2, 0, 1, 3]);
    pool.release(3);
    // Churn never grows the pool: 1,000 alloc/release pairs with 3 live stay in the first 64.
    for (let k = 0; k < 1000; k++) pool.release(pool.alloc());
    expect(pool.bytes()).toBe(INITIAL_DESCS * DESC_BYTES);
  });
});

describe("pte_list walks", () => {
  it("for-each returns how many sptes it visited", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(3);
    pteListAdd(pool, heads, 1, 9);
    for (let s = 0; s < 20; s++) pteListAdd(pool, heads, 2, 100 + s);
    expect(pteListForEach(pool, heads, 0, () => {})).toBe(0);
    expect(pteListContains(pool, heads, 0, 0)).toBe(false); // an empty head holds nothing
    expect(pteListForEach(pool, heads, 1, () => {})).toBe(1);
    expect(pteListForEach(pool, heads, 2, () => {})).toBe(20);
  });

  it("an spte removed from the end of the head descriptor is no longer contained", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(1);
    for (let s = 0; s < 5; s++) pteListAdd(pool, heads, 0, 10 + s);
    expect(pteListRemove(pool, heads, 0, 14)).toBe(true); // the last one added
    expect(pteListContains(pool, heads, 0, 14)).toBe(false);
    expect(pteListRemove(pool, heads, 0, 11)).toBe(true); // the hole takes the last entry (13)
    expect(pteListContains(pool, heads, 0, 13)).toBe(true);
    expect(pteListContains(pool, heads, 0, 11)).toBe(false);
    expect(contents(pool, heads, 0)).toEqual([10, 12, 13]);
  });
});

describe("pte_list on a single-spte head", () => {
  it("removing another spte leaves the one there", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(1);
    pteListAdd(pool, heads, 0, 77);
    expect(pteListRemove(pool, heads, 0, 78)).toBe(false);
    expect(contents(pool, heads, 0)).toEqual([77]);
    expect(pteListContains(pool, heads, 0, 77)).toBe(true);
    expect(pteListContains(pool, heads, 0, 78)).toBe(false);
  });

  it("contains finds members of a descriptor chain, in the head and in a full tail", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(1);
    const n = PTE_LIST_EXT + 3;
    for (let s = 0; s < n; s++) pteListAdd(pool, heads, 0, 10 * s);
    for (let s = 0; s < n; s++) expect(pteListContains(pool, heads, 0, 10 * s)).toBe(true);
    expect(pteListContains(pool, heads, 0, 5)).toBe(false);
  });
});

describe("kvm_page_table_hashfn = hash_64(gfn, KVM_MMU_HASH_SHIFT = 12)", () => {
  /** include/linux/hash.h: (val * GOLDEN_RATIO_64) >> (64 - bits), in 64-bit arithmetic. */
  const hash64 = (gfn: number) =>
    Number(((BigInt(gfn) * 0x61c8864680b583ebn) & 0xffffffffffffffffn) >> 52n);

  it("matches the 64-bit product's top 12 bits for edge and pseudo-random gfns", () => {
    const gfns = [
      0,
      1,
      2,
      0xfff,
      0x1000,
      0xffffffff,
      2 ** 32,
      2 ** 32 + 1,
      2 ** 40 - 1,
      2 ** 52 - 1,
    ];
    // gfns whose product's top word has its low 20 bits all 0 or all 1: a carry lost or added in
    // the 32×32 partial products moves them into the next or previous bucket (for other gfns
    // such an error stays below the 12 bits kept). Found by a search with the same formula.
    gfns.push(
      ...[0xb0f8457c05, 0xe3c22d0975, 0x350fa9f3e7, 0x31a7d11e, 0x732d6aa9, 0x388c09c9],
      ...[0xd61fc86a, 0x69d6966c, 0x1a48c3173, 0xf51311ce, 0x9ff6e3e3, 0x2c55df2f],
      ...[0x6ea7476c79, 0x4904b0374e, 0x45de2f4bff, 0xe1fb798ad6, 0xf4b41583, 0x96a6eee6],
      ...[0x865ca7d60d, 0x6b5fc9e75f, 0x7010c8f1e1, 0x1b06aa14c6, 0x4c27c599, 0xc8bd329f],
    );
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const hi = (Math.imul(x, 2654435761) >>> 0) % 2 ** 20;
      gfns.push(hi * 2 ** 32 + x, x, (x & 0xffff) * 0x10001);
    }
    for (const g of gfns) expect(kvmPageTableHashfn(g), `gfn ${g}`).toBe(hash64(g));
  });
});

describe("detect_write_misaligned", () => {
  /** mmu.c: a 1-byte write at a gpte's start is not; else (off ^ (off + bytes - 1)) & ~(size - 1), or bytes < 4. */
  const rule = (size: number, off: number, bytes: number) =>
    (off & (size - 1)) === 0 && bytes === 1
      ? false
      : ((off ^ (off + bytes - 1)) & ~(size - 1)) !== 0 || bytes < 4;
  const HAS_4_BYTE_GPTE = 0x10; // kvm_mmu_page_role bit 4

  it("follows the kernel's rule for every offset of a gpte pair and every write size up to 16", () => {
    for (const [role, size] of [
      [1, 8],
      [1 | HAS_4_BYTE_GPTE, 4],
    ] as const)
      for (const page of [0, 0x7000])
        for (const o of [...Array(24).keys(), ...Array.from({ length: 16 }, (_, k) => 4080 + k)])
          for (let bytes = 1; bytes <= 16 && o + bytes <= 4096; bytes++)
            expect(detectWriteMisaligned(role, page + o, bytes), `${size}:${o}+${bytes}`).toBe(
              rule(size, o, bytes),
            );
  });
});
