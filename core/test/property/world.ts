/**
 * The world of the MMU property suite: a small guest (three memslots, page tables laid out by
 * `GuestPageTableBuilder`, one or two vCPUs) run twice — on the system under test, a VM with one
 * of KVM's MMUs (TDP MMU, legacy direct MMU, shadow paging, every era preset), and on the
 * reference, the bare walker machine (`mmu: "none"`) with the same guest-visible features. The
 * MMU must be architecturally invisible, so every guest-visible command goes to both machines and
 * every result must agree; host/KVM-only commands (dirty log, dirty ring, MMU notifier, zaps,
 * `KVM_SET_NR_MMU_PAGES`, write-protect-all) go to the system under test alone.
 *
 * After every command: the access results are equal (fault, vector, error code, gpa, MMIO exit,
 * value read), the guest page tables hold the same bytes on both machines (so the A/D bits the
 * walkers set agree), `vm.audit()` is clean, and every dirty-log read reports each page the guest
 * wrote since it was last reported (`kvm_get_dirty_log_protect`, `kvm_clear_dirty_log_protect`,
 * `kvm_dirty_ring_reset`: a write is never lost between a harvest and the next).
 *
 * Commands are plain data (JSON), interpreted against the current state: one that does not apply
 * (an INVLPG of an unmapped entry, GET_DIRTY_LOG of a slot that does not log, ...) is a no-op.
 * That keeps every sub-list of a program runnable, which is what lets fast-check shrink it
 * (program.ts), and a failing list prints as a test that replays it.
 *
 * TLB semantics: the bare machine has no TLB, while shadow paging may legitimately keep a stale
 * translation until the guest invalidates it (unsync pages, `kvm_mmu_invlpg`, `kvm_mmu_new_pgd`).
 * So every generated page-table edit carries the invalidation the architecture requires before
 * the old translation may no longer be used (what KVM intercepts for it: `kvm_mmu_invlpg`,
 * `kvm_mmu_new_pgd` with KVM_REQ_MMU_SYNC): INVLPG (or a CR3 load) on every
 * vCPU for a leaf edit, a CR3 load on every vCPU for a non-leaf edit. Guest stores that are not
 * edits never touch a used paging entry (data stores go to offsets 0x800 and up, which no table
 * of this layout uses). No global pages: nothing here models CR4.PGE flushes. EFER.NX is never
 * toggled: KVM's shadow pages keep efer_nx = 1 whatever the guest's (`kvm_init_shadow_mmu`), so
 * an NX toggle is visible under shadow paging by design (see shadow-coherence.test.ts).
 */
import {
  type AccessResult,
  createVm,
  type FeatureOptions,
  GuestPageTableBuilder,
  InvalidArgumentError,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  PRESETS,
  type PresetName,
  type ReadResult,
  X86_CR0_PG,
  X86_CR4_SMAP,
  X86_CR4_SMEP,
  X86_EFLAGS_AC,
} from "../../src";
import type { Vcpu } from "../../src/vcpu";
import type { Vm } from "../../src/vm";
import { GPTE } from "../kvm-values";

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4096;

// ---- configurations ---------------------------------------------------------------------------

/** The system under test's MMU: an MMU mode (with its flavour) or an era preset. */
export interface MmuConfig {
  mmu: "tdp" | "shadow";
  preset?: PresetName;
  features?: FeatureOptions;
}

/** Guest paging modes the world lays out. */
export type PagingMode = "32-bit" | "pae" | "4-level" | "5-level";
/**
 * Dirty logging: bitmaps with GET_DIRTY_LOG clearing them, manual protection (GET + CLEAR),
 * manual protection with KVM_DIRTY_LOG_INITIALLY_SET, the dirty ring, or Intel PML (TDP only).
 */
export type DirtyMode = "bitmap" | "manual" | "initially-set" | "ring" | "pml";

/** One world: the MMU, the guest's paging mode, the dirty-log mode and the vCPU count. */
export interface PropConfig extends MmuConfig {
  paging: PagingMode;
  dirty: DirtyMode;
  vcpus: 1 | 2;
}

/** Every MMU the suite runs: the three MMU modes, TDP without EPT A/D bits, and each preset. */
export const MMU_CONFIGS: readonly MmuConfig[] = [
  { mmu: "tdp", features: { mmuFlavor: "tdp_mmu" } },
  { mmu: "tdp", features: { mmuFlavor: "legacy_direct" } },
  { mmu: "shadow" },
  { mmu: "tdp", features: { eptAccessDirty: false } },
  ...(Object.keys(PRESETS) as PresetName[]).map((p) => ({ mmu: PRESETS[p].mmu, preset: p })),
];

const PAGING: readonly PagingMode[] = ["4-level", "pae", "32-bit", "5-level"];
const DIRTY: readonly DirtyMode[] = ["bitmap", "manual", "ring", "initially-set", "pml"];

/**
 * The world of a seed: consecutive seeds walk the MMU list (13 entries), the paging modes (4) and
 * the dirty modes (5) at once, so any 20 consecutive seeds run every MMU, every paging mode and
 * every dirty mode. PML needs TDP with EPT A/D bits; elsewhere it falls back to bitmaps.
 */
export function configForSeed(seed: number): PropConfig {
  const m = MMU_CONFIGS[seed % MMU_CONFIGS.length]!;
  let dirty = DIRTY[seed % DIRTY.length]!;
  const ad = m.features?.eptAccessDirty !== false;
  if (dirty === "pml" && (m.mmu !== "tdp" || !ad)) dirty = "bitmap";
  return {
    ...m,
    paging: PAGING[seed % PAGING.length]!,
    dirty,
    vcpus: seed % 3 === 2 ? 1 : 2,
  };
}

/** A short name of a configuration, for test titles and progress lines. */
export function configName(c: PropConfig): string {
  const mmu = c.preset
    ? `preset ${c.preset}`
    : c.mmu === "shadow"
      ? "shadow"
      : c.features?.eptAccessDirty === false
        ? "tdp (EPT A/D off)"
        : `tdp (${c.features?.mmuFlavor ?? "tdp_mmu"})`;
  return `${mmu}, ${c.paging} paging, ${c.dirty} dirty log, ${c.vcpus} vCPU${c.vcpus > 1 ? "s" : ""}`;
}

// ---- commands ---------------------------------------------------------------------------------

/** A guest access: `access` (no data; kind 0 read, 1 write, 2 fetch), `read`, `write`, `fetch`. */
export interface AccessCmd {
  op: "access" | "read" | "write" | "fetch";
  vcpu: number;
  /**
   * "test": the test region (pd 0..5, page 0..15); "ident": the identity map of low memory;
   * "wide": one page in each of 80 page tables (page `(pd * 16 + page) % 80`).
   */
  region: "test" | "ident" | "wide";
  pd: number;
  page: number;
  /** Index into {@link OFFSETS}. */
  off: number;
  size: 1 | 2 | 4 | 8;
  user: boolean;
  kind: 0 | 1 | 2;
  value: number;
}
/** Edit the PTE of test page (pd, page): a new frame and rights, or (age) clear its A and D. */
export interface PteCmd {
  op: "pte";
  pd: number;
  page: number;
  /** Index into the frame table (the world's `frames`). */
  frame: number;
  p: boolean;
  rw: boolean;
  us: boolean;
  a: boolean;
  d: boolean;
  nx: boolean;
  rsvd: boolean;
  /** Clear A and D with a 1-byte store instead (as a guest ages its pages). */
  age: boolean;
  /** The invalidation that follows: INVLPG of every address the entry maps, or a CR3 load. */
  inval: "invlpg" | "cr3";
}
/** Edit the PDE of test region pd 0..3: a page table, a large page, or not present; then CR3. */
export interface PdeCmd {
  op: "pde";
  pd: number;
  kind: "table" | "large" | "none";
  target: number;
  rw: boolean;
  us: boolean;
  a: boolean;
  d: boolean;
  nx: boolean;
  rsvd: boolean;
}
export type CrBit = "wp" | "smep" | "smap" | "pg" | "ac" | "cpl";
/** Toggle a paging register bit of one vCPU (KVM_SET_SREGS; RFLAGS.AC; the CPL). */
export interface CrCmd {
  op: "cr";
  vcpu: number;
  bit: CrBit;
}
/** MOV CR3 of one vCPU, to root 0 or its copy (root 1, the same tables). */
export interface Cr3Cmd {
  op: "cr3";
  vcpu: number;
  root: number;
}
/** INVLPG of a test page on one vCPU (one the architecture does not require). */
export interface InvlpgCmd {
  op: "invlpg";
  vcpu: number;
  pd: number;
  page: number;
}
/** Memslot 2 (at 8 or 12 MiB): delete, create (plain / read-only / logging), move. */
export interface SlotCmd {
  op: "slot";
  action: "delete" | "create" | "createRo" | "createLog" | "move";
}
/** KVM_MEM_LOG_DIRTY_PAGES on or off for slot 0, 1 or 2 (a flags-only change). */
export interface LogCmd {
  op: "log";
  slot: number;
  on: boolean;
}
/** KVM_GET_DIRTY_LOG of a slot (bitmap modes). */
export interface GetCmd {
  op: "get";
  slot: number;
}
/** KVM_CLEAR_DIRTY_LOG (manual modes): GET, then clear 64-page chunks with a mask pattern. */
export interface ClearCmd {
  op: "clear";
  slot: number;
  first: number;
  chunks: number;
  /** 0: all ones; 1: 0x55555555; 2: what GET returned; 3: `value`. */
  pattern: number;
  value: number;
}
/** Harvest every vCPU's dirty ring (after kicking them out), then KVM_RESET_DIRTY_RINGS or not. */
export interface HarvestCmd {
  op: "harvest";
  reset: boolean;
}
/** A vCPU leaves guest mode (a VM exit: its PML buffer goes to the dirty log). */
export interface PauseCmd {
  op: "pause";
  vcpu: number;
}
/** kvm_mmu_zap_all_fast. */
export interface ZapAllCmd {
  op: "zapAll";
}
/** kvm_zap_gfn_range over `n` frames of the frame table from `frame`, or zap one spte. */
export interface ZapCmd {
  op: "zap";
  frame: number;
  n: number;
  one: boolean;
}
/** MMU notifier invalidate over pages [page, page + n) of slot 0, 1 or 2's host range. */
export interface NotifierCmd {
  op: "notifier";
  slot: number;
  page: number;
  n: number;
}
/**
 * MMU notifier aging over pages [page, page + n) of slot 0, 1 or 2's host range: kind 0
 * clear_flush_young, 1 clear_young, 2 test_young.
 */
export interface AgeCmd {
  op: "age";
  slot: number;
  page: number;
  n: number;
  kind: number;
}
/** KVM_SET_NR_MMU_PAGES. */
export interface NrPagesCmd {
  op: "nrPages";
  n: number;
}
/** Seed 2017's write-protect-all (rmap MMUs with the possible-writable bitmap). */
export interface WpAllCmd {
  op: "wpAll";
  fast: boolean;
}

/** One operation of a program. */
export type Cmd =
  | AccessCmd
  | PteCmd
  | PdeCmd
  | CrCmd
  | Cr3Cmd
  | InvlpgCmd
  | SlotCmd
  | LogCmd
  | GetCmd
  | ClearCmd
  | HarvestCmd
  | PauseCmd
  | ZapAllCmd
  | ZapCmd
  | NotifierCmd
  | AgeCmd
  | NrPagesCmd
  | WpAllCmd;

/** The commands after which guest tables may differ (accesses set A/D; edits store). */
const TABLE_OPS: ReadonlySet<Cmd["op"]> = new Set([
  "access",
  "read",
  "write",
  "fetch",
  "pte",
  "pde",
]);

/** Access offsets in a page: reads use them as they are, stores move them to 0x800 and up. */
export const OFFSETS = [0, 8, 0x800, 0x808, 0xff8, 0xffc, 0x10, 0x400] as const;

// ---- guest layout ------------------------------------------------------------------------------

/**
 * Guest-physical layout (both machines):
 *   slot 0: [0, 2 MiB), 4 KiB backing: data at [0, 1 MiB), the builder's table pool at
 *           [1 MiB, 1.5 MiB), the root's copy at 1.5 MiB. Never moved or deleted.
 *   slot 1: [4 MiB, 8 MiB), THP backing (huge EPT/shadow leaves where the guest maps 2 MiB).
 *   slot 2: 2 MiB at 8 MiB, or at 12 MiB after a move; deleted and re-created by commands.
 *   nothing at [10, 12) MiB (or [8, 10)), nor at 16 MiB: MMIO.
 * Guest-virtual layout: gva [0, 2 MiB) maps gpa [0, 2 MiB) (supervisor, writable: how the guest
 * edits its tables); the test region at 1 GiB has one PDE span (`big`: 2 MiB, or 4 MiB in
 * 32-bit paging) per pd: pd 0, 1, 4, 5 map 16 4 KiB pages each (slot 1, slot 2, slot 0 data,
 * slot 1), pd 2 is one large page over slot 1, pd 3 is not present. The wide region at 2 GiB
 * maps one page in each of 80 PDE spans: 80 page tables, more shadow pages than the smallest
 * `KVM_SET_NR_MMU_PAGES` (64), so that the shadow MMU recycles pages.
 */
const SLOT0_SIZE = 2 * MiB;
const POOL = 1 * MiB;
const POOL_SIZE = 512 * KiB;
const ROOT_COPY = 1.5 * MiB;
const SLOT1 = 4 * MiB;
const SLOT1_SIZE = 4 * MiB;
const SLOT2_HOMES = [8 * MiB, 12 * MiB] as const;
const SLOT2_SIZE = 2 * MiB;
const MMIO = 16 * MiB;
const TEST = 0x40000000;
const NPAGES = 16;
/** First frame each 4 KiB test pd maps. */
const PD_FRAMES: Record<number, number> = {
  0: SLOT1,
  1: SLOT2_HOMES[0],
  4: 0,
  5: SLOT1 + 64 * KiB,
};
const TEST_PDS = 6;
const WIDE = 0x80000000;
const WIDE_PDS = 80;

const { P, RW, US, A, D, PS, NX } = GPTE;
/** A reserved bit of a PAE / 64-bit entry (bits MAXPHYADDR..51 are reserved; MAXPHYADDR 46). */
const RSVD = 1n << 51n;

/** One machine: the VM, its vCPUs and its table builder. */
interface Machine {
  vm: Vm;
  vcpus: Vcpu[];
  b: GuestPageTableBuilder;
}

/** The paging registers of one vCPU, as the world keeps them (identical on both machines). */
interface Regs {
  root: number;
  wp: boolean;
  smep: boolean;
  smap: boolean;
  pg: boolean;
  ac: boolean;
  cpl: number;
}

/** A broken property: the command, what differed, and where. */
export class Violation extends Error {
  constructor(
    readonly index: number,
    message: string,
  ) {
    super(message);
    this.name = "Violation";
  }
}

/** Options of a run. */
export interface RunOptions {
  /** Called every `progressEvery` commands with the number done (the soak's progress). */
  onProgress?: (done: number) => void;
  progressEvery?: number;
}

/** What a clean run did. */
export interface RunStats {
  /** Commands run (all of them, no-ops included). */
  ops: number;
  /** Commands that did not apply in the state they met (no-ops). */
  noops: number;
  /** Guest accesses made on each machine. */
  accesses: number;
}

const LOG = KVM_MEM_LOG_DIRTY_PAGES;

/** The guest-visible switches of a resolved feature set: CPUID, and the guest walker variant. */
function guestVisible(vm: Vm): FeatureOptions {
  const f = vm.features;
  return {
    nx: f.nx,
    gbpages: f.gbpages,
    pse36: f.pse36,
    la57: f.la57,
    smep: f.smep,
    smap: f.smap,
    pku: f.pku,
    // The w07a/w07b walkers of the 2.6.2x presets set A/D as KVM did then, not as the CPU does:
    // the reference must walk the same way.
    guestWalker: f.guestWalker,
  };
}

/** The world: both machines, the registers, and the dirty-log bookkeeping. */
export class World {
  readonly cfg: PropConfig;
  readonly sut: Machine;
  readonly ref: Machine;
  readonly big: number;
  readonly wide: boolean;
  /** Frames a PTE may map (gpa): slot 1, slot 2 (both homes), slot 0 data, test tables, MMIO. */
  readonly frames: number[];
  /** Frames a large PDE may map (gpa, `big`-aligned). */
  readonly largeFrames: number[];
  /** The test region's page tables (pd 0, 1, 4, 5) — targets of a PDE edit. */
  readonly tables: number[];
  /** Every page of guest page tables (compared after each command) ... */
  readonly tablePages: number[];
  /** ... in its first `tableWords[i]` 32-bit words (the wide region's tables use entry 0). */
  readonly tableWords: number[];
  readonly roots: number[];
  /** gpa of each test pd's PDE (in root 0; the tables above are never edited). */
  readonly pdeGpa: number[];
  readonly regs: Regs[];
  /** Where slot 2 is, or was last (index into SLOT2_HOMES). */
  slot2Home = 0;
  /**
   * Pages written while their slot logged and not reported since (slot id → page offsets); the
   * next read of the dirty log must report each of them.
   */
  private readonly pending = new Map<number, Set<number>>();
  /**
   * Dirty ring: pages harvested since the last reset. KVM leaves them writable until the reset
   * re-protects them, so a write to one now is covered by that harvest (the VMM copies the page
   * after the reset) and need not be pushed again.
   */
  private readonly harvestedOpen = new Map<number, Set<number>>();
  private readonly refImage: Int32Array;
  private readonly sutImage: Int32Array;
  private readonly scratchImage: Int32Array;
  /** Pool pages of the test and identity tables (the wide region's come after them). */
  private mainTables = 0;
  noops = 0;
  accesses = 0;
  /** The command being run (for messages). */
  private index = 0;

  constructor(cfg: PropConfig) {
    this.cfg = cfg;
    this.wide = cfg.paging !== "32-bit";
    this.big = cfg.paging === "32-bit" ? 4 * MiB : 2 * MiB;
    const features: FeatureOptions = { ...cfg.features };
    if (cfg.dirty === "manual" || cfg.dirty === "initially-set")
      features.manualDirtyLogProtect = true;
    if (cfg.dirty === "initially-set") features.dirtyLogInitiallySet = true;
    if (cfg.dirty === "pml") features.pml = true;
    const sutVm = createVm({
      mmu: cfg.mmu,
      ...(cfg.preset !== undefined ? { preset: cfg.preset } : {}),
      features,
    });
    if (cfg.dirty === "ring")
      sutVm.enableCap("KVM_CAP_DIRTY_LOG_RING", sutVm.features.pml ? 16384 : 4096);
    const refVm = createVm({ mmu: "none", features: guestVisible(sutVm) });
    this.sut = this.build(sutVm);
    this.ref = this.build(refVm);
    const b = this.ref.b;
    this.roots = [b.root, ROOT_COPY];
    this.pdeGpa = range(TEST_PDS, (pd) => b.entryAddress(this.gvaOf(pd, 0), 2)!);
    this.tables = [0, 1, 4, 5].map((pd) => b.entryAddress(this.gvaOf(pd, 0), 1)! & ~0xfff);
    const pdTable = this.pdeGpa[0]! & ~0xfff;
    this.frames = [
      ...range(32, (k) => SLOT1 + k * PAGE),
      ...range(16, (k) => SLOT2_HOMES[0] + k * PAGE),
      ...range(16, (k) => k * PAGE),
      ...this.tables,
      pdTable,
      ...range(8, (k) => SLOT2_HOMES[1] + k * PAGE),
      ...range(4, (k) => MMIO + k * PAGE),
    ];
    this.largeFrames = [SLOT1, SLOT2_HOMES[0], MMIO, this.wide ? SLOT1 + 2 * MiB : SLOT1];
    this.tablePages = [...range(b.tablesAllocated, (k) => POOL + k * PAGE), ROOT_COPY];
    const widePd = this.wide ? b.entryAddress(WIDE, 2)! & ~0xfff : -1;
    this.tableWords = this.tablePages.map((gpa) =>
      gpa >= POOL + this.mainTables * PAGE && gpa !== widePd && gpa !== ROOT_COPY ? 2 : 1024,
    );
    const words = this.tableWords.reduce((a, w) => a + w, 0);
    this.refImage = new Int32Array(words);
    this.sutImage = new Int32Array(words);
    this.scratchImage = new Int32Array(words);
    this.regs = range(cfg.vcpus, () => ({
      root: 0,
      wp: true,
      smep: false,
      smap: false,
      pg: true,
      ac: false,
      cpl: 0,
    }));
    for (let v = 0; v < cfg.vcpus; v++) this.applyRegs(v);
    this.image(this.ref, this.refImage);
  }

  /** Memslots, tables (identical on both machines: made by host writes before any vCPU runs). */
  private build(vm: Vm): Machine {
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: SLOT0_SIZE, flags: 0 });
    vm.setUserMemoryRegion({
      slot: 1,
      guestPhysAddr: SLOT1,
      memorySize: SLOT1_SIZE,
      flags: 0,
      backing: "thp",
    });
    vm.setUserMemoryRegion({
      slot: 2,
      guestPhysAddr: SLOT2_HOMES[0],
      memorySize: SLOT2_SIZE,
      flags: 0,
    });
    const b = new GuestPageTableBuilder(vm, {
      mode: this.cfg.paging,
      poolBase: POOL,
      poolSize: POOL_SIZE,
    });
    b.map(0, 0, SLOT0_SIZE, { writable: true, user: false, accessed: true, dirty: true });
    for (const pd of [0, 1, 4, 5])
      b.map(TEST + pd * this.big, PD_FRAMES[pd]!, NPAGES * PAGE, { writable: true, user: true });
    b.map(TEST + 2 * this.big, SLOT1, this.big, { pageSize: this.big, writable: true, user: true });
    this.mainTables = b.tablesAllocated;
    for (let k = 0; k < WIDE_PDS; k++)
      b.map(WIDE + k * this.big, SLOT1 + (k % 32) * PAGE, PAGE, { writable: true, user: true });
    // The root's copy: another CR3 value for the same tables (the shadow MMU keeps a root per
    // guest root, and caches previous ones across MOV CR3).
    for (let off = 0; off < PAGE; off += 4) {
      const v = vm.readPhys32(b.root + off);
      if (v !== 0) vm.guestWrite32(ROOT_COPY + off, v);
    }
    const vcpus = range(this.cfg.vcpus, () => vm.createVcpu());
    return { vm, vcpus, b };
  }

  // ---- helpers ----------------------------------------------------------------------------------

  private gvaOf(pd: number, page: number): number {
    return TEST + pd * this.big + page * PAGE;
  }

  /** An entry of the reference's guest memory. */
  private entry(gpa: number): bigint {
    return this.wide ? this.ref.vm.readPhys64(gpa) : BigInt(this.ref.vm.readPhys32(gpa));
  }

  /**
   * gpa of the PTE of test page (pd, page) as the guest's tables stand: the PDE must point to one
   * of the test page tables (its reserved and NX bits, which make the walk fault, do not move the
   * table); undefined when it is not present or maps a large page.
   */
  private pteAddress(pd: number, page: number): number | undefined {
    const e = this.entry(this.pdeGpa[pd]!);
    if ((e & P) === 0n || (e & PS) !== 0n) return undefined;
    const table = Number(e & (this.wide ? 0x3ffffffff000n : 0xfffff000n));
    if (!this.tables.includes(table)) return undefined;
    // The test pd's gva is aligned to its PDE's span: the page number is the PTE index.
    return table + page * (this.wide ? 8 : 4);
  }

  /** gpas of the PDE of test pd in every root (32-bit paging: the PD is the root, so two). */
  private pdeAddresses(pd: number): number[] {
    const gpa = this.pdeGpa[pd]!;
    return this.wide ? [gpa] : [gpa, ROOT_COPY + (gpa & 0xfff)];
  }

  private applyRegs(v: number): void {
    const r = this.regs[v]!;
    for (const m of [this.ref, this.sut]) {
      const s = m.b.sregs({ wp: r.wp, nx: this.wide, pse: true }) as {
        cr0: number;
        cr4: number;
        efer: number;
      };
      m.vcpus[v]!.setSregs({
        cr0: r.pg ? s.cr0 : s.cr0 & ~X86_CR0_PG,
        cr3: this.roots[r.root]!,
        cr4: s.cr4 | (r.smep ? X86_CR4_SMEP : 0) | (r.smap ? X86_CR4_SMAP : 0),
        efer: s.efer,
        cpl: r.cpl,
      });
    }
  }

  /** The table pages of machine `m` into `out` (32-bit words). */
  private image(m: Machine, out: Int32Array): void {
    const slot = m.vm.memslots.get(0)!;
    const mem = m.vm.memory;
    let k = 0;
    for (let p = 0; p < this.tablePages.length; p++) {
      const hvfn = slot.hvfn(this.tablePages[p]! / PAGE);
      const end = this.tableWords[p]! * 4;
      for (let off = 0; off < end; off += 4) out[k++] = mem.read32(hvfn, off);
    }
  }

  private fail(msg: string): never {
    throw new Violation(this.index, `command ${this.index}: ${msg}`);
  }

  private vcpuIndex(v: number): number {
    return v % this.cfg.vcpus;
  }

  // ---- running ----------------------------------------------------------------------------------

  /** Run a program; throws {@link Violation} at the first broken property. */
  run(cmds: readonly Cmd[], opts: RunOptions = {}): RunStats {
    const every = opts.progressEvery ?? 0;
    for (let i = 0; i < cmds.length; i++) {
      this.index = i;
      this.step(cmds[i]!);
      if (every > 0 && (i + 1) % every === 0) opts.onProgress?.(i + 1);
    }
    return { ops: cmds.length, noops: this.noops, accesses: this.accesses };
  }

  /** One command, then the checks that hold after every command. */
  step(cmd: Cmd): void {
    try {
      this.exec(cmd);
    } catch (e) {
      if (e instanceof Violation) throw e;
      this.fail(`${JSON.stringify(cmd)} threw ${(e as Error).stack ?? e}`);
    }
    if (TABLE_OPS.has(cmd.op)) this.compareTables();
    const audit = this.sut.vm.audit();
    if (audit.length > 0) this.fail(`audit after ${JSON.stringify(cmd)}: ${audit.join("; ")}`);
  }

  /** Compare the table pages; log the pages the reference's walker or stores changed. */
  private compareTables(): void {
    const before = this.refImage;
    const now = this.scratchImage;
    this.image(this.ref, now);
    this.image(this.sut, this.sutImage);
    let k = 0;
    for (let p = 0; p < this.tablePages.length; p++) {
      let written = false;
      for (let i = 0; i < this.tableWords[p]!; i++, k++) {
        if (now[k] !== this.sutImage[k]) {
          const gpa = this.tablePages[p]! + i * 4;
          this.fail(
            `guest table word at gpa 0x${gpa.toString(16)}: 0x${(this.sutImage[k]! >>> 0).toString(16)} on the system under test, 0x${(now[k]! >>> 0).toString(16)} on the bare machine`,
          );
        }
        if (before[k] !== now[k]) written = true;
      }
      // A/D bits the walker set are guest-memory writes: the dirty log must see them.
      if (written) this.noteWrite(this.tablePages[p]!);
    }
    before.set(now);
  }

  /** Execute one command. */
  private exec(c: Cmd): void {
    switch (c.op) {
      case "access":
      case "read":
      case "write":
      case "fetch":
        this.access(c);
        break;
      case "pte":
        this.pte(c);
        break;
      case "pde":
        this.pde(c);
        break;
      case "cr":
        this.cr(c);
        break;
      case "cr3": {
        const v = this.vcpuIndex(c.vcpu);
        this.regs[v]!.root = c.root & 1;
        for (const m of [this.ref, this.sut]) m.vcpus[v]!.movCr3(this.roots[c.root & 1]!);
        break;
      }
      case "invlpg": {
        const v = this.vcpuIndex(c.vcpu);
        for (const m of [this.ref, this.sut]) m.vcpus[v]!.invlpg(this.gvaOf(c.pd, c.page));
        break;
      }
      case "slot":
        this.slot(c);
        break;
      case "log":
        this.log(c);
        break;
      case "get":
        this.get(c);
        break;
      case "clear":
        this.clear(c);
        break;
      case "harvest":
        this.harvest(c.reset);
        break;
      case "pause":
        this.sut.vcpus[this.vcpuIndex(c.vcpu)]!.pause();
        break;
      case "zapAll":
        this.sut.vm.zapAllFast();
        break;
      case "zap": {
        const gfn = this.frames[c.frame % this.frames.length]! / PAGE;
        if (c.one) this.sut.vm.zapSpte(gfn);
        else this.sut.vm.zapGfnRange(gfn, gfn + 1 + c.n);
        break;
      }
      case "notifier": {
        const slot = this.sut.vm.memslots.get(c.slot);
        if (slot === undefined) return void this.noop();
        const page = c.page % slot.npages;
        const end = Math.min(slot.npages, page + 1 + c.n);
        const hva = slot.userspaceAddr;
        this.sut.vm.mmuNotifierInvalidateHva(hva + page * PAGE, hva + end * PAGE);
        break;
      }
      case "age": {
        const slot = this.sut.vm.memslots.get(c.slot);
        if (slot === undefined) return void this.noop();
        const page = c.page % slot.npages;
        const end = Math.min(slot.npages, page + 1 + c.n);
        const lo = slot.userspaceAddr + page * PAGE;
        const hi = slot.userspaceAddr + end * PAGE;
        const vm = this.sut.vm;
        if (c.kind === 2) vm.mmuNotifierTestYoung(lo, hi);
        else {
          if (c.kind === 0) vm.mmuNotifierClearFlushYoung(lo, hi);
          else vm.mmuNotifierClearYoung(lo, hi);
          // Aging leaves nothing young in the range (A cleared, or leaves without A/D zapped).
          if (vm.mmuNotifierTestYoung(lo, hi))
            this.fail(`pages ${page}..${end} of slot ${c.slot} still young after aging`);
        }
        break;
      }
      case "nrPages":
        this.sut.vm.setNrMmuPages(c.n);
        break;
      case "wpAll":
        if (!this.sut.vm.features.possibleWritableBitmap) return void this.noop();
        if (c.fast) this.sut.vm.fastWriteProtectAll();
        else this.sut.vm.writeProtectAllSps();
        break;
    }
  }

  private noop(): void {
    this.noops++;
  }

  // ---- guest accesses ---------------------------------------------------------------------------

  private access(c: AccessCmd): void {
    const v = this.vcpuIndex(c.vcpu);
    let off: number = OFFSETS[c.off % OFFSETS.length]!;
    let page = c.page % NPAGES;
    const store = c.op === "write" || (c.op === "access" && c.kind === 1);
    let gva: number;
    if (c.region === "ident") {
      // Pages 0..15: data in slot 0. Pages 16..31: the table pool, loaded only (a store there
      // could rewrite the identity map's own entries).
      page = c.page % 32;
      gva = page * PAGE;
      if (page >= 16) gva = POOL + (page - 16) * PAGE;
    } else if (c.region === "wide") gva = WIDE + ((c.pd * NPAGES + page) % WIDE_PDS) * this.big;
    else gva = this.gvaOf(c.pd % TEST_PDS, page);
    const size = c.op === "access" ? 1 : c.size;
    if (store) {
      // Stores stay in [0x800, 0x1000) of the page: entries no table of the layout uses.
      off = 0x800 | (off & 0x7f8);
      if (off + size > PAGE) off = PAGE - size;
      if (c.region === "ident" && page >= 16) {
        this.loadInstead(c, v, gva + off);
        return;
      }
    }
    this.accessBoth(c, v, gva + off, store);
  }

  private loadInstead(c: AccessCmd, v: number, gva: number): void {
    this.accessBoth({ ...c, op: "read", size: 8 }, v, gva - (gva % 8), false);
  }

  private accessBoth(c: AccessCmd, v: number, gva: number, store: boolean): void {
    const mask = c.size === 8 ? (1n << 64n) - 1n : (1n << BigInt(8 * c.size)) - 1n;
    const value = (BigInt(c.value >>> 0) * 0x100000001n) & mask;
    const one = (m: Machine): ReadResult | AccessResult => {
      const vcpu = m.vcpus[v]!;
      const o = { user: c.user };
      switch (c.op) {
        case "access":
          return vcpu.access(gva, { user: c.user, write: c.kind === 1, fetch: c.kind === 2 });
        case "read":
          return vcpu.read(gva, { ...o, size: c.size });
        case "fetch":
          return vcpu.fetch(gva, { ...o, size: c.size });
        case "write":
          return vcpu.write(gva, value, { ...o, size: c.size });
      }
    };
    const r = one(this.ref);
    let s = one(this.sut);
    if (s.exit === "dirty_ring_full") {
      // KVM_EXIT_DIRTY_RING_FULL: the VMM harvests, resets and runs the vCPU again.
      this.harvest(true);
      s = one(this.sut);
    }
    this.accesses++;
    if (
      r.fault !== s.fault ||
      r.vector !== s.vector ||
      r.errorCode !== s.errorCode ||
      r.gpa !== s.gpa ||
      r.mmio !== s.mmio ||
      ("value" in r ? r.value : undefined) !== ("value" in s ? s.value : undefined) ||
      r.exit !== s.exit
    ) {
      this.fail(
        `${JSON.stringify(c)} at gva 0x${gva.toString(16)} on vCPU ${v}: ${show(s)} on the system under test, ${show(r)} on the bare machine`,
      );
    }
    if (store && r.fault === false && r.mmio !== true && r.gpa !== undefined) this.noteWrite(r.gpa);
  }

  // ---- page-table edits -------------------------------------------------------------------------

  /** A guest store of an entry through the identity map (vCPU 0, supervisor). */
  private storeEntry(gpa: number, value: bigint, size: 1 | 4 | 8): void {
    const c: AccessCmd = {
      op: "write",
      vcpu: 0,
      region: "ident",
      pd: 0,
      page: 0,
      off: 0,
      size,
      user: false,
      kind: 1,
      value: 0,
    };
    const r = this.ref.vcpus[0]!.write(gpa, value, { size, user: false });
    let s = this.sut.vcpus[0]!.write(gpa, value, { size, user: false });
    if (s.exit === "dirty_ring_full") {
      this.harvest(true);
      s = this.sut.vcpus[0]!.write(gpa, value, { size, user: false });
    }
    if (r.fault !== s.fault || r.errorCode !== s.errorCode || r.gpa !== s.gpa || r.mmio !== s.mmio)
      this.fail(
        `table store ${JSON.stringify(c)} of 0x${value.toString(16)} at 0x${gpa.toString(16)}: ${show(s)} on the system under test, ${show(r)} on the bare machine`,
      );
    if (r.fault === false && r.mmio !== true) this.noteWrite(gpa);
  }

  private pte(c: PteCmd): void {
    const pd = c.pd % TEST_PDS;
    const page = c.page % NPAGES;
    const gpa = this.pteAddress(pd, page);
    if (gpa === undefined) {
      this.noop();
      return;
    }
    const old = this.entry(gpa);
    if (c.age) this.storeEntry(gpa, old & 0xffn & ~(A | D), 1);
    else {
      let v = BigInt(this.frames[c.frame % this.frames.length]!);
      if (c.p) v |= P;
      if (c.rw) v |= RW;
      if (c.us) v |= US;
      if (c.a) v |= A;
      if (c.d) v |= D;
      if (this.wide && c.nx) v |= NX;
      if (this.wide && c.rsvd) v |= RSVD;
      this.storeEntry(gpa, v, this.wide ? 8 : 4);
    }
    // The TLB caches no translation from a not-present entry: only a present one needs
    // invalidating (KVM's unsync pages rely on it: `FNAME(sync_spte)` runs at INVLPG or MOV CR3).
    if ((old & P) === 0n) return;
    if (c.inval === "cr3") {
      this.reloadCr3();
      return;
    }
    // INVLPG, on every vCPU, of every test address whose walk reads this entry.
    for (let p = 0; p < TEST_PDS; p++) {
      if (this.pteAddress(p, page) !== gpa) continue;
      for (let v = 0; v < this.cfg.vcpus; v++)
        for (const m of [this.ref, this.sut]) m.vcpus[v]!.invlpg(this.gvaOf(p, page));
    }
  }

  private pde(c: PdeCmd): void {
    const pd = c.pd % 4;
    let v: bigint;
    if (c.kind === "none") v = 0n;
    else if (c.kind === "table") v = BigInt(this.tables[c.target % this.tables.length]!) | P;
    else v = BigInt(this.largeFrames[c.target % this.largeFrames.length]!) | P | PS;
    if (v !== 0n) {
      if (c.rw) v |= RW;
      if (c.us) v |= US;
      if (c.a) v |= A;
      if (c.d && c.kind === "large") v |= D;
      if (this.wide && c.nx) v |= NX;
      if (this.wide && c.rsvd) v |= RSVD;
    }
    for (const gpa of this.pdeAddresses(pd)) this.storeEntry(gpa, v, this.wide ? 8 : 4);
    // A non-leaf entry: the paging-structure caches go with a CR3 load (and KVM write-protects
    // upper-level tables: its shadow of this entry was zapped by `kvm_mmu_track_write`).
    this.reloadCr3();
  }

  private reloadCr3(): void {
    for (let v = 0; v < this.cfg.vcpus; v++) {
      const root = this.roots[this.regs[v]!.root]!;
      for (const m of [this.ref, this.sut]) m.vcpus[v]!.movCr3(root);
    }
  }

  private cr(c: CrCmd): void {
    const v = this.vcpuIndex(c.vcpu);
    const r = this.regs[v]!;
    if (c.bit === "ac") {
      r.ac = !r.ac;
      for (const m of [this.ref, this.sut]) m.vcpus[v]!.setRflags(r.ac ? X86_EFLAGS_AC | 2 : 2);
      return;
    }
    if (c.bit === "cpl") r.cpl = r.cpl === 0 ? 3 : 0;
    else r[c.bit] = !r[c.bit];
    if (this.cfg.mmu === "shadow" && !r.wp && r.smap) {
      // Shadow paging with CR0.WP=0 and CR4.SMAP=1 is not architecturally invisible in KVM: a
      // supervisor write to a read-only user page that SMAP allows (explicit, EFLAGS.AC=1) turns
      // the page into a kernel page (spte U=0, W=1; paging_tmpl.h, FNAME(page_fault)), so later
      // supervisor accesses that SMAP should stop (implicit ones at CPL 3, or AC=0) no longer
      // fault (Documentation/virt/kvm/x86/mmu.rst, "cr0.wp=0"). The simulator does as KVM does
      // (test/shadow-cr0-wp-smap.test.ts); the suite compares against the bare machine, so it
      // keeps out of that state.
      if (c.bit === "wp" || c.bit === "smap") r[c.bit] = !r[c.bit];
      return void this.noop();
    }
    this.applyRegs(v);
  }

  // ---- memslots ---------------------------------------------------------------------------------

  /** The same memslot request on both machines: both refuse it, or both take it. */
  private setRegion(slot: number, gpa: number, size: number, flags: number): boolean {
    const req = { slot, guestPhysAddr: gpa, memorySize: size, flags };
    let refErr: unknown = null;
    try {
      this.ref.vm.setUserMemoryRegion(req);
    } catch (e) {
      if (!(e instanceof InvalidArgumentError)) throw e;
      refErr = e;
    }
    let sutErr: unknown = null;
    try {
      this.sut.vm.setUserMemoryRegion(req);
    } catch (e) {
      if (!(e instanceof InvalidArgumentError)) throw e;
      sutErr = e;
    }
    if ((refErr === null) !== (sutErr === null))
      this.fail(
        `KVM_SET_USER_MEMORY_REGION ${JSON.stringify(req)}: ${sutErr === null ? "taken" : `refused (${sutErr})`} on the system under test, ${refErr === null ? "taken" : `refused (${refErr})`} on the bare machine`,
      );
    return refErr === null;
  }

  private slot(c: SlotCmd): void {
    const home = SLOT2_HOMES[this.slot2Home]!;
    const cur = this.sut.vm.memslots.get(2);
    if (c.action === "delete") {
      if (cur === undefined) return void this.noop();
      this.setRegion(2, home, 0, 0);
      this.pending.delete(2);
      this.harvestedOpen.delete(2);
    } else if (c.action === "move") {
      if (cur === undefined) return void this.noop();
      const to = 1 - this.slot2Home;
      if (this.setRegion(2, SLOT2_HOMES[to]!, SLOT2_SIZE, cur.flags)) this.slot2Home = to;
      this.pending.delete(2);
      this.harvestedOpen.delete(2);
    } else {
      if (cur !== undefined) return void this.noop();
      const flags = c.action === "createRo" ? KVM_MEM_READONLY : c.action === "createLog" ? LOG : 0;
      this.setRegion(2, home, SLOT2_SIZE, flags);
    }
  }

  private log(c: LogCmd): void {
    const s = this.sut.vm.memslots.get(c.slot % 3);
    if (s === undefined) return void this.noop();
    const flags = c.on ? s.flags | LOG : s.flags & ~LOG;
    if (flags === s.flags) return void this.noop();
    this.setRegion(s.id, s.baseGfn * PAGE, s.npages * PAGE, flags);
    this.pending.delete(s.id);
    this.harvestedOpen.delete(s.id);
  }

  // ---- dirty logging ----------------------------------------------------------------------------

  /** A guest write to `gpa` completed: a logging slot must report the page. */
  private noteWrite(gpa: number): void {
    const gfn = Math.floor(gpa / PAGE);
    const slot = this.sut.vm.memslots.gfnToSlot(gfn);
    if (slot === undefined || (slot.flags & LOG) === 0) return;
    const off = gfn - slot.baseGfn;
    if (this.harvestedOpen.get(slot.id)?.has(off)) return;
    setOf(this.pending, slot.id).add(off);
  }

  private bitmapMode(): boolean {
    return this.cfg.dirty !== "ring";
  }

  /** Every pending page of `slotId` is set in `bm`. */
  private checkReported(slotId: number, bm: Uint32Array, what: string): void {
    const set = this.pending.get(slotId);
    if (set === undefined) return;
    for (const off of set) {
      if (((bm[off >>> 5]! >>> (off & 31)) & 1) === 0)
        this.fail(
          `${what} of slot ${slotId}: page ${off} (gfn 0x${(this.sut.vm.memslots.get(slotId)!.baseGfn + off).toString(16)}) was written and is not reported`,
        );
    }
  }

  private loggedSlot(id: number) {
    const s = this.sut.vm.memslots.get(id % 3);
    return s !== undefined && (s.flags & LOG) !== 0 ? s : undefined;
  }

  private get(c: GetCmd): void {
    const s = this.loggedSlot(c.slot);
    if (s === undefined || !this.bitmapMode()) return void this.noop();
    const bm = this.sut.vm.getDirtyLog(s.id);
    this.checkReported(s.id, bm, "KVM_GET_DIRTY_LOG");
    // Without manual protection GET clears what it returns and re-protects those pages.
    if (this.sut.vm.manualDirtyLogProtect === 0) this.pending.delete(s.id);
  }

  private clear(c: ClearCmd): void {
    const s = this.loggedSlot(c.slot);
    if (s === undefined || !this.bitmapMode() || this.sut.vm.manualDirtyLogProtect === 0)
      return void this.noop();
    // What a VMM does (QEMU's dirty-limit loop): GET (a copy), then CLEAR what it collected.
    const got = this.sut.vm.getDirtyLog(s.id);
    this.checkReported(s.id, got, "KVM_GET_DIRTY_LOG (manual protect)");
    const first = (c.first % 8) * 64;
    if (first >= s.npages) return;
    const num = Math.min(s.npages - first, (1 + (c.chunks % 8)) * 64);
    const bm = new Uint32Array(Math.ceil(num / 32));
    for (let i = 0; i < bm.length; i++) {
      bm[i] =
        c.pattern === 0
          ? 0xffffffff
          : c.pattern === 1
            ? 0x55555555
            : c.pattern === 2
              ? got[first / 32 + i]!
              : Math.imul(c.value + i, 0x9e3779b1) >>> 0;
    }
    this.sut.vm.clearDirtyLog(s.id, first, num, bm);
    // The bits that were set and are cleared: those pages are re-protected, their next write
    // must be logged again.
    const set = this.pending.get(s.id);
    if (set === undefined) return;
    for (let p = 0; p < num; p++) {
      const off = first + p;
      const bit = (x: Uint32Array, i: number) => ((x[i >>> 5]! >>> (i & 31)) & 1) !== 0;
      if (bit(bm, p) && bit(got, off)) set.delete(off);
    }
  }

  /** Harvest every ring (the vCPUs kicked out first: PML goes to the ring at the exit). */
  private harvest(reset: boolean): void {
    if (this.cfg.dirty !== "ring") return void this.noop();
    const vm = this.sut.vm;
    for (const v of this.sut.vcpus) v.pause();
    const got = new Map<number, Set<number>>();
    for (const v of this.sut.vcpus) {
      for (const e of v.dirtyRing!.harvest()) {
        setOf(got, e.slot).add(e.offset);
      }
    }
    for (const [slotId, set] of this.pending) {
      for (const off of set) {
        if (got.get(slotId)?.has(off) !== true)
          this.fail(
            `dirty ring harvest: slot ${slotId} page ${off} was written and is in no vCPU's ring`,
          );
      }
    }
    this.pending.clear();
    for (const [slotId, set] of got) {
      const open = setOf(this.harvestedOpen, slotId);
      for (const off of set) open.add(off);
    }
    if (reset) {
      vm.resetDirtyRings();
      this.harvestedOpen.clear();
    }
  }

  /** The end of a program: every byte of every slot agrees. */
  finish(): void {
    const a = this.ref.vm;
    const b = this.sut.vm;
    for (const s of a.memslots.list()) {
      const t = b.memslots.get(s.id);
      if (
        t === undefined ||
        t.baseGfn !== s.baseGfn ||
        t.npages !== s.npages ||
        t.flags !== s.flags
      )
        this.fail(`at the end: slot ${s.id} differs between the machines`);
      for (let g = 0; g < s.npages; g++) {
        const ha = s.hvfn(s.baseGfn + g);
        const hb = t.hvfn(t.baseGfn + g);
        for (let off = 0; off < PAGE; off += 4) {
          if (a.memory.read32(ha, off) !== b.memory.read32(hb, off))
            this.fail(
              `at the end: guest memory at gpa 0x${((s.baseGfn + g) * PAGE + off).toString(16)} differs`,
            );
        }
      }
    }
  }
}

/** The set of `key` in `map`, created empty on first use. */
function setOf(map: Map<number, Set<number>>, key: number): Set<number> {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  return set;
}

function range<T>(n: number, f: (k: number) => T): T[] {
  return Array.from({ length: n }, (_, k) => f(k));
}

function show(r: object): string {
  return JSON.stringify(r, (_, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v));
}
