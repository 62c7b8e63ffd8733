/**
 * Memslots with `KVM_SET_USER_MEMORY_REGION` semantics (kvm_main.c `__kvm_set_memory_region`,
 * `struct kvm_memory_slot`).
 *
 * A request is validated completely and classified as one of the `KVM_MR_*` changes before
 * anything is modified, so a rejected request leaves every slot as it was. Lookup by gfn is a
 * binary search over slots sorted by base gfn (O(log n)) behind a one-entry cache.
 */
import { hexNum, toUnsigned } from "../arch/addr";
import {
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_MAX_NR_PAGES,
  KVM_MEM_READONLY,
  KVM_USER_MEM_SLOTS,
  PAGE_SIZE,
} from "../arch/constants";
import { KVM_MEM_FLAG_NAMES, setBitNames } from "../arch/reg_names";
import { htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle, sizeText } from "../display";
import { checkOptionKeys, InvalidArgumentError } from "../errors";

/** Host backing of a slot (kvm/host.ts models it; stored and validated here). */
export type SlotBacking = "4k" | "thp" | "hugetlb-2m" | "hugetlb-1g";
/** Accepted values of {@link SlotBacking}. */
export const SLOT_BACKINGS: readonly SlotBacking[] = ["4k", "thp", "hugetlb-2m", "hugetlb-1g"];

/** The fields of {@link UserMemoryRegion}. */
const REGION_KEYS = [
  "slot",
  "guestPhysAddr",
  "memorySize",
  "flags",
  "backing",
  "userspaceAddr",
] as const;

/** Kind of memslot change (`enum kvm_mr_change`). */
export type MemslotChange = "create" | "delete" | "move" | "flagsOnly";

/** Request of `KVM_SET_USER_MEMORY_REGION` (`struct kvm_userspace_memory_region`). */
export interface UserMemoryRegion {
  /** Slot id (bits 15:0) and address space (bits 31:16; only address space 0 exists here). */
  slot: number;
  /** First guest-physical address; 4 KiB aligned. */
  guestPhysAddr: number | bigint;
  /** Size in bytes; 4 KiB multiple; 0 deletes the slot. */
  memorySize: number | bigint;
  /** `KVM_MEM_LOG_DIRTY_PAGES` (1) | `KVM_MEM_READONLY` (2). */
  flags: number;
  /** Host backing model (default "4k"). */
  backing?: SlotBacking;
  /** Host virtual address of the slot's memory (4 KiB aligned, below 2^47). Default: chosen by the VM. */
  userspaceAddr?: number | bigint;
}

/**
 * One memslot (`struct kvm_memory_slot`). Geometry fields are fixed for the slot's lifetime;
 * a move or flags change replaces the slot object, as KVM does.
 */
export class MemSlot {
  /** Slot id (`slot->id`). */
  readonly id: number;
  /** First gfn (`slot->base_gfn`). */
  readonly baseGfn: number;
  /** Size in 4 KiB pages (`slot->npages`). */
  readonly npages: number;
  /** `KVM_MEM_*` flags. */
  readonly flags: number;
  /** Host virtual address of the first page (`slot->userspace_addr`). */
  readonly userspaceAddr: number;
  /** Host backing model. */
  readonly backing: SlotBacking;
  /** Host virtual frame of the first page (`userspaceAddr >> 12`). */
  readonly baseHvfn: number;
  /**
   * Dirty bitmap (`slot->dirty_bitmap`), allocated while LOG_DIRTY_PAGES is set: one bit per page,
   * `ALIGN(npages, 64) / 8` bytes, followed by an equal-sized second buffer used by
   * GET/CLEAR_DIRTY_LOG (`kvm_second_dirty_bitmap`). Null when logging is off.
   */
  dirtyBitmap: Uint32Array | null = null;
  /**
   * Per-slot MMU metadata (x86 `slot->arch`: rmaps, lpage_info, write tracking). Owned and filled
   * by the MMU (`kvm_arch_prepare_memory_region`); the memslot layer never reads it.
   */
  arch: unknown = undefined;

  constructor(
    id: number,
    baseGfn: number,
    npages: number,
    flags: number,
    userspaceAddr: number,
    backing: SlotBacking,
  ) {
    this.id = id;
    this.baseGfn = baseGfn;
    this.npages = npages;
    this.flags = flags;
    this.userspaceAddr = userspaceAddr;
    this.backing = backing;
    this.baseHvfn = userspaceAddr / PAGE_SIZE;
  }

  /** One past the last gfn. */
  get endGfn(): number {
    return this.baseGfn + this.npages;
  }

  /** Host virtual frame number of `gfn` (caller guarantees gfn is inside the slot). */
  hvfn(gfn: number): number {
    return this.baseHvfn + (gfn - this.baseGfn);
  }

  /** `KVM_MEM_READONLY` is set. */
  get readonly(): boolean {
    return (this.flags & KVM_MEM_READONLY) !== 0;
  }

  /** Mark `gfn` dirty in the bitmap if logging is on (`mark_page_dirty_in_slot`). */
  markDirty(gfn: number): boolean {
    const bm = this.dirtyBitmap;
    if (bm === null) return false;
    const rel = gfn - this.baseGfn;
    bm[rel >>> 5]! |= 1 << (rel & 31);
    return true;
  }

  /** Set every page's bit (`bitmap_set(dirty_bitmap, 0, npages)`, for KVM_DIRTY_LOG_INITIALLY_SET). */
  markAllDirty(): void {
    const bm = this.dirtyBitmap;
    if (bm === null) return;
    const full = Math.floor(this.npages / 32);
    bm.fill(0xffffffff, 0, full);
    const rest = this.npages % 32;
    if (rest !== 0) bm[full] = (bm[full]! | ((1 << rest) - 1)) >>> 0;
  }

  /** Pages set in the dirty bitmap (its first buffer), or null when the slot has none. */
  dirtyCount(): number | null {
    const bm = this.dirtyBitmap;
    if (bm === null) return null;
    let n = 0;
    for (let i = 0; i < dirtyBitmapWords(this.npages) / 2; i++) {
      // Population count of one 32-bit word (the bits past npages are never set).
      let w = bm[i]! >>> 0;
      w -= (w >>> 1) & 0x55555555;
      w = (w & 0x33333333) + ((w >>> 2) & 0x33333333);
      n += (((w + (w >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return n;
  }

  /** Whether `gfn` is set in the dirty bitmap. */
  testDirty(gfn: number): boolean {
    const bm = this.dirtyBitmap;
    if (bm === null) return false;
    const rel = gfn - this.baseGfn;
    return ((bm[rel >>> 5]! >>> (rel & 31)) & 1) !== 0;
  }
}

/**
 * A memory-region field: an unsigned below 2^bits (else `InvalidArgumentError` with `allowed`)
 * that is a multiple of the page size (else EINVAL with `alignedAllowed`).
 */
function toPageAligned(
  name: string,
  value: unknown,
  bits: number,
  allowed: string,
  alignedAllowed: string,
): number {
  const n = toUnsigned(name, value, bits, allowed);
  if (n % PAGE_SIZE !== 0) throw new InvalidArgumentError(name, value, alignedAllowed, "EINVAL");
  return n;
}

/** Words of `dirtyBitmap` for `npages` pages: two buffers of ALIGN(npages, 64) bits. */
export function dirtyBitmapWords(npages: number): number {
  return (Math.ceil(npages / 64) * 64 * 2) / 32;
}

/** A validated, not yet applied memslot change. */
export interface MemslotUpdate {
  change: MemslotChange;
  /** Slot before the change (undefined for create). */
  old: MemSlot | undefined;
  /** Slot after the change (undefined for delete). */
  new: MemSlot | undefined;
}

/** One memslot as a row of the memslot table (`vm.memslots` in a notebook). */
export interface MemSlotRow {
  /** Slot id. */
  slot: number;
  /** First and last gpa, `"0x0-0x3fffffff"`. */
  gpa: string;
  /** Size in binary units, `"1 GiB"`. */
  size: string;
  /** `KVM_MEM_*` flag names joined by `|`, or `-`. */
  flags: string;
  backing: SlotBacking;
  /** `userspace_addr`. */
  hva: string;
  /**
   * Dirty logging: `off`; `N/M pages dirty` with the bitmap (pages set in it, of the slot's);
   * or `on, no bitmap (dirty ring)` when the dirty ring replaces bitmaps.
   */
  dirtyLog: string;
}

/** The display row of one slot. */
function slotRow(s: MemSlot): MemSlotRow {
  const gpa = s.baseGfn * PAGE_SIZE;
  const size = s.npages * PAGE_SIZE;
  const dirty = s.dirtyCount();
  const logging = (s.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  return {
    slot: s.id,
    gpa: `${hexNum(gpa)}-${hexNum(gpa + size - 1)}`,
    size: sizeText(size),
    flags: setBitNames(s.flags, KVM_MEM_FLAG_NAMES).join("|") || "-",
    backing: s.backing,
    hva: hexNum(s.userspaceAddr),
    dirtyLog: !logging
      ? "off"
      : dirty === null
        ? "on, no bitmap (dirty ring)"
        : `${dirty}/${s.npages} pages dirty`,
  };
}

/**
 * The VM's memslots (one address space). In a notebook `vm.memslots` shows as a table of the
 * slots (`[Symbol.for("Jupyter.display")]`), `String()` gives one line, `JSON.stringify` the
 * slots' fields.
 */
export class MemSlots {
  private readonly byId = new Map<number, MemSlot>();
  /** Slots sorted by base gfn, and parallel bounds for the binary search. */
  private sorted: MemSlot[] = [];
  private bases = new Float64Array(0);
  private ends = new Float64Array(0);
  private last: MemSlot | undefined = undefined;
  /**
   * `kvm_memslots::generation` of address space 0. x86 has two address spaces (SMM), and
   * `kvm_swap_active_memslots` adds their number, 2, per swap; DELETE and MOVE swap twice (first
   * an invalid copy of the slot, `kvm_invalidate_memslot`, then the final one), so they add 4.
   * Address space 0's generation is therefore always even.
   */
  generation = 0;
  /** Slots with KVM_MEM_LOG_DIRTY_PAGES (`kvm->nr_memslots_dirty_logging`). */
  nrMemslotsDirtyLogging = 0;
  /** `kvm_use_dirty_bitmap`: logged slots get a bitmap (false with the dirty ring). */
  useDirtyBitmap = true;

  constructor(
    /** Guest MAXPHYADDR: slots must end below 2^maxPhysAddrBits. */
    readonly maxPhysAddrBits: number,
  ) {}

  /** All slots in ascending gfn order. */
  list(): readonly MemSlot[] {
    return this.sorted;
  }

  /** Slot by id. */
  get(id: number): MemSlot | undefined {
    return this.byId.get(id);
  }

  /** One display row per slot, in ascending gfn order. */
  rows(): MemSlotRow[] {
    return this.sorted.map(slotRow);
  }

  /** The slots' fields (not the MMU's per-slot metadata or the bitmap words), and the generation. */
  toJSON(): {
    generation: number;
    slots: {
      id: number;
      baseGfn: number;
      npages: number;
      flags: string[];
      userspaceAddr: number;
      backing: SlotBacking;
      dirtyPages: number | null;
    }[];
  } {
    return {
      generation: this.generation,
      slots: this.sorted.map((s) => ({
        id: s.id,
        baseGfn: s.baseGfn,
        npages: s.npages,
        flags: setBitNames(s.flags, KVM_MEM_FLAG_NAMES),
        userspaceAddr: s.userspaceAddr,
        backing: s.backing,
        dirtyPages: s.dirtyCount(),
      })),
    };
  }

  /** One line: `MemSlots(generation 2: slot 0 gpa 0x0-0x3fffffff 1 GiB, flags -, backing 4k)`. */
  toString(): string {
    const slots = this.rows().map(
      (r) => `slot ${r.slot} gpa ${r.gpa} ${r.size}, flags ${r.flags}, backing ${r.backing}`,
    );
    return `MemSlots(generation ${this.generation}${slots.length ? `: ${slots.join("; ")}` : ", none"})`;
  }

  /** Jupyter display: a table of the slots (text/html and text/plain). */
  [JUPYTER_DISPLAY](): MimeBundle {
    const rows = this.rows().map(({ dirtyLog, ...r }) => ({ ...r, "dirty log": dirtyLog }));
    return htmlTableBundle(`Memslots (${rows.length}), generation ${this.generation}`, rows);
  }

  /** Total pages over all slots. */
  totalPages(): number {
    let n = 0;
    for (const s of this.sorted) n += s.npages;
    return n;
  }

  /** The slot containing `gfn` (`gfn_to_memslot`, `search_memslots`), or undefined. O(log n). */
  gfnToSlot(gfn: number): MemSlot | undefined {
    const last = this.last;
    if (last !== undefined && gfn >= last.baseGfn && gfn < last.baseGfn + last.npages) return last;
    const bases = this.bases;
    let lo = 0;
    let hi = bases.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (bases[mid]! <= gfn) lo = mid + 1;
      else hi = mid - 1;
    }
    // hi = last slot with base <= gfn
    if (hi >= 0 && gfn < this.ends[hi]!) {
      const s = this.sorted[hi]!;
      this.last = s;
      return s;
    }
    return undefined;
  }

  /**
   * Validate a request and classify it (`__kvm_set_memory_region` + `check_memory_region_flags`).
   * Throws {@link InvalidArgumentError} (errno EINVAL or EEXIST) and changes nothing on failure.
   * `defaultHva(gpa)` supplies the host address for new slots without `userspaceAddr`.
   */
  prepare(req: UserMemoryRegion, defaultHva: (gpa: number, size: number) => number): MemslotUpdate {
    if (req === null || typeof req !== "object") {
      throw new InvalidArgumentError(
        "region",
        req,
        "an object {slot, guestPhysAddr, memorySize, flags}",
      );
    }
    // struct kvm_userspace_memory_region has these fields only: a misspelt one would be ignored.
    checkOptionKeys("region", req, REGION_KEYS, false);
    const slotField = req.slot;
    if (
      typeof slotField !== "number" ||
      !Number.isInteger(slotField) ||
      slotField < 0 ||
      slotField > 0xffffffff
    ) {
      throw new InvalidArgumentError(
        "slot",
        slotField,
        "an integer: address space << 16 | slot id",
        "EINVAL",
      );
    }
    const asId = Math.floor(slotField / 65536);
    const id = slotField & 0xffff;
    if (asId !== 0) {
      throw new InvalidArgumentError(
        "slot",
        slotField,
        "address space 0 only (slot >> 16 must be 0)",
        "EINVAL",
      );
    }
    if (id >= KVM_USER_MEM_SLOTS) {
      throw new InvalidArgumentError(
        "slot",
        slotField,
        `a slot id in [0, ${KVM_USER_MEM_SLOTS})`,
        "EINVAL",
      );
    }
    const flags = req.flags;
    // check_memory_region_flags: `mem->flags & ~valid_flags` on a u32; compared as a number here
    // because `&` would drop the bits of 2^53 above 31.
    const validFlags = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
    if (
      typeof flags !== "number" ||
      !Number.isInteger(flags) ||
      flags < 0 ||
      flags > validFlags ||
      (flags & ~validFlags) !== 0
    ) {
      throw new InvalidArgumentError(
        "flags",
        flags,
        "KVM_MEM_LOG_DIRTY_PAGES (1) | KVM_MEM_READONLY (2)",
        "EINVAL",
      );
    }
    const backing = req.backing === undefined ? "4k" : req.backing;
    if (!SLOT_BACKINGS.includes(backing)) {
      throw new InvalidArgumentError(
        "backing",
        backing,
        SLOT_BACKINGS.map((b) => `"${b}"`).join(" | "),
        "EINVAL",
      );
    }
    const size = toPageAligned(
      "memorySize",
      req.memorySize,
      53,
      "a multiple of 4096 bytes, at most (2^31 - 1) pages",
      "a multiple of 4096 bytes",
    );
    const gpa = toPageAligned(
      "guestPhysAddr",
      req.guestPhysAddr,
      53,
      "a 4 KiB-aligned guest-physical address",
      "a 4 KiB-aligned guest-physical address",
    );
    let hva: number | undefined;
    if (req.userspaceAddr !== undefined) {
      hva = toPageAligned(
        "userspaceAddr",
        req.userspaceAddr,
        47,
        "a 4 KiB-aligned host address below 2^47",
        "a 4 KiB-aligned host address",
      );
      if (hva + size > 2 ** 47) {
        throw new InvalidArgumentError(
          "userspaceAddr",
          req.userspaceAddr,
          "a range [addr, addr + memorySize) below 2^47",
          "EINVAL",
        );
      }
    }
    const npages = size / PAGE_SIZE;
    if (npages > KVM_MEM_MAX_NR_PAGES) {
      throw new InvalidArgumentError(
        "memorySize",
        req.memorySize,
        `at most ${KVM_MEM_MAX_NR_PAGES} pages (KVM_MEM_MAX_NR_PAGES)`,
        "EINVAL",
      );
    }
    const old = this.byId.get(id);

    if (npages === 0) {
      if (old === undefined) {
        throw new InvalidArgumentError(
          "slot",
          slotField,
          "an existing slot id to delete (memorySize 0)",
          "EINVAL",
        );
      }
      return { change: "delete", old, new: undefined };
    }

    const baseGfn = gpa / PAGE_SIZE;
    const limitGfn = 2 ** (this.maxPhysAddrBits - 12);
    if (baseGfn + npages > limitGfn) {
      throw new InvalidArgumentError(
        "guestPhysAddr",
        req.guestPhysAddr,
        `a range ending at or below 2^${this.maxPhysAddrBits} (MAXPHYADDR); range ends at 0x${((baseGfn + npages) * PAGE_SIZE).toString(16)}`,
        "EINVAL",
      );
    }

    let change: MemslotChange;
    if (old === undefined) {
      change = "create";
      if (hva === undefined) hva = defaultHva(gpa, size);
    } else {
      if (hva === undefined) hva = old.userspaceAddr;
      if (hva !== old.userspaceAddr) {
        throw new InvalidArgumentError(
          "userspaceAddr",
          req.userspaceAddr,
          `the slot's current address 0x${old.userspaceAddr.toString(16)} (delete the slot first)`,
          "EINVAL",
        );
      }
      if (npages !== old.npages) {
        throw new InvalidArgumentError(
          "memorySize",
          req.memorySize,
          `the slot's current size ${old.npages * PAGE_SIZE} (delete the slot first)`,
          "EINVAL",
        );
      }
      if (((flags ^ old.flags) & KVM_MEM_READONLY) !== 0) {
        throw new InvalidArgumentError(
          "flags",
          flags,
          "the same KVM_MEM_READONLY setting as the existing slot",
          "EINVAL",
        );
      }
      if (backing !== old.backing && req.backing !== undefined) {
        throw new InvalidArgumentError(
          "backing",
          backing,
          `the slot's current backing "${old.backing}"`,
          "EINVAL",
        );
      }
      if (baseGfn !== old.baseGfn) change = "move";
      else if (flags !== old.flags) change = "flagsOnly";
      else return { change: "flagsOnly", old, new: old }; // no-op, as KVM returns 0
    }

    if (change === "create" || change === "move") {
      for (const s of this.sorted) {
        if (s.id === id) continue;
        if (baseGfn < s.baseGfn + s.npages && s.baseGfn < baseGfn + npages) {
          throw new InvalidArgumentError(
            "guestPhysAddr",
            req.guestPhysAddr,
            `a range not overlapping slot ${s.id} [0x${(s.baseGfn * PAGE_SIZE).toString(16)}, 0x${((s.baseGfn + s.npages) * PAGE_SIZE).toString(16)})`,
            "EEXIST",
          );
        }
      }
    }
    const slot = new MemSlot(id, baseGfn, npages, flags, hva, old?.backing ?? backing);
    return { change, old, new: slot };
  }

  /**
   * Apply a prepared update. Allocates or carries over the dirty bitmap as kvm_main.c does
   * (allocated when logging is turned on, freed when turned off, kept on move).
   */
  commit(u: MemslotUpdate): void {
    if (u.old === u.new) return;
    const nw = u.new;
    if (nw !== undefined) {
      if ((nw.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0 && this.useDirtyBitmap) {
        const oldBm =
          u.old !== undefined && (u.old.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0
            ? u.old.dirtyBitmap
            : null;
        nw.dirtyBitmap = oldBm ?? new Uint32Array(dirtyBitmapWords(nw.npages));
      }
      if (u.old !== undefined && nw.arch === undefined) nw.arch = u.old.arch;
    }
    if (u.old !== undefined) this.byId.delete(u.old.id);
    if (nw !== undefined) this.byId.set(nw.id, nw);
    this.sorted = [...this.byId.values()].sort((a, b) => a.baseGfn - b.baseGfn);
    this.bases = Float64Array.from(this.sorted, (s) => s.baseGfn);
    this.ends = Float64Array.from(this.sorted, (s) => s.baseGfn + s.npages);
    this.last = undefined;
    this.nrMemslotsDirtyLogging = this.sorted.filter(
      (s) => (s.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0,
    ).length;
    this.generation += u.change === "delete" || u.change === "move" ? 4 : 2;
  }
}
