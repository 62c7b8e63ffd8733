/**
 * Lays out guest page tables in guest memory for 32-bit (4 KiB and 4 MiB PSE/PSE-36 pages), PAE,
 * 4-level and 5-level paging. Every entry is written as userspace writes guest memory
 * (`vm.guestWrite64/32`, KVM's `kvm_write_guest`): no vCPU and no EPT fault, but the dirty log
 * sees the pages.
 *
 * Tables come from a pool of guest-physical pages given by the caller (bump allocation).
 */
import { hexNum, splitU64, toUnsigned, type U64Parts } from "../arch/addr";
import {
  EFER_LME,
  EFER_NX,
  LEVEL_NAMES,
  PAGE_SIZE,
  X86_CR0_PE,
  X86_CR0_PG,
  X86_CR0_WP,
  X86_CR4_LA57,
  X86_CR4_PAE,
  X86_CR4_PKE,
  X86_CR4_PSE,
} from "../arch/constants";
import {
  gpte64Gfn,
  gpteFlags,
  gptePkey,
  type PagingMode,
  PT_ACCESSED_MASK,
  PT_DIRTY_MASK,
  PT_GLOBAL_MASK,
  PT_PAGE_SIZE_MASK,
  PT_PRESENT_MASK,
  PT_USER_MASK,
  PT_WRITABLE_MASK,
  PT64_NX_HI,
  rootLevelOf,
} from "../arch/guest_pte";
import { pagetableBundle } from "../display/bundle";
import type { Entry, Flag, MimeBundle, PagetablePayload, Table, Tree } from "../display/types";
import { checkFlag, checkOptionKeys, InvalidArgumentError, refuseFrozen } from "../errors";
import { LeafRunFolder, snapshotTitle } from "../inspect/snapshot_fold";
import { pt32Index, pt64Index } from "../mmu/paging_tmpl";
import type { SregsInput } from "../x86/vcpu";
import { KvmX86 } from "../x86/x86";

type Vm = KvmX86;

/** Paging modes the builder lays out. */
export type BuilderMode = Exclude<PagingMode, "none">;

/** Options of {@link GuestPageTableBuilder}. */
export interface BuilderOptions {
  /** Paging mode. */
  mode: BuilderMode;
  /** First gpa of the table pool (4 KiB aligned, inside a memslot). */
  poolBase: number | bigint;
  /** Pool size in bytes (multiple of 4 KiB). */
  poolSize: number | bigint;
}

/** Leaf attributes for {@link GuestPageTableBuilder.map}. */
export interface MapOptions {
  /** Page size in bytes: 4096; 2 MiB (PAE/64-bit); 4 MiB (32-bit, needs CR4.PSE); 1 GiB (64-bit). Default 4096. */
  pageSize?: number;
  /** R/W (default true). */
  writable?: boolean;
  /** U/S (default true). */
  user?: boolean;
  /** XD (PAE/64-bit only; default false). */
  nx?: boolean;
  /** G (default false). */
  global?: boolean;
  /** Pre-set A (default false). */
  accessed?: boolean;
  /** Pre-set D (default false). */
  dirty?: boolean;
  /** Protection key 0..15 (4/5-level only; default 0). */
  pkey?: number;
}

/** The keys of {@link MapOptions}. */
const MAP_KEYS = ["pageSize", "writable", "user", "nx", "global", "accessed", "dirty", "pkey"];

const SIZE_NAMES: Record<number, string> = {
  4096: "4K",
  2097152: "2M",
  4194304: "4M",
  1073741824: "1G",
};

/** Builds guest page tables through guest stores. */
export class GuestPageTableBuilder {
  readonly vm: Vm;
  readonly mode: BuilderMode;
  /** gpa of the root table (CR3 value; for PAE the 32-byte PDPT). */
  readonly root: number;
  private readonly poolBase: number;
  private readonly poolEnd: number;
  private next: number;
  private readonly wide: boolean;
  private readonly rootLevel: number;
  private readonly scratch: U64Parts = { hi: 0, lo: 0 };

  constructor(vm: Vm, opts: BuilderOptions) {
    if (!(vm instanceof KvmX86)) throw new InvalidArgumentError("vm", vm, "a VM from createVm()");
    // The builder writes guest memory: a frozen VM can be read, not changed.
    refuseFrozen(vm, "vm");
    this.vm = vm;
    checkOptionKeys("options", opts, ["mode", "poolBase", "poolSize"], false);
    const modes: BuilderMode[] = ["32-bit", "pae", "4-level", "5-level"];
    if (!modes.includes(opts.mode))
      throw new InvalidArgumentError("mode", opts.mode, modes.map((m) => `"${m}"`).join(" | "));
    if (opts.mode === "5-level" && !vm.features.la57)
      throw new InvalidArgumentError(
        "mode",
        opts.mode,
        "a mode the VM supports (features.la57 is off)",
      );
    const limit = opts.mode === "32-bit" || opts.mode === "pae" ? 32 : vm.maxPhysAddrBits;
    const base = toUnsigned(
      "poolBase",
      opts.poolBase,
      limit,
      `a 4 KiB-aligned gpa below 2^${limit}`,
    );
    const size = toUnsigned("poolSize", opts.poolSize, 53);
    if (base % PAGE_SIZE !== 0)
      throw new InvalidArgumentError("poolBase", opts.poolBase, "a 4 KiB-aligned gpa");
    if (size % PAGE_SIZE !== 0 || size === 0)
      throw new InvalidArgumentError("poolSize", opts.poolSize, "a non-zero multiple of 4096");
    if (base + size > 2 ** limit)
      throw new InvalidArgumentError("poolSize", opts.poolSize, `a pool ending below 2^${limit}`);
    for (let g = base / PAGE_SIZE; g < (base + size) / PAGE_SIZE; g += 1) {
      const s = vm.memslots.gfnToSlot(g);
      if (s === undefined || s.readonly)
        throw new InvalidArgumentError(
          "poolBase",
          opts.poolBase,
          `a pool inside writable memslots (gfn ${hexNum(g)} is not)`,
        );
      g = Math.max(g, s.baseGfn + s.npages - 1);
    }
    this.mode = opts.mode;
    this.wide = opts.mode !== "32-bit";
    this.rootLevel = rootLevelOf(opts.mode);
    this.poolBase = base;
    this.poolEnd = base + size;
    this.next = base;
    this.root = this.allocTable();
  }

  /** Tables allocated so far (pages). */
  get tablesAllocated(): number {
    return (this.next - this.poolBase) / PAGE_SIZE;
  }

  private allocTable(): number {
    if (this.next + PAGE_SIZE > this.poolEnd) {
      throw new InvalidArgumentError(
        "poolSize",
        this.poolEnd - this.poolBase,
        `a larger table pool (all ${(this.poolEnd - this.poolBase) / PAGE_SIZE} pages used)`,
      );
    }
    const gpa = this.next;
    this.next += PAGE_SIZE;
    // Zero the page with guest stores so reused memory cannot leave stale entries.
    for (let off = 0; off < PAGE_SIZE; off += 8) {
      if (this.vm.readPhys64(gpa + off) !== 0n) this.vm.guestWrite64(gpa + off, 0n);
    }
    return gpa;
  }

  /** Register values that enable this mode with `root` as CR3 (CR0.WP set; NX, PSE, PKE as asked). */
  sregs(
    opts: { wp?: boolean; nx?: boolean; pke?: boolean; pse?: boolean } = {},
  ): Required<Omit<SregsInput, "cpl">> {
    checkOptionKeys("opts", opts, ["wp", "nx", "pke", "pse"]);
    for (const k of ["wp", "nx", "pke", "pse"] as const) checkFlag(k, opts[k]);
    const cr0 = (X86_CR0_PE | X86_CR0_PG | (opts.wp === false ? 0 : X86_CR0_WP)) >>> 0;
    let cr4 = 0;
    let efer = opts.nx && this.mode !== "32-bit" ? EFER_NX : 0;
    if (this.mode === "32-bit") cr4 |= opts.pse === false ? 0 : X86_CR4_PSE;
    else cr4 |= X86_CR4_PAE;
    if (this.mode === "4-level" || this.mode === "5-level") {
      efer |= EFER_LME;
      if (opts.pke) cr4 |= X86_CR4_PKE;
    }
    if (this.mode === "5-level") cr4 |= X86_CR4_LA57;
    return { cr0, cr3: this.root, cr4, efer };
  }

  /** Index of `gva` at `level` in this mode. */
  index(hi: number, lo: number, level: number): number {
    for (const [name, v] of [
      ["hi", hi],
      ["lo", lo],
    ] as const)
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffffffff)
        throw new InvalidArgumentError(name, v, "a 32-bit half of the gva (0 to 2^32 - 1)");
    if (
      typeof level !== "number" ||
      !Number.isInteger(level) ||
      level < 1 ||
      level > this.rootLevel
    )
      throw new InvalidArgumentError("level", level, `1..${this.rootLevel}`);
    if (!this.wide) return pt32Index(lo, level);
    if (this.mode === "pae" && level === 3) return lo >>> 30;
    return pt64Index(hi, lo, level);
  }

  private readEntry(gpa: number): { hi: number; lo: number } {
    if (!this.wide) return { hi: 0, lo: this.vm.readPhys32(gpa) };
    const v = this.vm.readPhys64(gpa);
    return { hi: Number(v >> 32n), lo: Number(v & 0xffffffffn) };
  }

  private writeEntry(gpa: number, hi: number, lo: number): void {
    if (this.wide) this.vm.writeGuest(gpa, hi >>> 0, lo >>> 0, 8);
    else this.vm.writeGuest(gpa, 0, lo >>> 0, 4);
  }

  /** A present entry at `level` (> 1) that maps a large page (PS where PS means page size). */
  private isLargeLeaf(lo: number, level: number): boolean {
    if ((lo & PT_PAGE_SIZE_MASK) === 0) return false;
    if (!this.wide) return level === 2;
    return level === 2 || (level === 3 && this.mode !== "pae");
  }

  private entryGpaIn(table: number, hi: number, lo: number, level: number): number {
    return table + this.index(hi, lo, level) * (this.wide ? 8 : 4);
  }

  private parseGva(name: string, gva: unknown): U64Parts {
    const g = splitU64(name, gva, { hi: 0, lo: 0 });
    if (!this.wide || this.mode === "pae") {
      if (g.hi !== 0)
        throw new InvalidArgumentError(name, gva, "a 32-bit linear address in this mode");
    } else if (this.mode === "4-level") {
      const top = g.hi >>> 15;
      if (top !== 0 && top !== 0x1ffff)
        throw new InvalidArgumentError(name, gva, "a canonical address (bits 63:47 equal)");
    } else {
      const top = g.hi >>> 24;
      if (top !== 0 && top !== 0xff)
        throw new InvalidArgumentError(name, gva, "a canonical address (bits 63:56 equal)");
    }
    return g;
  }

  /**
   * gpa of the entry for `gva` at `level` (5..1), or undefined if a table on the way is missing
   * (or a large page ends the walk above `level`).
   */
  entryAddress(gva: number | bigint, level: number): number | undefined {
    const g = this.parseGva("gva", gva);
    if (!Number.isInteger(level) || level < 1 || level > this.rootLevel)
      throw new InvalidArgumentError("level", level, `1..${this.rootLevel}`);
    let table = this.root;
    for (let l = this.rootLevel; ; l--) {
      const gpa = this.entryGpaIn(table, g.hi, g.lo, l);
      if (l === level) return gpa;
      const e = this.readEntry(gpa);
      if ((e.lo & PT_PRESENT_MASK) === 0) return undefined;
      if (this.isLargeLeaf(e.lo, l)) return undefined;
      table = this.wide ? gpte64Gfn(e.hi, e.lo) * PAGE_SIZE : (e.lo >>> 12) * PAGE_SIZE;
    }
  }

  /**
   * Overwrite the entry for `gva` at `level` with `value` (a guest store). Tables above must
   * exist (create them with {@link map} or {@link ensureTables}).
   */
  setEntry(gva: number | bigint, level: number, value: number | bigint): void {
    const gpa = this.entryAddress(gva, level);
    if (gpa === undefined)
      throw new InvalidArgumentError(
        "gva",
        gva,
        `an address whose tables down to level ${level} exist`,
      );
    const v = splitU64("value", value, this.scratch);
    if (!this.wide && v.hi !== 0)
      throw new InvalidArgumentError("value", value, "a 32-bit entry in 32-bit paging");
    this.writeEntry(gpa, v.hi, v.lo);
  }

  /** Read the entry for `gva` at `level` (no side effects), or undefined if unreachable. */
  getEntry(gva: number | bigint, level: number): bigint | undefined {
    const gpa = this.entryAddress(gva, level);
    if (gpa === undefined) return undefined;
    return this.wide ? this.vm.readPhys64(gpa) : BigInt(this.vm.readPhys32(gpa));
  }

  /** Create the non-leaf tables for `gva` down to `level` (entries P|RW|US). Returns the table gpa at `level`. */
  ensureTables(gva: number | bigint, level: number): number {
    const g = this.parseGva("gva", gva);
    if (!Number.isInteger(level) || level < 1 || level > this.rootLevel)
      throw new InvalidArgumentError("level", level, `1..${this.rootLevel}`);
    return this.tableFor(g.hi, g.lo, level, false);
  }

  /** Walk/create tables for gva down to the table at `level`; dry = only check for conflicts. */
  private tableFor(hi: number, lo: number, level: number, dry: boolean): number {
    let table = this.root;
    for (let l = this.rootLevel; l > level; l--) {
      const gpa = this.entryGpaIn(table, hi, lo, l);
      const e = this.readEntry(gpa);
      if ((e.lo & PT_PRESENT_MASK) !== 0) {
        if (this.isLargeLeaf(e.lo, l)) {
          throw new InvalidArgumentError(
            "gva",
            hexNum(hi * 2 ** 32 + lo),
            `an address not already covered by a large page at level ${l}`,
          );
        }
        table = this.wide ? gpte64Gfn(e.hi, e.lo) * PAGE_SIZE : (e.lo >>> 12) * PAGE_SIZE;
        continue;
      }
      if (dry) return -1;
      const child = this.allocTable();
      // PAE PDPTEs have no R/W/U bits (reserved); others get the most permissive non-leaf rights.
      const flags =
        this.mode === "pae" && l === 3
          ? PT_PRESENT_MASK
          : PT_PRESENT_MASK | PT_WRITABLE_MASK | PT_USER_MASK;
      this.writeEntry(gpa, Math.floor(child / 2 ** 32), (child | flags) >>> 0);
      table = child;
    }
    return table;
  }

  /**
   * Map [gva, gva + size) to [gpa, gpa + size) with pages of `pageSize`, creating tables as
   * needed. All arguments are checked before anything is written.
   */
  map(
    gva: number | bigint,
    gpa: number | bigint,
    size: number | bigint,
    opts: MapOptions = {},
  ): void {
    const g = this.parseGva("gva", gva);
    checkOptionKeys("opts", opts, MAP_KEYS);
    for (const k of ["writable", "user", "nx", "global", "accessed", "dirty"] as const)
      checkFlag(k, opts[k]);
    const ps = opts.pageSize === undefined ? 4096 : opts.pageSize;
    const allowed =
      this.mode === "32-bit"
        ? [4096, 4194304]
        : this.mode === "pae"
          ? [4096, 2097152]
          : this.vm.features.gbpages
            ? [4096, 2097152, 1073741824]
            : [4096, 2097152];
    if (!allowed.includes(ps))
      throw new InvalidArgumentError(
        "pageSize",
        ps,
        `${allowed.join(", ")} in ${this.mode} paging`,
      );
    const physBits =
      this.mode === "32-bit"
        ? ps === 4194304 && this.vm.features.pse36
          ? 36
          : 32
        : this.vm.maxPhysAddrBits;
    const p = toUnsigned("gpa", gpa, physBits, `a gpa below 2^${physBits}`);
    const n = toUnsigned("size", size, 53);
    if (n === 0 || n % ps !== 0)
      throw new InvalidArgumentError("size", size, `a non-zero multiple of the page size ${ps}`);
    if (p % ps !== 0)
      throw new InvalidArgumentError("gpa", gpa, `a ${SIZE_NAMES[ps]}-aligned address`);
    if (p + n > 2 ** physBits)
      throw new InvalidArgumentError("size", size, `a range ending below 2^${physBits}`);
    const gvaNum = g.hi * 2 ** 32 + g.lo;
    if (gvaNum % ps !== 0)
      throw new InvalidArgumentError("gva", gva, `a ${SIZE_NAMES[ps]}-aligned address`);
    if (!this.wide || this.mode === "pae") {
      if (gvaNum + n > 2 ** 32)
        throw new InvalidArgumentError("size", size, "a range ending below 4 GiB");
    }
    if (
      opts.pkey !== undefined &&
      (!Number.isInteger(opts.pkey) || opts.pkey < 0 || opts.pkey > 15)
    )
      throw new InvalidArgumentError("pkey", opts.pkey, "0..15");
    if (opts.pkey && this.mode !== "4-level" && this.mode !== "5-level")
      throw new InvalidArgumentError("pkey", opts.pkey, "0 outside 4-/5-level paging");
    if (opts.nx && this.mode === "32-bit")
      throw new InvalidArgumentError("nx", opts.nx, "false in 32-bit paging (no XD bit)");
    const level = ps === 4096 ? 1 : ps === 1073741824 ? 3 : 2;
    const pages = n / ps;
    // Dry run: refuse conflicts before writing anything.
    for (let i = 0; i < pages; i++) {
      const va = gvaNum + i * ps;
      this.tableFor(Math.floor(va / 2 ** 32), va >>> 0, level, true);
    }
    const need = this.countMissingTables(gvaNum, ps, pages, level);
    if (this.next + need * PAGE_SIZE > this.poolEnd) {
      throw new InvalidArgumentError(
        "size",
        size,
        `a mapping needing at most ${(this.poolEnd - this.next) / PAGE_SIZE} new tables (needs ${need})`,
      );
    }
    let lo = PT_PRESENT_MASK;
    if (opts.writable ?? true) lo |= PT_WRITABLE_MASK;
    if (opts.user ?? true) lo |= PT_USER_MASK;
    if (opts.global) lo |= PT_GLOBAL_MASK;
    if (opts.accessed) lo |= PT_ACCESSED_MASK;
    if (opts.dirty) lo |= PT_DIRTY_MASK;
    if (level > 1) lo |= PT_PAGE_SIZE_MASK;
    let hiFlags = 0;
    if (opts.nx) hiFlags |= PT64_NX_HI;
    if (opts.pkey) hiFlags |= opts.pkey << 27;
    for (let i = 0; i < pages; i++) {
      const va = gvaNum + i * ps;
      const pa = p + i * ps;
      const vh = Math.floor(va / 2 ** 32);
      const vl = va >>> 0;
      const table = this.tableFor(vh, vl, level, false);
      const eg = this.entryGpaIn(table, vh, vl, level);
      if (this.wide) {
        this.writeEntry(eg, (hiFlags | Math.floor(pa / 2 ** 32)) >>> 0, ((pa >>> 0) | lo) >>> 0);
      } else {
        // 4 MiB page: address 31:22 in place, PSE-36 bits 35:32 in entry bits 16:13.
        const extra = level === 2 ? (Math.floor(pa / 2 ** 32) & 15) << 13 : 0;
        this.writeEntry(eg, 0, ((pa >>> 0) | lo | extra) >>> 0);
      }
    }
  }

  private countMissingTables(gvaNum: number, ps: number, pages: number, level: number): number {
    const seen = new Set<string>();
    let missing = 0;
    for (let i = 0; i < pages; i++) {
      const va = gvaNum + i * ps;
      for (let l = this.rootLevel - 1; l >= level; l--) {
        const span = this.wide ? 2 ** (12 + 9 * l) : 2 ** (12 + 10 * l);
        const key = `${l}:${Math.floor(va / span)}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const vh = Math.floor(va / 2 ** 32);
        if (this.tableFor(vh, va >>> 0, l, true) < 0) missing++;
      }
    }
    return missing;
  }

  /**
   * Snapshot of the tables as a `pagetable` display (tree kind "guest"): runs of alike leaves
   * folded into one entry with `count` (snapshot_fold.ts), at most `maxEntries` entries listed.
   * `title` names the view and its tree; `label` is an alias (the name `vm.snapshot()` used).
   * @throws InvalidArgumentError for a bad `maxEntries`, a bad title, or `title` and `label` that
   * differ.
   */
  snapshot(
    opts: { maxEntries?: number; title?: string; label?: string } = {},
  ): GuestPageTableSnapshot {
    checkOptionKeys("opts", opts, ["maxEntries", "title", "label"]);
    const max = opts.maxEntries;
    if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > 1024 * 1024)) {
      throw new InvalidArgumentError("maxEntries", max, "an integer from 1 to 1048576");
    }
    return new GuestPageTableSnapshot(
      this.vm,
      this.mode,
      this.root,
      max ?? 256,
      snapshotTitle(opts),
    );
  }
}

/** Immutable view of guest page tables for notebooks (pagetable payload, Jupyter display). */
export class GuestPageTableSnapshot {
  readonly payload: PagetablePayload;
  constructor(vm: Vm, mode: BuilderMode, root: number, maxEntries: number, title?: string) {
    const wide = mode !== "32-bit";
    const rootLevel = rootLevelOf(mode);
    let budget = maxEntries;
    let truncated = false;
    const read = (gpa: number): { hi: number; lo: number } => {
      if (vm.memslots.gfnToSlot(Math.floor(gpa / PAGE_SIZE)) === undefined) return { hi: 0, lo: 0 };
      if (!wide) return { hi: 0, lo: vm.readPhys32(gpa) };
      const v = vm.readPhys64(gpa);
      return { hi: Number(v >> 32n), lo: Number(v & 0xffffffffn) };
    };
    const build = (tableGpa: number, level: number, vaBase: number): Table => {
      const pae3 = mode === "pae" && level === 3;
      const size = pae3 ? 4 : wide ? 512 : 1024;
      const entries: Entry[] = [];
      let present = 0;
      let omitted = 0;
      const span = wide ? 2 ** (12 + 9 * (level - 1)) : 2 ** (12 + 10 * (level - 1));
      const runs = new LeafRunFolder();
      for (let i = 0; i < size; i++) {
        const e = read(tableGpa + i * (wide ? 8 : 4));
        if ((e.lo & PT_PRESENT_MASK) === 0) {
          runs.close();
          continue;
        }
        present++;
        const leaf =
          level === 1 ||
          ((e.lo & PT_PAGE_SIZE_MASK) !== 0 && !pae3 && (wide ? level <= 3 : level === 2));
        let va = vaBase + i * span;
        if (wide && mode !== "pae" && level === rootLevel && i >= size / 2)
          va += mode === "4-level" ? 2 ** 64 - 2 ** 48 : 2 ** 64 - 2 ** 57;
        const target = wide
          ? gpte64Gfn(e.hi, e.lo)
          : (e.lo >>> 12) + (leaf && level === 2 ? ((e.lo >>> 13) & 15) * 1048576 : 0);
        // Frames one entry of this level spans: a leaf's target is its page's first gfn.
        const frames = wide ? 2 ** (9 * (level - 1)) : level === 2 ? 1024 : 1;
        const frame = leaf && level > 1 ? target - (target % frames) : target;
        const entry: Entry = {
          index: i,
          value: wide ? `0x${((BigInt(e.hi) << 32n) | BigInt(e.lo)).toString(16)}` : hexNum(e.lo),
          flags: gpteFlags(e.hi, e.lo, level, leaf, wide) as Flag[],
          leaf,
          target: hexNum(frame),
          va: `0x${BigInt(Math.min(va, 2 ** 64 - 1)).toString(16)}`.slice(0, 18),
        };
        if (leaf)
          entry.pageSize = (
            wide ? 2 ** (12 + 9 * (level - 1)) : level === 2 ? 4194304 : 4096
          ) as Entry["pageSize"];
        if (leaf && wide && gptePkey(e.hi) !== 0) entry.pkey = gptePkey(e.hi);
        if (runs.fold(entry, frame)) continue;
        if (budget <= 0) {
          omitted++;
          truncated = true;
          runs.close();
          continue;
        }
        budget--;
        runs.open(entry, frame, frames);
        if (!leaf && level > 1)
          entry.child = build(
            wide ? gpte64Gfn(e.hi, e.lo) * PAGE_SIZE : (e.lo >>> 12) * PAGE_SIZE,
            level - 1,
            va,
          );
        entries.push(entry);
      }
      const t: Table = {
        level,
        name: pae3 ? "PDPTR" : LEVEL_NAMES[level]!,
        addr: hexNum(tableGpa),
        size: size as Table["size"],
        present,
        entries,
      };
      if (omitted > 0) t.omitted = omitted;
      return t;
    };
    const tree: Tree = { kind: "guest", format: mode, root: build(root, rootLevel, 0) };
    if (title !== undefined) tree.label = title;
    this.payload = { version: 1, kind: "pagetable", trees: [tree] };
    if (title !== undefined) this.payload.title = title;
    if (truncated) this.payload.truncated = true;
  }

  /** Jupyter display: the pagetable MIME bundle. */
  [Symbol.for("Jupyter.display")](): MimeBundle {
    return pagetableBundle(this.payload);
  }
}
