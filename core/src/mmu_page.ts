/**
 * Shadow pages (`struct kvm_mmu_page`, mmu_internal.h) in a column store.
 *
 * A shadow page is an integer id. Its fields live in parallel typed-array columns indexed by id
 * (grown by doubling, 32-bit indices), and its 512 sptes live in `spt[id]`, a 1024-word
 * `Uint32Array` view (lo/hi per spte, see spte.ts) into a pooled chunk of 64 pages, so the
 * simulator holds exactly 4 KiB of spte storage per live page, like KVM.
 *
 * ```
 *  column         type          meaning
 *  role           Uint32Array   kvm_mmu_page_role word (role.ts)
 *  gfn            Float64Array  sp->gfn (gfns reach 2^40: a double holds them exactly)
 *  parentSp       Int32Array    TDP: the sp holding the one parent entry (sp->ptep), -1 for roots
 *  parentIdx      Int16Array    index of that entry in the parent
 *  rootCount      Int32Array    tdp_mmu_root_count / root_count
 *  flags          Uint8Array    SP_LIVE | SP_TDP | SP_TRANSLATION_ACCOUNTED
 *  validGen       Uint8Array    mmu_valid_gen at creation (legacy)
 *  prev/next      Int32Array    active_mmu_pages list (legacy; head = newest)
 *  hashNext       Int32Array    chain in mmu_page_hash (legacy)
 * ```
 * `translation[id]` is the per-entry gfn array (`sp->gfns`, one 4 KiB page of 512 × u64 in KVM,
 * a 512-entry Float64Array here) or null: after seed 2010 only pages with guest PTEs get one.
 *
 * Every host frame of an spt page gets a pfn `MMU_PAGE_PFN_BASE + id`, far above any frame of
 * guest memory, so a non-leaf spte leads to its child in O(1) (KVM: `spte_to_child_sp`).
 */
import { ROLE_DIRECT, ROLE_LEVEL_MASK } from "./role";
import { GFN_SPAN, SPT_WORDS } from "./spte";

/** pfn of spt page 0; guest-memory pfns (hva >> 12 < 2^35) stay below it. */
export const MMU_PAGE_PFN_BASE = 2 ** 38;
/** The page is allocated. */
export const SP_LIVE = 1;
/** The page belongs to the TDP MMU (`sp->tdp_mmu_page`). */
export const SP_TDP = 2;
/** The page's translation array counts as MMU memory (false for self-check-only arrays). */
export const SP_TRANSLATION_ACCOUNTED = 4;
/** TDP root: the MMU's own reference was dropped by the zap of invalidated roots. */
export const SP_ROOT_ZAPPED = 8;

const CHUNK_PAGES = 64;

/** Counters of MMU data pages (§13.1): live and lifetime allocations/frees. */
export interface MmuPageCounts {
  spt_pages_live: number;
  translation_pages_live: number;
  mmu_data_pages_live: number;
  mmu_data_pages_allocated: number;
  mmu_data_pages_freed: number;
}

/** Column store of shadow pages; ids are reused (lowest freed first is not guaranteed). */
export class MmuPageStore {
  spt: Uint32Array[] = [];
  role: Uint32Array = new Uint32Array(16);
  gfn: Float64Array = new Float64Array(16);
  parentSp: Int32Array = new Int32Array(16);
  parentIdx: Int16Array = new Int16Array(16);
  rootCount: Int32Array = new Int32Array(16);
  flags: Uint8Array = new Uint8Array(16);
  validGen: Uint8Array = new Uint8Array(16);
  prev: Int32Array = new Int32Array(16);
  next: Int32Array = new Int32Array(16);
  hashNext: Int32Array = new Int32Array(16);
  translation: (Float64Array | null)[] = [];
  /** Ids handed out so far (high-water mark); ids < created have an spt view. */
  created = 0;
  /** Number of live pages. */
  live = 0;
  private freeIds = new Int32Array(16);
  private nFree = 0;
  private chunks: ArrayBuffer[] = [];
  /** Memory counters, updated on every alloc/free (usually the VM's KvmStats object). */
  readonly counts: MmuPageCounts;

  constructor(
    counts: MmuPageCounts = {
      spt_pages_live: 0,
      translation_pages_live: 0,
      mmu_data_pages_live: 0,
      mmu_data_pages_allocated: 0,
      mmu_data_pages_freed: 0,
    },
  ) {
    this.counts = counts;
  }

  /**
   * Allocate a page (`kvm_mmu_alloc_shadow_page` / `tdp_mmu_alloc_sp`): zeroed spt, no parent.
   * @param withTranslation allocate a gfn array
   * @param accountTranslation count that array as MMU memory (false: self-check only)
   */
  alloc(
    role: number,
    gfn: number,
    tdp: boolean,
    withTranslation: boolean,
    accountTranslation: boolean,
  ): number {
    let id: number;
    if (this.nFree > 0) {
      id = this.freeIds[--this.nFree]!;
      this.spt[id]!.fill(0);
    } else {
      id = this.created++;
      if (id >= this.role.length) this.grow(id + 1);
      const chunk = Math.floor(id / CHUNK_PAGES);
      if (chunk >= this.chunks.length)
        this.chunks.push(new ArrayBuffer(CHUNK_PAGES * SPT_WORDS * 4));
      this.spt[id] = new Uint32Array(
        this.chunks[chunk]!,
        (id % CHUNK_PAGES) * SPT_WORDS * 4,
        SPT_WORDS,
      );
      this.translation[id] = null;
    }
    this.role[id] = role;
    this.gfn[id] = gfn;
    this.parentSp[id] = -1;
    this.parentIdx[id] = 0;
    this.rootCount[id] = 0;
    this.prev[id] = -1;
    this.next[id] = -1;
    this.hashNext[id] = -1;
    this.flags[id] = SP_LIVE | (tdp ? SP_TDP : 0);
    this.live++;
    this.counts.spt_pages_live++;
    this.counts.mmu_data_pages_live++;
    this.counts.mmu_data_pages_allocated++;
    if (withTranslation) {
      this.translation[id] = new Float64Array(512).fill(-1);
      if (accountTranslation) {
        this.flags[id]! |= SP_TRANSLATION_ACCOUNTED;
        this.counts.translation_pages_live++;
        this.counts.mmu_data_pages_live++;
        this.counts.mmu_data_pages_allocated++;
      }
    }
    return id;
  }

  /**
   * Incremented whenever a table is unlinked or freed: paths found earlier may no longer exist
   * (the stage-2 walk cache keys on it).
   */
  topologyEpoch = 0;

  /** Record that a table was unlinked from its parent (it may stay allocated: legacy orphans). */
  unlinked(): void {
    this.topologyEpoch++;
  }

  /** Free a page (`tdp_mmu_free_sp` / `kvm_mmu_free_shadow_page`): its data pages go back. */
  free(id: number): void {
    if (!this.isLive(id)) throw new Error(`mmu_page: double free of sp ${id}`);
    this.topologyEpoch++;
    this.counts.spt_pages_live--;
    this.counts.mmu_data_pages_live--;
    this.counts.mmu_data_pages_freed++;
    if (this.flags[id]! & SP_TRANSLATION_ACCOUNTED) {
      this.counts.translation_pages_live--;
      this.counts.mmu_data_pages_live--;
      this.counts.mmu_data_pages_freed++;
    }
    this.translation[id] = null;
    this.flags[id] = 0;
    this.live--;
    if (this.nFree >= this.freeIds.length) {
      const n = new Int32Array(this.freeIds.length * 2);
      n.set(this.freeIds);
      this.freeIds = n;
    }
    this.freeIds[this.nFree++] = id;
  }

  /** The page is allocated. */
  isLive(id: number): boolean {
    return id >= 0 && id < this.created && (this.flags[id]! & SP_LIVE) !== 0;
  }

  /** Host frame of the page's spt (what a non-leaf spte points at). */
  spPfn(id: number): number {
    return MMU_PAGE_PFN_BASE + id;
  }

  /** The page whose spt lives at host frame `pfn` (`spte_to_child_sp`). */
  pfnToSp(pfn: number): number {
    return pfn - MMU_PAGE_PFN_BASE;
  }

  /** Bytes of typed-array storage held by the store (spt chunks, columns, translation arrays). */
  bytes(): number {
    let b = this.chunks.length * CHUNK_PAGES * SPT_WORDS * 4;
    b += this.role.byteLength + this.gfn.byteLength + this.parentSp.byteLength;
    b += this.parentIdx.byteLength + this.rootCount.byteLength + this.flags.byteLength;
    b += this.validGen.byteLength + this.prev.byteLength + this.next.byteLength;
    b += this.hashNext.byteLength + this.freeIds.byteLength;
    for (let i = 0; i < this.created; i++) b += this.translation[i]?.byteLength ?? 0;
    return b;
  }

  private grow(min: number): void {
    let n = this.role.length;
    while (n < min) n *= 2;
    const g = <T extends Uint32Array | Float64Array | Int32Array | Int16Array | Uint8Array>(
      a: T,
    ): T => {
      const c = new (a.constructor as new (n: number) => T)(n);
      c.set(a as never);
      return c;
    };
    this.role = g(this.role);
    this.gfn = g(this.gfn);
    this.parentSp = g(this.parentSp);
    this.parentIdx = g(this.parentIdx);
    this.rootCount = g(this.rootCount);
    this.flags = g(this.flags);
    this.validGen = g(this.validGen);
    this.prev = g(this.prev);
    this.next = g(this.next);
    this.hashNext = g(this.hashNext);
  }
}

/**
 * gfn mapped by entry `i` of a direct page (seed 2010, `kvm_mmu_page_get_gfn` for direct pages):
 * `sp.gfn + (i << 9*(level-1))`, computed with multiplication because gfns exceed 32 bits.
 */
export function directEntryGfn(spGfn: number, level: number, i: number): number {
  return spGfn + i * GFN_SPAN[level]!;
}

/** `RET_PF_*` (mmu_internal.h): outcomes of a page-fault handler. */
export const RET_PF_CONTINUE = 0;
export const RET_PF_RETRY = 1;
export const RET_PF_EMULATE = 2;
export const RET_PF_INVALID = 3;
export const RET_PF_FIXED = 4;
export const RET_PF_SPURIOUS = 5;

/**
 * `kvm_mmu_page_get_gfn`: gfn mapped by entry `i`. Indirect pages (and, before seed 2010, every
 * page) read the stored array; direct pages compute it.
 */
export function kvmMmuPageGetGfn(
  store: MmuPageStore,
  sp: number,
  i: number,
  useStored: boolean,
): number {
  const t = store.translation[sp];
  if (t !== null && t !== undefined && (useStored || (store.role[sp]! & ROLE_DIRECT) === 0))
    return t[i]!;
  return directEntryGfn(store.gfn[sp]!, store.role[sp]! & ROLE_LEVEL_MASK, i);
}

/**
 * `kvm_mmu_page_set_gfn`: store the gfn where an array exists; for direct pages the value must
 * equal the formula (KVM: BUG_ON) — a violation throws.
 */
export function kvmMmuPageSetGfn(store: MmuPageStore, sp: number, i: number, gfn: number): void {
  const role = store.role[sp]!;
  if ((role & ROLE_DIRECT) !== 0) {
    const want = directEntryGfn(store.gfn[sp]!, role & ROLE_LEVEL_MASK, i);
    if (want !== gfn) {
      throw new Error(
        `kvm_mmu_page_set_gfn: sp ${sp} entry ${i} maps gfn 0x${gfn.toString(16)}, formula says 0x${want.toString(16)}`,
      );
    }
  }
  const t = store.translation[sp];
  if (t !== null && t !== undefined) t[i] = gfn;
}
