/**
 * pte_list_add / pte_list_remove (mmu.c) on typed arrays, against a plain Set as the oracle:
 * the head encoding (empty / one spte / descriptor chain), PTE_LIST_EXT = 14 per descriptor,
 * the count returned by add, and sptep 0 (which must not look like an empty head).
 */
import { describe, expect, it } from "vitest";
import { PteListDescPool, pteListAdd, pteListContains, pteListRemove } from "../src/mmu/mmu";
import { PTE_LIST_EXT_MODERN as PTE_LIST_EXT } from "./kvm-values";
import { contents } from "./pte-list-contents";

describe("pte_list", () => {
  it("sptep 0 is stored and found (the head is not mistaken for empty)", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(4);
    expect(pteListAdd(pool, heads, 1, 0)).toBe(0);
    expect(heads[1]).not.toBe(0);
    expect(pteListContains(pool, heads, 1, 0)).toBe(true);
    expect(contents(pool, heads, 1)).toEqual([0]);
    expect(pteListRemove(pool, heads, 1, 0)).toBe(true);
    expect(heads[1]).toBe(0);
  });

  it("add returns the previous count; descriptors hold PTE_LIST_EXT each; random removals", () => {
    const pool = new PteListDescPool();
    const heads = new Uint32Array(1);
    const oracle = new Set<number>();
    let x = 7;
    const next = () => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x;
    };
    for (let n = 0; n < 100; n++) {
      const sptep = n * 37; // includes 0
      expect(pteListAdd(pool, heads, 0, sptep)).toBe(oracle.size);
      oracle.add(sptep);
    }
    expect(pool.live).toBe(Math.ceil(100 / PTE_LIST_EXT));
    expect(contents(pool, heads, 0)).toEqual([...oracle].sort((a, b) => a - b));
    const order = [...oracle].sort(() => (next() & 1 ? 1 : -1));
    for (const s of order) {
      expect(pteListRemove(pool, heads, 0, s)).toBe(true);
      oracle.delete(s);
      expect(pteListRemove(pool, heads, 0, s)).toBe(false);
      expect(contents(pool, heads, 0)).toEqual([...oracle].sort((a, b) => a - b));
    }
    expect(heads[0]).toBe(0);
    expect(pool.live).toBe(0);
  });
});
