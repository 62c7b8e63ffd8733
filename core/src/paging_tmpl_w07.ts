/**
 * The guest walker as it was around the 2007 rewrite (seed 2, "KVM: MMU: Simplify page table
 * walker", spec §13.2), for `createVm({ features: { guestWalker: "w07b" | "w07a" } })`.
 *
 * What differs from the modern walker (paging_tmpl.ts), and only this:
 * - rights are checked level by level, in the old order, on the entry just read (not-present;
 *   reserved bits; write && !RW when user or CR0.WP; user && !US; fetch && NX when EFER.NX), so a
 *   walk stops at the first entry that refuses the access;
 * - A is set in each entry as soon as that entry passed its checks, so walks that fail further
 *   down leave A set on the levels above;
 * - D of the leaf is a separate write after the walk: "w07b" (2.6.23–25) writes it at the end of
 *   the walk and tells the MMU (`kvm_mmu_pte_write`); "w07a" (2.6.21/22) sets it in the step that
 *   makes the shadow entry writable (`FNAME(fix_write_pf)`), here the step right after a
 *   successful write walk, counted in `gpteDWritesAfterWalk` as well;
 * - "w07a" kept the current table mapped across levels (`mappingsHeldMax` 1).
 *
 * Kept as in the modern walker so that both see the same guest tables: the reserved-bit check
 * (placed right after the present check, where KVM put it when it was added), 1 GiB and 5-level
 * tables, and the checks that postdate 2007 (SMEP, SMAP, protection keys), made once at the end.
 * Old-walker writes are plain stores (no cmpxchg: there was no lock-free A/D update in 2007).
 *
 * Unverified (spec §18 item 1): whether the end-of-walk D write is part of commit 42bf3f0a
 * itself or of its immediate follow-ups; the seed patch text shows it in the "after" code, and its
 * "before" side already calls `update_dirty_bit` from the walker, while the spec places the
 * 2.6.21/22 D update in `fix_write_pf`. We follow the spec for "w07a".
 */

import { PFERR_FETCH_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK } from "./constants";
import { PT_ACCESSED_MASK, PT_DIRTY_MASK, PT_USER_MASK, PT_WRITABLE_MASK } from "./guest_pte";
import {
  failWalk,
  finishWalk,
  type GuestWalker,
  type GuestWalkerFlavour,
  gpteFailure,
  isLastGpte,
  readGpte,
  recordAdWrite,
  WALK_ACCESS,
  WALK_OK,
  type WalkAddrFn,
  type WalkerEnv,
  walkAddrGeneric,
  walkError,
  walkStart,
} from "./paging_tmpl";

/** 2.6.23–25 walker: A per level while walking, D at the end of the walk. */
export const walkAddrW07b: WalkAddrFn = (w, mmu, env, hi, lo, access) => {
  if (!walkLoopW07b(w, mmu, env, hi, lo, access)) return false;
  if ((access & PFERR_WRITE_MASK) !== 0 && setGpteBits(w, env, w.level - 1, PT_DIRTY_MASK)) {
    // The walker wrote a guest page table: kvm_mmu_pte_write.
    env.notifyPteWrite?.(w.pteGpa[w.level - 1]!, mmu.rootLevel === 2 ? 4 : 8);
  }
  return true;
};

/** 2.6.21/22 walker: A per level while walking; D only in the step after a successful write walk. */
export const walkAddrW07a: WalkAddrFn = (w, mmu, env, hi, lo, access) => {
  if (!walkLoopW07a(w, mmu, env, hi, lo, access)) return false;
  // FNAME(fix_write_pf) time: the shadow entry becomes writable and the gpte gets D.
  if ((access & PFERR_WRITE_MASK) !== 0 && setGpteBits(w, env, w.level - 1, PT_DIRTY_MASK))
    w.gpteDWritesAfterWalk++;
  return true;
};

/**
 * The level loop both 2007 flavours share (made once per flavour at load, not per walk);
 * `holdsMapping` for the 2.6.21/22 one.
 */
const walkW07 =
  (holdsMapping: boolean): WalkAddrFn =>
  (w, mmu, env, hi, lo, access) => {
    let level = walkStart(w, mmu, lo);
    if (level === 0) return walkError(w, mmu, 0, access);
    const wide = mmu.rootLevel !== 2;
    const write = (access & PFERR_WRITE_MASK) !== 0;
    const user = (access & PFERR_USER_MASK) !== 0;
    const fetch = (access & PFERR_FETCH_MASK) !== 0;
    let pteLo = w.rootLo;
    let pteHi = w.rootHi;
    let pteAccess = 7;
    for (;;) {
      const ptAccess = pteAccess;
      if (!readGpte(w, env, level, hi, lo, wide, pteHi, pteLo)) return walkError(w, mmu, 0, access);
      // The table stays mapped until the next level's is (and the last one until the caller
      // releases it): one mapping held across levels.
      if (holdsMapping) w.mappingsHeldMax = 1;
      const li = level - 1;
      pteLo = w.ptesLo[li]!;
      pteHi = w.ptesHi[li]!;
      pteAccess = ptAccess & ((pteLo & 7) ^ (pteHi >>> 31));
      const failure = gpteFailure(mmu, li, pteLo, pteHi);
      if (failure !== WALK_OK) return failWalk(w, mmu, level, failure, access);
      if (
        (write && (pteLo & PT_WRITABLE_MASK) === 0 && (user || mmu.wp)) ||
        (user && (pteLo & PT_USER_MASK) === 0) ||
        (fetch && mmu.nx && pteHi >>> 31 !== 0)
      ) {
        w.pteAccess = pteAccess;
        return failWalk(w, mmu, level, WALK_ACCESS, access);
      }
      w.ptAccess[li] = ptAccess;
      if ((pteLo & PT_ACCESSED_MASK) === 0 && setGpteBits(w, env, li, PT_ACCESSED_MASK))
        pteLo = w.ptesLo[li]!;
      if (isLastGpte(level, pteLo, wide, mmu.pse)) break;
      level--;
    }
    return finishWalk(w, mmu, env, level, wide, pteLo, pteHi, lo, access, pteAccess);
  };
const walkLoopW07b = walkW07(false);
const walkLoopW07a = walkW07(true);

/**
 * Set `bits` in the gpte at level index `li` with a plain store (map, write, unmap) and account
 * it. Returns false when nothing was written: the bits were set already, or the table is in a
 * read-only slot (ROM page tables keep their A/D bits, as in the modern walker).
 */
function setGpteBits(w: GuestWalker, env: WalkerEnv, li: number, bits: number): boolean {
  const orig = w.ptesLo[li]!;
  const pte = (orig | bits) >>> 0;
  if (pte === orig || w.pteWritable[li] === 0) return false;
  env.memory.write32(w.tableHvfn[li]!, w.pteGpa[li]! % 4096, pte);
  recordAdWrite(w, env, li, orig, pte);
  return true;
}

/** The walk function of a `features.guestWalker` flavour (chosen once per vCPU). */
export function walkAddrFor(flavour: GuestWalkerFlavour): WalkAddrFn {
  return flavour === "w07b" ? walkAddrW07b : flavour === "w07a" ? walkAddrW07a : walkAddrGeneric;
}
