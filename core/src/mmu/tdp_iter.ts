/**
 * `struct tdp_iter` (tdp_iter.c): a pre-order walk over the TDP paging structure of one root,
 * restricted to a gfn range, visiting each entry once. One instance is reused; stepping
 * allocates nothing. Each step function returns whether it moved.
 */
import type { MmuPageStore } from "./mmu_internal";
import { GFN_SPAN, isLastSpte, isShadowPresent, sptePfn } from "./spte";

export class TdpIter {
  /** The page store the walk reads. */
  readonly store: MmuPageStore;
  /** `pt_path`: sp id of the table at each level along the current path (index = level). */
  readonly path: Int32Array = new Int32Array(6);
  /** Table (sp id) holding the current entry. */
  // Stryker disable next-line UnaryOperator: start() sets it before anything reads it
  sp = -1;
  /** Index of the current entry in that table. */
  index = 0;
  /** Level of the current entry (1 = 4 KiB). */
  level = 0;
  /** First gfn mapped by the current entry. */
  gfn = 0;
  /** `next_last_level_gfn`: the gfn the walk is heading for when stepping down. */
  nextLastLevelGfn = 0;
  /** Level of the root. */
  rootLevel = 0;
  /** Lowest level visited. */
  minLevel = 1;
  /** End of the range (exclusive). */
  endGfn = 0;
  /** Current entry value (`old_spte`), lo and hi words; updated by writers. */
  oldLo = 0;
  oldHi = 0;
  /** False once the walk has left the root (or the range). */
  valid = false;
  /** Steps taken (for the `tdp_iter_steps` cost counter). */
  steps = 0;

  constructor(store: MmuPageStore) {
    this.store = store;
  }

  /** `tdp_iter_start`: position on the root entry covering `startGfn`. */
  start(root: number, rootLevel: number, minLevel: number, startGfn: number, endGfn: number): void {
    this.rootLevel = rootLevel;
    this.minLevel = minLevel;
    this.endGfn = endGfn;
    this.nextLastLevelGfn = startGfn;
    this.path[rootLevel] = root;
    this.level = rootLevel;
    this.valid = true;
    this.steps = 0;
    this.enter(root);
  }

  /** Re-read the current entry (`tdp_iter_refresh_sptep` + read). */
  private enter(sp: number): void {
    this.sp = sp;
    const span = GFN_SPAN[this.level]!;
    this.gfn = this.nextLastLevelGfn - (this.nextLastLevelGfn % span);
    this.index = (this.gfn / span) & 511;
    const spt = this.store.spt[sp]!;
    this.oldLo = spt[this.index * 2]!;
    this.oldHi = spt[this.index * 2 + 1]!;
  }

  /** `try_step_down`: into the child table of a present non-leaf entry above minLevel. */
  stepDown(): boolean {
    if (this.level === this.minLevel) return false;
    if (!isShadowPresent(this.oldLo) || isLastSpte(this.oldLo, this.level)) return false;
    const child = this.store.pfnToSp(sptePfn(this.oldLo, this.oldHi));
    this.level--;
    this.path[this.level] = child;
    this.enter(child);
    return true;
  }

  /** `try_step_side`: to the next entry of the same table, if the current one is not the last. */
  stepSide(): boolean {
    if (this.index === 511) return false;
    this.gfn += GFN_SPAN[this.level]!;
    this.nextLastLevelGfn = this.gfn;
    this.index++;
    const spt = this.store.spt[this.sp]!;
    this.oldLo = spt[this.index * 2]!;
    this.oldHi = spt[this.index * 2 + 1]!;
    return true;
  }

  /** `try_step_up`: back to the entry that points at the current table. */
  stepUp(): boolean {
    if (this.level === this.rootLevel) return false;
    this.level++;
    const span = GFN_SPAN[this.level]!;
    this.gfn = this.gfn - (this.gfn % span);
    this.sp = this.path[this.level]!;
    this.index = (this.gfn / span) & 511;
    const spt = this.store.spt[this.sp]!;
    this.oldLo = spt[this.index * 2]!;
    this.oldHi = spt[this.index * 2 + 1]!;
    return true;
  }

  /**
   * `tdp_iter_next`: down if possible, else sideways, else up-and-sideways; the walk ends when
   * no step is possible or the next entry starts at or beyond `endGfn`.
   */
  next(): void {
    this.steps++;
    if (this.stepDown()) {
      this.checkEnd();
      return;
    }
    do {
      if (this.stepSide()) {
        this.checkEnd();
        return;
      }
    } while (this.stepUp());
    this.valid = false;
  }

  private checkEnd(): void {
    if (this.gfn >= this.endGfn) this.valid = false;
  }

  /** Store a new value in the current entry (the caller runs handle_changed_spte). */
  write(lo: number, hi: number): void {
    const spt = this.store.spt[this.sp]!;
    spt[this.index * 2] = lo;
    spt[this.index * 2 + 1] = hi;
    this.oldLo = lo;
    this.oldHi = hi;
  }
}
