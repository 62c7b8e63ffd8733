/**
 * The shadow-paging classroom lab (notebooks/07-shadow-paging-lab.ipynb): a small guest under
 * shadow paging (KVM with ept=0), its exercises, and `check(id, answer)`.
 *
 * Every grader works out the right answer on its own route: from the guest's page tables as the
 * x86 architecture walks them (read from guest memory here, not through KVM's MMU) and from KVM's
 * rules, each named after the kernel function that applies it (arch/x86/kvm/mmu/mmu.c,
 * paging_tmpl.h, x86.c). It then runs the exercise's scenario on a fresh lab machine and compares:
 * should the simulator ever disagree with the rules, the verdict says so instead of grading.
 */
import {
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  type AccessResult,
  createVm,
  EFER_LME,
  EFER_NX,
  GuestPageTableBuilder,
  htmlTableBundle,
  InvalidArgumentError,
  JUPYTER_DISPLAY,
  type MimeBundle,
  PT32_ENT_PER_PAGE,
  PT64_ENT_PER_PAGE,
  type ReadResult,
  type ShadowPageInfo,
  type ShadowPageList,
  type SlotBacking,
  type TdpTreeView,
  type Vcpu,
  type Vm,
  X86_CR0_PE,
  X86_CR0_PG,
  X86_CR0_WP,
  X86_CR4_PAE,
} from "@mmulab/core";
import {
  asInt,
  type CheckResult,
  type Displayable,
  type Exercise,
  exerciseTable,
  gradeExercise,
  type Verdict,
} from "./check";
import { hex } from "./words";

const MiB = 2 ** 20;
const P = 1n;
const RW = 2n;
const US = 4n;
const A = 0x20n;
const PS = 0x80n;
const XD = 1n << 63n;
const FRAME = 0x000ffffffffff000n;

/** gfns of the lab guest's page tables. */
export const TABLES = {
  /** PML4 of address space A (CR3 = 0x100000). */
  pml4: 0x100,
  /** PDPT, shared by both address spaces. */
  pdpt: 0x101,
  /** PD of the user region (gva 0 – 1 GiB). */
  pd: 0x102,
  /** PT of gva 0x400000 – 0x5fffff; PD entry 4 points at it a second time, read-only. */
  pt: 0x103,
  /** The kernel's window onto its own tables: PD … */
  windowPd: 0x104,
  /** … and PT (entry k maps gfn 0x100 + k at gva 0x40000000 + k·4 KiB). */
  windowPt: 0x105,
  /** PML4 of address space B (CR3 = 0x106000): entry 0 points at the same PDPT. */
  pml4B: 0x106,
} as const;

/** CR3 of address space A (the one the lab starts in). */
export const CR3_A = TABLES.pml4 * 4096;
/** CR3 of address space B. */
export const CR3_B = TABLES.pml4B * 4096;
/** gva of the window: table gfn 0x100 + k is mapped at WINDOW + k·4 KiB (supervisor, writable). */
export const WINDOW = 0x40000000;
/** The tables the window reaches: gfn 0x100 to 0x107. */
const WINDOW_GFNS = 8;
/** First data frame: gva 0x400000 + i·4 KiB → gfn 0x200 + i (i < 8). */
const DATA_GFN = 0x200;
/** The guest's 2 MiB page at gva 0x600000 starts at this gfn. */
const HUGE_GFN = 0x800;

/** The regions of the lab guest, as the exercises name them. */
export const REGIONS = [
  {
    gva: "0x400000 – 0x407fff",
    via: "PD 0x102 entry 2 → PT 0x103",
    maps: "gfn 0x200 – 0x207",
    rights: "user, read/write",
  },
  {
    gva: "0x600000 – 0x7fffff",
    via: "PD 0x102 entry 3 (PS = 1)",
    maps: "2 MiB at gfn 0x800",
    rights: "user, read/write",
  },
  {
    gva: "0x800000 – 0x807fff",
    via: "PD 0x102 entry 4 → PT 0x103 again",
    maps: "gfn 0x200 – 0x207",
    rights: "user, read-only (R/W = 0 in the PDE)",
  },
  {
    gva: "0x40000000 + k·0x1000",
    via: "PDPT 0x101 entry 1 → PD 0x104 → PT 0x105",
    maps: "gfn 0x100 + k (k < 8): the guest's own tables",
    rights: "supervisor, read/write",
  },
] as const;

/** Options of {@link createLab}. */
export interface LabOptions {
  /** How the host backs guest memory: "4k" (default) or "thp" (2 MiB pages where aligned). */
  backing?: SlotBacking;
}

/** A guest PTE: frame `gfn` with P, and R/W and U/S as asked (both default to true). */
export function pte(gfn: number, opts: { writable?: boolean; user?: boolean } = {}): bigint {
  if (!Number.isSafeInteger(gfn) || gfn < 0 || gfn >= 2 ** 40) {
    throw new InvalidArgumentError("gfn", gfn, "a frame number from 0 to 2^40 - 1");
  }
  if (opts === null || typeof opts !== "object") {
    throw new InvalidArgumentError("options", opts, "{ writable?: boolean, user?: boolean }");
  }
  for (const k of ["writable", "user"] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== "boolean") {
      throw new InvalidArgumentError(k, opts[k], "true or false");
    }
  }
  return (
    (BigInt(gfn) << 12n) | P | (opts.writable === false ? 0n : RW) | (opts.user === false ? 0n : US)
  );
}

/**
 * The lab machine: a 64 MiB guest with 4-level paging (CR0.WP, EFER.NXE on, CPL 0) under shadow
 * paging, its tables at the gfns of {@link TABLES}. The entries above the leaves have A set and
 * the leaves have not, so KVM prefetches no neighbouring guest PTE (FNAME(prefetch_invalid_gpte)
 * skips entries without A): a 4 KiB guest page gets a shadow entry only when the guest faults on
 * it. (Under the guest's 2 MiB page KVM still maps the aligned group of 8 entries around a fault:
 * __direct_pte_prefetch.)
 */
export class ShadowLab implements Displayable {
  readonly vm: Vm;
  readonly vcpu: Vcpu;

  constructor(opts: LabOptions = {}) {
    if (opts === null || typeof opts !== "object") {
      throw new InvalidArgumentError("options", opts, '{ backing?: "4k" | "thp" }');
    }
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: 64 * MiB,
      flags: 0,
      backing: opts.backing ?? "4k",
    });
    const set = (gfn: number, i: number, v: bigint) => vm.guestWrite64(gfn * 4096 + i * 8, v);
    const T = TABLES;
    set(T.pml4, 0, pte(T.pdpt) | A);
    set(T.pml4B, 0, pte(T.pdpt) | A);
    set(T.pdpt, 0, pte(T.pd) | A);
    set(T.pdpt, 1, pte(T.windowPd, { user: false }) | A);
    set(T.pd, 2, pte(T.pt) | A);
    set(T.pd, 3, pte(HUGE_GFN) | PS);
    set(T.pd, 4, pte(T.pt, { writable: false }) | A);
    for (let i = 0; i < 8; i++) set(T.pt, i, pte(DATA_GFN + i));
    set(T.windowPd, 0, pte(T.windowPt, { user: false }) | A);
    for (let k = 0; k < WINDOW_GFNS; k++) set(T.windowPt, k, pte(T.pml4 + k, { user: false }));
    this.vm = vm;
    this.vcpu = vm.createVcpu();
    // 4-level paging (EFER.LMA follows LME and PG), the kernel running.
    this.vcpu.setSregs({
      cr0: (X86_CR0_PE | X86_CR0_WP | X86_CR0_PG) >>> 0,
      cr3: CR3_A,
      cr4: X86_CR4_PAE,
      efer: EFER_LME | EFER_NX,
      cpl: 0,
    });
  }

  /** The user program reads 8 bytes at `gva` (a user-mode access): the page is touched. */
  touch(gva: number): ReadResult {
    if (!Number.isSafeInteger(gva) || gva < 0 || gva >= 2 ** 47) {
      throw new InvalidArgumentError("gva", gva, "a user address from 0 to 2^47 - 1");
    }
    return this.vcpu.read(gva, { user: true });
  }

  /** The gva at which the kernel's window maps table `gfn`. */
  window(gfn: number): number {
    if (!Number.isInteger(gfn) || gfn < TABLES.pml4 || gfn >= TABLES.pml4 + WINDOW_GFNS) {
      throw new InvalidArgumentError(
        "gfn",
        gfn,
        `a table the window maps: 0x${TABLES.pml4.toString(16)} to 0x${(TABLES.pml4 + WINDOW_GFNS - 1).toString(16)}`,
      );
    }
    return WINDOW + (gfn - TABLES.pml4) * 4096;
  }

  /**
   * The guest kernel stores `value` (8 bytes) into entry `index` of its table at `gfn`, through
   * its window: an ordinary guest store, which KVM sees only if it faults.
   */
  setGpte(gfn: number, index: number, value: bigint | number): AccessResult {
    const gva = this.window(gfn);
    if (!Number.isInteger(index) || index < 0 || index > 511) {
      throw new InvalidArgumentError("index", index, "an entry index from 0 to 511");
    }
    return this.vcpu.write(gva + index * 8, value, { user: false });
  }

  /** Entry `index` of the guest's table at `gfn`, as it is in guest memory. */
  gpte(gfn: number, index: number): bigint {
    this.window(gfn);
    if (!Number.isInteger(index) || index < 0 || index > 511) {
      throw new InvalidArgumentError("index", index, "an entry index from 0 to 511");
    }
    return this.vm.readPhys64(gfn * 4096 + index * 8);
  }

  /** KVM's shadow pages: gfn, level, role (direct, access, quadrant), parents, unsync, flooding. */
  pages(): ShadowPageList {
    return this.vm.shadowPages();
  }

  /** The shadow tree of the vCPU's root, by gva. */
  tree(title = "shadow page tables"): TdpTreeView {
    return this.vm.snapshot({ title });
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return regionsBundle();
  }
}

/** Builds a fresh lab machine (see {@link ShadowLab}). */
export function createLab(opts: LabOptions = {}): ShadowLab {
  return new ShadowLab(opts);
}

function regionsBundle(): MimeBundle {
  return htmlTableBundle(
    "The lab guest (4-level paging, CR0.WP and EFER.NXE on; PML4 0x100, PDPT 0x101, PD 0x102, PT 0x103)",
    REGIONS.map((r) => ({ ...r })),
  );
}

/** The lab guest's regions, as a table in the notebook. */
export function regions(): Displayable {
  return { [JUPYTER_DISPLAY]: regionsBundle };
}

/** A 32-bit guest (no PAE): the gva whose shadow pages exercise 12 looks at. */
export const GVA32 = 0xc0400000;

/** The 32-bit lab machine of exercise 12: see {@link createLab32}. */
export interface Lab32 {
  vm: Vm;
  vcpu: Vcpu;
  /** gfn of the guest's page directory (CR3's frame). */
  pdGfn: number;
  /** The user program reads 4 bytes at `gva`. */
  touch(gva: number): ReadResult;
}

/**
 * A 32 MiB guest with 32-bit paging (CR4.PAE = 0: 4-byte entries, 1024 per table), under shadow
 * paging; 4 MiB of user pages at {@link GVA32}.
 */
export function createLab32(): Lab32 {
  const vm = createVm({ mmu: "shadow", maxPhysAddrBits: 36 });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 32 * MiB, flags: 0 });
  const b = new GuestPageTableBuilder(vm, { mode: "32-bit", poolBase: 16 * MiB, poolSize: MiB });
  b.map(GVA32, 20 * MiB, 4 * MiB, { writable: true, user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({}), cpl: 0 });
  return {
    vm,
    vcpu,
    pdGfn: b.root / 4096,
    touch: (gva: number) => vcpu.read(gva, { user: true, size: 4 }),
  };
}

// ---- the x86 walk, read from guest memory (independent of KVM's MMU) --------------------------

/** One level of a 4-level walk: the table read, the entry's index and value. */
interface ArchStep {
  level: number;
  tableGfn: number;
  index: number;
  gpte: bigint;
}

/**
 * The tables an x86 4-level walk of `gva` reads from CR3 `cr3`, top down, up to the leaf (a
 * present entry with PS at level 2 or 3, or level 1) or the first entry that is not present.
 */
function archWalk(vm: Vm, cr3: number, gva: number): ArchStep[] {
  const steps: ArchStep[] = [];
  let tableGfn = Math.floor(cr3 / 4096);
  for (let level = 4; level >= 1; level--) {
    const index = Math.floor(gva / 2 ** (12 + 9 * (level - 1))) % 512;
    const gpte = vm.readPhys64(tableGfn * 4096 + index * 8);
    steps.push({ level, tableGfn, index, gpte });
    if ((gpte & P) === 0n || level === 1 || (level <= 3 && (gpte & PS) !== 0n)) break;
    tableGfn = Number((gpte & FRAME) >> 12n);
  }
  return steps;
}

/** The gpa `gva` maps to by the walk, or null when an entry is not present. */
function archTranslate(vm: Vm, cr3: number, gva: number): number | null {
  const steps = archWalk(vm, cr3, gva);
  const leaf = steps[steps.length - 1]!;
  if ((leaf.gpte & P) === 0n) return null;
  const span = 2 ** (12 + 9 * (leaf.level - 1));
  return Number(leaf.gpte & FRAME & ~BigInt(span - 1)) + (gva % span);
}

/**
 * The ACC_* rights the entries above a table grant (the walk's `pt_access`, which
 * kvm_mmu_child_role puts in the shadow page's role.access): W and U if every entry has R/W and
 * U/S, X unless one has XD (EFER.NXE is on in the lab).
 */
function accessAbove(steps: readonly ArchStep[]): number {
  let acc = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK;
  for (const s of steps) {
    if ((s.gpte & RW) === 0n) acc &= ~ACC_WRITE_MASK;
    if ((s.gpte & US) === 0n) acc &= ~ACC_USER_MASK;
    if ((s.gpte & XD) !== 0n) acc &= ~ACC_EXEC_MASK;
  }
  return acc;
}

// ---- KVM's rules, with the kernel function that applies each ------------------------------

/** `detect_write_flooding`: a shadow page above level 1 is zapped when its count reaches 3. */
export const WRITE_FLOODING_THRESHOLD = 3;

// ---- small helpers for the graders -------------------------------------------------------------

const live = (lab: { vm: Vm }): ShadowPageInfo[] =>
  lab.vm.shadowPages().pages.filter((p) => !p.role.invalid);

const hexList = (xs: readonly number[]): string => `[${xs.map((x) => hex(x)).join(", ")}]`;

/** The verdict when the simulator and the rules disagree: the lab itself is broken. */
function disagree(what: string, sim: unknown, rules: unknown): Verdict {
  const show = (v: unknown) =>
    JSON.stringify(v, (_k, x) => (typeof x === "number" && x > 255 ? hex(x) : x));
  return {
    ok: false,
    message: `the lab machine no longer shows what KVM's rules give for ${what} (simulator ${show(sim)}, rules ${show(rules)}): please report this.`,
  };
}

const sameSet = (a: readonly number[], b: readonly number[]): boolean =>
  a.length === b.length && a.every((x) => b.includes(x));

/** `answer` as a list of distinct whole numbers, or why it is not one. */
function asNumberList(answer: unknown, what: string): number[] | string {
  if (!Array.isArray(answer))
    return `expected a list of ${what}, like [0x100, 0x101], got ${String(answer)}`;
  const out: number[] = [];
  for (const x of answer) {
    const n = asInt(x, what);
    if (typeof n === "string") return n;
    if (out.includes(n)) return `${hex(n)} is in the list twice`;
    out.push(n);
  }
  return out;
}

/** `answer` as an object with exactly `keys`, or why it is not one. */
function asRecord(answer: unknown, keys: readonly string[]): Record<string, unknown> | string {
  const form = `{ ${keys.join(", ")} }`;
  if (answer === null || typeof answer !== "object" || Array.isArray(answer)) {
    return `expected an object ${form}, got ${String(answer)}`;
  }
  const a = answer as Record<string, unknown>;
  for (const k of Object.keys(a)) {
    if (!keys.includes(k)) return `unknown field "${k}"; the answer has ${keys.join(", ")}`;
  }
  for (const k of keys) if (!(k in a)) return `the field "${k}" is missing: ${form}`;
  return a;
}

/** Each of `keys` of `a` as a whole number, or why one is not. */
function intFields(
  a: Record<string, unknown>,
  keys: readonly string[],
): Record<string, number> | string {
  const out: Record<string, number> = {};
  for (const k of keys) {
    const n = asInt(a[k], k);
    if (typeof n === "string") return n;
    out[k] = n;
  }
  return out;
}

const verdict = (wrong: string[], right: string): Verdict =>
  wrong.length === 0 ? { ok: true, message: right } : { ok: false, message: `${wrong.join(" ")}` };

/** The stats counters one step changed (the deltas a grader compares). */
function delta(lab: ShadowLab, step: () => void): Record<string, number> {
  const before = lab.vm.stats.toJSON();
  step();
  const after = lab.vm.stats.toJSON();
  const out: Record<string, number> = {};
  for (const k of Object.keys(after)) out[k] = after[k]! - before[k]!;
  return out;
}

// ---- the scenarios, on a fresh lab each --------------------------------------------------------

/** The gva the exercises start from, and the tables its walk reads (in address space A). */
const START = 0x400000;

/** A fresh lab after the user program's first read of 0x400000. */
function started(opts: LabOptions = {}): ShadowLab {
  const lab = createLab(opts);
  lab.touch(START);
  return lab;
}

/** The gfn of the level-`level` table on the walk of `gva` in address space A (fresh guest). */
function tableAt(gva: number, level: number): number {
  const step = archWalk(createLab().vm, CR3_A, gva).find((s) => s.level === level);
  if (step === undefined) throw new Error(`the walk of ${hex(gva)} has no level ${level}`);
  return step.tableGfn;
}

const LEVEL_NAME: Record<number, string> = { 4: "PML4", 3: "PDPT", 2: "PD", 1: "PT" };

/** What is wrong with a list of gfns against the tables expected, in words (no full answer). */
function tableListHints(
  given: readonly number[],
  expected: readonly { gfn: number; level: number }[],
  extraWords: (gfn: number) => string,
): string[] {
  const out: string[] = [];
  const gpaLike = given.filter((g) => g % 4096 === 0 && expected.some((e) => e.gfn === g / 4096));
  if (gpaLike.length > 0) {
    out.push(`Give gfns (gpa >> 12), not gpas: ${hexList(gpaLike)} look like gpas of tables.`);
  }
  for (const e of expected) {
    if (!given.includes(e.gfn) && !given.includes(e.gfn * 4096)) {
      out.push(`One is missing: the ${LEVEL_NAME[e.level]} (level ${e.level}) of the walk.`);
    }
  }
  for (const g of given) {
    if (expected.some((e) => e.gfn === g || e.gfn * 4096 === g)) continue;
    out.push(extraWords(g));
  }
  return out;
}

function notATable(g: number): string {
  if (g >= DATA_GFN && g < DATA_GFN + 8) {
    return `${hex(g)} is a data page the user program reads, not a page table. (Its shadow entry lacks W for another reason: the page is clean, and KVM waits for the first write to set the guest's D bit, FNAME(protect_clean_gpte).)`;
  }
  if (g === TABLES.windowPd || g === TABLES.windowPt) {
    return `${hex(g)} is one of the window's tables: KVM shadows those only once the kernel uses its window (nothing has, yet).`;
  }
  return `${hex(g)} is not a table the walk of ${hex(START)} reads.`;
}

// ---- the exercises ---------------------------------------------------------------------------

const EX4_STEPS = ["the user program reads 0x400000", "INVLPG 0x400000", "MOV CR3 (same value)"];

const EXERCISES: Exercise[] = [
  {
    id: "ex1",
    question:
      "After the user program's first read of 0x400000 on a fresh lab, which guest page tables has KVM write-protected? Give their gfns.",
    form: "a list of gfns, e.g. [0x100, 0x200]",
    grade(answer) {
      const given = asNumberList(answer, "gfns");
      if (typeof given === "string") return { ok: false, message: given };
      // Rule (account_shadowed): every guest table KVM shadows is write-protected, and KVM
      // shadows each table the walk used (mmu_alloc_shadow_roots for the root, FNAME(fetch)).
      const walk = archWalk(createLab().vm, CR3_A, START);
      const expected = walk.map((s) => ({ gfn: s.tableGfn, level: s.level }));
      const sim = live(started())
        .filter((p) => !p.direct)
        .map((p) => p.gfn);
      if (
        !sameSet(
          sim,
          expected.map((e) => e.gfn),
        )
      ) {
        return disagree(
          "the shadowed tables",
          sim,
          expected.map((e) => e.gfn),
        );
      }
      return verdict(
        tableListHints(given, expected, notATable),
        "KVM shadows every table the walk of 0x400000 used, from the root in CR3 (PML4 0x100) down to the PT (0x103), and write-protects each (account_shadowed): a guest write to any of them must fault, or KVM's copy would go stale unnoticed.",
      );
    },
  },
  {
    id: "ex2",
    question:
      "The guest kernel then writes one entry of each of those tables through its window. Which of these writes does KVM emulate? Give the tables' gfns.",
    form: "a list of gfns, e.g. [0x100]",
    grade(answer) {
      const given = asNumberList(answer, "gfns");
      if (typeof given === "string") return { ok: false, message: given };
      // Rule (account_shadowed → __kvm_write_track_add_gfn for role.level > PG_LEVEL_4K): upper
      // tables are write-tracked, so page_fault_handle_page_track sends every write to the
      // emulator; a level-1 table is only write-protected and may go unsync instead.
      const walk = archWalk(createLab().vm, CR3_A, START);
      const expected = walk
        .filter((s) => s.level > 1)
        .map((s) => ({ gfn: s.tableGfn, level: s.level }));
      const lab = started();
      const sim = walk
        .filter((s) => delta(lab, () => lab.setGpte(s.tableGfn, 9, 0n)).pf_emulate === 1)
        .map((s) => s.tableGfn);
      if (
        !sameSet(
          sim,
          expected.map((e) => e.gfn),
        )
      ) {
        return disagree(
          "the emulated writes",
          sim,
          expected.map((e) => e.gfn),
        );
      }
      const pt = walk.find((s) => s.level === 1)!.tableGfn;
      const hints = tableListHints(
        given.filter((g) => g !== pt),
        expected,
        notATable,
      );
      if (given.includes(pt)) {
        hints.unshift(
          `Not ${hex(pt)}: the level-1 table is write-protected but not write-tracked, so its first write makes the shadow page unsync (mmu_try_to_unsync_pages) and the write goes to memory without emulation.`,
        );
      }
      return verdict(
        hints,
        "The PML4, PDPT and PD are write-tracked (account_shadowed calls __kvm_write_track_add_gfn above level 1): every write to them faults and is emulated (page_fault_handle_page_track), and KVM drops the shadow entry of the gpte written at once (kvm_mmu_track_write). The PT is only write-protected: its first write makes the PT's shadow page unsync instead.",
      );
    },
  },
  {
    id: "ex3",
    question:
      "On a fresh lab after the read of 0x400000, the kernel writes entry 5 of its page table (gfn 0x103) three times. Which shadow page becomes unsync (its gfn), and how many of the three writes exit to KVM?",
    form: "{ gfn: number, exits: number }",
    grade(answer) {
      const rec = asRecord(answer, ["gfn", "exits"]);
      if (typeof rec === "string") return { ok: false, message: rec };
      const a = intFields(rec, ["gfn", "exits"]);
      if (typeof a === "string") return { ok: false, message: a };
      // Rules: the written table's shadow page (level 1, not write-tracked) goes unsync on the
      // first write, which faults because account_shadowed left the window's spte read-only;
      // mmu_try_to_unsync_pages then lets make_spte map it writable: no further exit.
      const pt = tableAt(START, 1);
      const expected = { gfn: pt, exits: 1 };
      const lab = started();
      const exits = [0, 1, 2].map(
        (k) => delta(lab, () => lab.setGpte(pt, 5, pte(0x300 + k))).pf_taken,
      );
      const unsync = live(lab)
        .filter((p) => p.unsync)
        .map((p) => p.gfn);
      if (exits.join() !== "1,0,0" || !sameSet(unsync, [expected.gfn])) {
        return disagree(
          "three writes to the PT",
          { exits, unsync },
          { exits: [1, 0, 0], unsync: [pt] },
        );
      }
      const wrong: string[] = [];
      if (a.gfn !== expected.gfn) {
        if (archWalk(lab.vm, CR3_A, START).some((s) => s.tableGfn === a.gfn && s.level > 1)) {
          wrong.push(
            `${hex(a.gfn)} is an upper-level table: those are write-tracked and never go unsync. The page that does is the shadow page of the table being written.`,
          );
        } else {
          wrong.push(
            `${hex(a.gfn)} is not the one: the page that goes unsync is the shadow page of the table being written.`,
          );
        }
      }
      if (a.exits !== expected.exits) {
        wrong.push(
          a.exits > expected.exits
            ? `Fewer than ${a.exits} writes exit: once KVM has let the page go unsync, the window maps the table writable and the next writes go straight to memory.`
            : "The first write does exit: KVM write-protected the table when it shadowed it, so the window's mapping of it was read-only.",
        );
      }
      return verdict(
        wrong,
        "The PT's shadow page (gfn 0x103) is unsync: the first write faulted on the read-only window mapping, and KVM, instead of emulating, marked the page unsync (kvm_unsync_page) and made the mapping writable. Writes 2 and 3 did not exit: KVM's copy of the PT is now allowed to be out of date.",
      );
    },
  },
  {
    id: "ex4",
    question: `Continue from exercise 3 (the PT's shadow page is unsync). The guest then does, in order: (1) ${EX4_STEPS[0]}, (2) ${EX4_STEPS[1]}, (3) ${EX4_STEPS[2]}. After each step, is the PT's shadow page still unsync?`,
    form: "a list of three booleans, e.g. [true, false, false]",
    grade(answer) {
      if (
        !Array.isArray(answer) ||
        answer.length !== 3 ||
        !answer.every((x) => typeof x === "boolean")
      ) {
        return {
          ok: false,
          message: `expected a list of three booleans (one per step), got ${JSON.stringify(answer)}`,
        };
      }
      // Rules: a read that hits KVM's tables does not exit; INVLPG re-syncs only the one entry
      // (kvm_mmu_invlpg → __kvm_mmu_invalidate_addr → kvm_sync_spte) and leaves the page unsync;
      // MOV CR3 is a guest TLB flush: kvm_set_cr3 → kvm_invalidate_pcid → KVM_REQ_MMU_SYNC →
      // kvm_mmu_sync_roots → mmu_sync_children, which write-protects and syncs every unsync page.
      const expected = [true, true, false];
      const lab = started();
      const pt = tableAt(START, 1);
      lab.setGpte(pt, 5, pte(0x300));
      const still = () => live(lab).some((p) => p.gfn === pt && p.unsync);
      const sim: boolean[] = [];
      lab.touch(START);
      sim.push(still());
      lab.vcpu.invlpg(START);
      sim.push(still());
      lab.vcpu.movCr3(CR3_A);
      lab.touch(START);
      sim.push(still());
      if (sim.join() !== expected.join()) return disagree("the three steps", sim, expected);
      const why = [
        "a read of a page KVM has mapped does not exit: KVM does not even see it",
        "INVLPG makes KVM re-read only the guest entry for that address (kvm_mmu_invlpg → kvm_sync_spte); the page stays unsync and writable",
        "a CR3 load flushes the guest's TLB, and KVM answers by syncing every unsync page under the root (kvm_mmu_sync_roots → mmu_sync_children)",
      ];
      const ask = [
        "does KVM even see a read of a page it has already mapped?",
        "KVM intercepts INVLPG, but what does it re-read: the whole table, or the one entry for that address?",
        "a CR3 load flushes the guest's TLB; what must KVM do with its out-of-date copies before the guest may rely on them?",
      ];
      const wrong = answer
        .map((v, i) => (v === expected[i] ? "" : `Step ${i + 1} (${EX4_STEPS[i]}): ${ask[i]}`))
        .filter((s) => s !== "");
      return verdict(
        wrong,
        `Unsync ends only when the guest flushes its TLB. (1) ${why[0]}; (2) ${why[1]}; (3) ${why[2]}: it write-protects the table again and re-reads every guest entry behind a present shadow entry.`,
      );
    },
  },
  {
    id: "ex5",
    question:
      "On a fresh lab after the read of 0x400000, the kernel writes entries 100, 101, 102, … of its page directory (gfn 0x102), one 8-byte store each, non-zero values, and touches nothing else. After which write is the PD's shadow page zapped?",
    form: "a number: 1, 2, 3, …",
    grade(answer) {
      if (answer === "never" || answer === Number.POSITIVE_INFINITY || answer === 0) {
        return {
          ok: false,
          message:
            "It does get zapped: a PD's shadow page counts the emulated writes to its table; only level-1 pages are exempt (they can go unsync instead).",
        };
      }
      const n = asInt(answer, "a write number");
      if (typeof n === "string") return { ok: false, message: n };
      const expected = WRITE_FLOODING_THRESHOLD;
      const lab = started();
      const pd = tableAt(START, 2);
      let sim = 0;
      for (let k = 1; k <= 6 && sim === 0; k++) {
        lab.setGpte(pd, 99 + k, pte(0x300));
        if (!live(lab).some((p) => p.gfn === pd)) sim = k;
      }
      if (sim !== expected) return disagree("the write that zaps the PD", sim, expected);
      if (n === expected) {
        return {
          ok: true,
          message:
            "detect_write_flooding counts the emulated writes to a shadow page since KVM last used it and zaps the page when the count reaches 3: writes 1 and 2 zap only the shadow entry of the written gpte (mmu_pde_zapped), write 3 zaps the whole page (mmu_flooded). The kernel's reason: that many writes suggest the page is no longer a page table, or the guest is forking.",
        };
      }
      return {
        ok: false,
        message:
          n < expected
            ? `After write ${n} the page is still there: one aligned write only zaps the one shadow entry of the gpte it changed. Watch writeFlooding in the shadow page list after each write.`
            : `Earlier than write ${n}: watch writeFlooding in the shadow page list after each write.`,
      };
    },
  },
  {
    id: "ex6",
    question:
      "As in exercise 5, but between writes 2 and 3 the user program reads one page: (a) 0x405000, which it has not touched before, or (b) 0x400000, which it has. In each case, after which write is the PD's shadow page zapped?",
    form: "{ newPage: number, mappedPage: number }",
    grade(answer) {
      const rec = asRecord(answer, ["newPage", "mappedPage"]);
      if (typeof rec === "string") return { ok: false, message: rec };
      const a = intFields(rec, ["newPage", "mappedPage"]);
      if (typeof a === "string") return { ok: false, message: a };
      // Rules: the count is reset when KVM uses the page on a fault (FNAME(fetch) calls
      // clear_sp_write_flooding_count on every shadow page of the faulting address's path); a
      // read the CPU completes with KVM's tables is no exit, and resets nothing.
      const before = 2;
      const expected = {
        newPage: before + WRITE_FLOODING_THRESHOLD,
        mappedPage: WRITE_FLOODING_THRESHOLD,
      };
      const zapAt = (gva: number): number => {
        const lab = started();
        const pd = tableAt(START, 2);
        for (let k = 1; k <= 8; k++) {
          if (k === before + 1) lab.touch(gva);
          lab.setGpte(pd, 99 + k, pte(0x300));
          if (!live(lab).some((p) => p.gfn === pd)) return k;
        }
        return 0;
      };
      const sim = { newPage: zapAt(0x405000), mappedPage: zapAt(START) };
      if (sim.newPage !== expected.newPage || sim.mappedPage !== expected.mappedPage) {
        return disagree("the write that zaps the PD", sim, expected);
      }
      const wrong: string[] = [];
      if (a.newPage !== expected.newPage) {
        wrong.push(
          a.newPage <= WRITE_FLOODING_THRESHOLD
            ? "(a) Later: the read of a new page faults into KVM, whose fault handler walks its shadow tables through the PD and resets the flooding count of every page on the way (FNAME(fetch)). The count starts over."
            : "(a) The reset puts the count back to 0; count the writes it needs from there.",
        );
      }
      if (a.mappedPage !== expected.mappedPage) {
        wrong.push(
          "(b) 0x400000 is already mapped by KVM's tables: the CPU completes the read without an exit, so KVM sees nothing and the count carries on.",
        );
      }
      return verdict(
        wrong,
        "The count measures writes since KVM last used the page, and KVM only uses it on a fault: (a) the fault on 0x405000 went through the PD's shadow page and reset its count (FNAME(fetch) → clear_sp_write_flooding_count), so 3 more writes were needed (write 5); (b) the read of 0x400000 never left the guest, so write 3 still zapped the page.",
      );
    },
  },
  {
    id: "ex7",
    question:
      "On a fresh lab the user program reads 0x400000 and 0x401000. The kernel then maps 0x405000 (PT entry 5, new) and remaps 0x401000 to another frame (PT entry 1), and loads CR3 with the same value. What does that CR3 load cost?",
    form: "{ synced: pages synced, remoteFlushes: remote_tlb_flush_requests, localFlushes: tlb_flush, newRoots: root pages created }",
    grade(answer) {
      const keys = ["synced", "remoteFlushes", "localFlushes", "newRoots"];
      const rec = asRecord(answer, keys);
      if (typeof rec === "string") return { ok: false, message: rec };
      const a = intFields(rec, keys);
      if (typeof a === "string") return { ok: false, message: a };
      // Rules, from the scenario's geometry:
      // - kvm_set_cr3 with an unchanged value keeps the root: no lookup, no new root page;
      // - kvm_invalidate_pcid → KVM_REQ_MMU_SYNC: mmu_sync_children syncs each unsync page (one
      //   per level-1 table written); it write-protects them again first, one remote flush if a
      //   mapping lost W (the window mapped the edited table writable while it was unsync);
      // - kvm_sync_page re-reads the gpte behind every non-zero spte: an entry whose frame changed
      //   is dropped (FNAME(sync_spte)), which needs a second remote flush; entries that had no
      //   spte (never touched) are skipped;
      // - KVM_REQ_TLB_FLUSH_CURRENT: one local flush (kvm_vcpu_flush_tlb_current), which also
      //   serves the remote flush requests made to this vCPU before it enters the guest.
      const touched = [0x400000, 0x401000];
      const edits = [
        { gva: 0x405000, gfn: 0x305 },
        { gva: 0x401000, gfn: 0x301 },
      ];
      const tablesEdited = new Set(edits.map((e) => tableAt(e.gva, 1)));
      const dropsSpte = edits.some((e) => touched.includes(e.gva));
      const expected = {
        synced: tablesEdited.size,
        remoteFlushes: (tablesEdited.size > 0 ? 1 : 0) + (dropsSpte ? 1 : 0),
        localFlushes: 1,
        newRoots: 0,
      };
      const lab = createLab();
      for (const g of touched) lab.touch(g);
      for (const e of edits) {
        const s = archWalk(lab.vm, CR3_A, e.gva).find((x) => x.level === 1)!;
        lab.setGpte(s.tableGfn, s.index, pte(e.gfn));
      }
      const d = delta(lab, () => {
        lab.vcpu.movCr3(CR3_A);
        lab.touch(START);
      });
      const sim = {
        synced: -d.mmu_unsync!,
        remoteFlushes: d.remote_tlb_flush_requests!,
        localFlushes: d.tlb_flush!,
        newRoots: d.mmu_cache_miss!,
      };
      if (keys.some((k) => sim[k as keyof typeof sim] !== expected[k as keyof typeof expected])) {
        return disagree("the CR3 load", sim, expected);
      }
      const wrong: string[] = [];
      if (a.synced !== expected.synced) {
        wrong.push(
          "synced: one page is synced per unsync page under the root; count the tables the kernel edited.",
        );
      }
      if (a.remoteFlushes !== expected.remoteFlushes) {
        wrong.push(
          a.remoteFlushes < expected.remoteFlushes
            ? "remoteFlushes: two things need one each. Making the edited table read-only again is one; what did the sync do to the entry for 0x401000, which KVM had mapped?"
            : "remoteFlushes: entries the guest filled in that KVM never mapped (0x405000) cost nothing: the sync skips empty shadow entries.",
        );
      }
      if (a.localFlushes !== expected.localFlushes) {
        wrong.push(
          a.localFlushes === 0
            ? "localFlushes: every CR3 load flushes this vCPU's TLB (kvm_invalidate_pcid asks for KVM_REQ_TLB_FLUSH_CURRENT, counted in tlb_flush)."
            : "localFlushes: the requests pile up on this vCPU and are served by one local flush when it next enters the guest.",
        );
      }
      if (a.newRoots !== expected.newRoots) {
        wrong.push(
          "newRoots: the value of CR3 did not change, so KVM keeps its current root page.",
        );
      }
      return verdict(
        wrong,
        "The CR3 load kept the root (same value), synced the one unsync page (mmu_sync_children): one remote flush to write-protect the PT again, one because re-reading entry 1 found a new frame and dropped the shadow entry (FNAME(sync_spte)); entry 5 had no shadow entry and cost nothing. One local TLB flush covers this vCPU.",
      );
    },
  },
  {
    id: "ex8",
    question:
      "On a fresh lab the user program reads 0x400000 (address space A, CR3 = 0x100000). The kernel switches to address space B (CR3 = 0x106000: another PML4 whose entry 0 points at the same PDPT), the program reads 0x400000, then the kernel switches back to A and the program reads 0x400000 again. How many new shadow pages (mmu_cache_miss) does each switch-and-read cost?",
    form: "a list of two numbers: [to B, back to A]",
    grade(answer) {
      const given = Array.isArray(answer) ? answer.map((x) => asInt(x, "a page count")) : [];
      if (given.length !== 2 || given.some((x) => typeof x === "string")) {
        return {
          ok: false,
          message: `expected a list of two numbers [to B, back to A], got ${JSON.stringify(answer)}`,
        };
      }
      const [toB, toA] = given as number[];
      // Rules: a shadow page is found by (gfn, role) (kvm_mmu_find_shadow_page); B's walk reads
      // PML4 0x106, new, then the same PDPT/PD/PT with the same rights above them (same role):
      // found. Back to A: A's root waits in prev_roots (kvm_mmu_new_pgd → fast_pgd_switch).
      const vm = createLab().vm;
      const walkA = archWalk(vm, CR3_A, START);
      const walkB = archWalk(vm, CR3_B, START);
      const key = (w: ArchStep[], i: number) =>
        `${w[i]!.level}/${w[i]!.tableGfn}/${accessAbove(w.slice(0, i))}`;
      const seenA = new Set(walkA.map((_, i) => key(walkA, i)));
      const expected = [walkB.filter((_, i) => !seenA.has(key(walkB, i))).length, 0];
      const lab = started();
      const sim = [CR3_B, CR3_A].map(
        (cr3) =>
          delta(lab, () => {
            lab.vcpu.movCr3(cr3);
            lab.touch(START);
          }).mmu_cache_miss,
      );
      if (sim.join() !== expected.join()) return disagree("the two switches", sim, expected);
      const wrong: string[] = [];
      if (toB !== expected[0]) {
        wrong.push(
          toB < expected[0]!
            ? "To B: B's PML4 (0x106) was never shadowed, so its root page must be created."
            : "To B: below its PML4, B's walk reaches the same tables with the same rights above them: KVM finds those shadow pages by (gfn, role) and creates nothing for them.",
        );
      }
      if (toA !== expected[1]) {
        wrong.push(
          "Back to A: A's root page is still in the vCPU's small cache of previous roots (prev_roots); kvm_mmu_new_pgd swaps it back in.",
        );
      }
      return verdict(
        wrong,
        "To B: one new page, B's root; the PDPT below is the same (gfn, role) and is found in KVM's hash (kvm_mmu_find_shadow_page). Back to A: none, A's root comes back from prev_roots (fast_pgd_switch). Shadow pages are shared between address spaces wherever their guest tables are.",
      );
    },
  },
  {
    id: "ex9",
    question:
      "On a fresh lab after the read of 0x400000, the kernel remaps 0x400000 to frame 0x300 (PT entry 0). Which gpa does the program's next read of 0x400000 reach? And after the kernel runs INVLPG 0x400000?",
    form: "{ before: gpa, after: gpa }",
    grade(answer) {
      const rec = asRecord(answer, ["before", "after"]);
      if (typeof rec === "string") return { ok: false, message: rec };
      const a = intFields(rec, ["before", "after"]);
      if (typeof a === "string") return { ok: false, message: a };
      // Rules: the remap is the first write to the PT, which goes unsync (mmu_try_to_unsync_pages)
      // and KVM does not look at what the guest wrote: the old spte stays, as a TLB entry may until
      // the guest invalidates it. INVLPG re-reads that gpte (kvm_sync_spte): the frame changed,
      // the spte is dropped and the next read faults the new mapping in.
      const lab = started();
      const old = archTranslate(lab.vm, CR3_A, START);
      const s = archWalk(lab.vm, CR3_A, START).find((x) => x.level === 1)!;
      lab.setGpte(s.tableGfn, s.index, pte(0x300));
      const now = archTranslate(lab.vm, CR3_A, START);
      const expected = { before: old, after: now };
      const sim = { before: lab.touch(START).gpa, after: 0 as number | undefined };
      lab.vcpu.invlpg(START);
      sim.after = lab.touch(START).gpa;
      if (sim.before !== expected.before || sim.after !== expected.after) {
        return disagree("the reads around INVLPG", sim, expected);
      }
      const wrong: string[] = [];
      if (a.before !== expected.before) {
        wrong.push(
          a.before === expected.after
            ? "before: not yet. The remap was the first write to the PT, which only made its shadow page unsync: KVM let the guest write its table and did not look at the new entry, so the old shadow entry still maps the old frame (as a TLB may keep an old translation until INVLPG)."
            : `before: ${hex(a.before)} is neither the old nor the new frame of 0x400000.`,
        );
      }
      if (a.after !== expected.after) {
        wrong.push(
          a.after === expected.before
            ? "after: INVLPG makes KVM re-read the guest entry for 0x400000 (kvm_mmu_invlpg → kvm_sync_spte); it finds the new frame."
            : `after: ${hex(a.after)} is neither the old nor the new frame of 0x400000.`,
        );
      }
      return verdict(
        wrong,
        "Before INVLPG the read still reaches 0x200000: KVM's shadow entry is as stale as a TLB entry may be. INVLPG 0x400000 makes KVM re-read that one guest entry (kvm_sync_spte), drop the old shadow entry, and the next read maps 0x300000. The x86 rule that the guest must invalidate is what makes unsync safe.",
      );
    },
  },
  {
    id: "ex10",
    question:
      "On a fresh lab the program reads 0x603000, inside the guest's 2 MiB page at 0x600000 (PD entry 3, PS = 1). The host backs guest memory with 4 KiB pages. Which shadow page holds the entry that maps it?",
    form: "{ gfn: number, level: number, direct: boolean }",
    grade(answer) {
      const rec = asRecord(answer, ["gfn", "level", "direct"]);
      if (typeof rec === "string") return { ok: false, message: rec };
      const a = intFields(rec, ["gfn", "level"]);
      if (typeof a === "string") return { ok: false, message: a };
      if (typeof rec.direct !== "boolean")
        return { ok: false, message: `direct is true or false, not ${String(rec.direct)}` };
      // Rules: the guest's leaf is the 2 MiB PDE; with 4 KiB host pages KVM maps 4 KiB
      // (kvm_mmu_hugepage_adjust), so FNAME(fetch) creates a table below the guest's leaf
      // level: a direct page (role.direct, no guest table behind it) keyed by the first gfn of
      // the 2 MiB region (base_gfn rounded down to the level above).
      const gva = 0x603000;
      const walk = archWalk(createLab().vm, CR3_A, gva);
      const leaf = walk[walk.length - 1]!;
      const regionGfn = Number((leaf.gpte & FRAME) >> 12n);
      const expected = {
        gfn: regionGfn - (regionGfn % PT64_ENT_PER_PAGE),
        level: leaf.level - 1,
        direct: true,
      };
      const lab = createLab();
      const before = new Set(live(lab).map((p) => p.id));
      lab.touch(gva);
      const made = live(lab).filter((p) => !before.has(p.id) && p.leaves > 0);
      const sim = made.map((p) => ({ gfn: p.gfn, level: p.level, direct: p.direct }));
      if (sim.length !== 1 || JSON.stringify(sim[0]) !== JSON.stringify(expected)) {
        return disagree("the page mapping 0x603000", sim, expected);
      }
      const wrong: string[] = [];
      if (a.gfn !== expected.gfn) {
        wrong.push(
          a.gfn === Math.floor((regionGfn * 4096 + (gva % (2 * MiB))) / 4096)
            ? "gfn: a direct page is keyed by the first gfn of the region it maps, not by the gfn of the page read."
            : a.gfn === tableAt(gva, 2)
              ? "gfn: that is the guest's PD. The page you want has no guest table behind it."
              : `gfn: ${hex(a.gfn)} is not it; the PDE of 0x600000 says where the guest's 2 MiB page starts.`,
        );
      }
      if (a.level !== expected.level) {
        wrong.push(
          "level: the host has only 4 KiB pages, so KVM maps the guest's 2 MiB page with 4 KiB shadow entries, in a table one level below the guest's leaf.",
        );
      }
      if (rec.direct !== expected.direct) {
        wrong.push(
          "direct: no guest table lies below a 2 MiB PDE; KVM makes this table up from the gfn range alone (role.direct = 1), and has nothing of the guest's to write-protect for it.",
        );
      }
      return verdict(
        wrong,
        "A direct level-1 page keyed by gfn 0x800, the start of the guest's 2 MiB page: the guest's leaf is the PDE, the host pages are 4 KiB, so FNAME(fetch) makes a table below the guest's leaf level with role.direct = 1. Nothing is write-protected for it, and it never goes unsync.",
      );
    },
  },
  {
    id: "ex11",
    question:
      "PD entry 4 points at the same page table (gfn 0x103) as entry 2, but read-only (R/W = 0), so 0x800000 is a read-only alias of 0x400000. On a fresh lab the program reads 0x400000 and 0x800000. How many shadow pages now shadow gfn 0x103, and with which role.access values?",
    form: "{ count: number, access: a list of numbers (ACC_EXEC 1 | ACC_WRITE 2 | ACC_USER 4) }",
    grade(answer) {
      const rec = asRecord(answer, ["count", "access"]);
      if (typeof rec === "string") return { ok: false, message: rec };
      const count = asInt(rec.count, "count");
      if (typeof count === "string") return { ok: false, message: count };
      const access = asNumberList(rec.access, "access values");
      if (typeof access === "string") return { ok: false, message: access };
      // Rules: kvm_mmu_child_role puts the rights of the entries above a table (the walk's
      // pt_access) into role.access, and a page is found by (gfn, role): one page per distinct
      // access among the paths that reach the table.
      const vm = createLab().vm;
      const accs = [0x400000, 0x800000].map((gva) => {
        const w = archWalk(vm, CR3_A, gva);
        return accessAbove(w.slice(0, w.length - 1));
      });
      const expected = [...new Set(accs)];
      const lab = createLab();
      lab.touch(0x400000);
      lab.touch(0x800000);
      const sim = live(lab)
        .filter((p) => p.gfn === tableAt(0x400000, 1))
        .map((p) => p.role.access);
      if (!sameSet(sim, expected)) return disagree("the pages of gfn 0x103", sim, expected);
      const wrong: string[] = [];
      if (count !== expected.length) {
        wrong.push(
          count < expected.length
            ? "count: KVM looks shadow pages up by (gfn, role), and the role holds the rights of the entries above the table; the two PDEs differ in R/W."
            : `count: one page per distinct role: there are ${expected.length > 1 ? "only two paths" : "not that many paths"}.`,
        );
      }
      if (!sameSet(access, expected)) {
        wrong.push(
          "access: for each path AND the rights of PML4E, PDPTE and PDE: W if every R/W is 1, U if every U/S is 1, X unless one has XD. ACC_EXEC is 1, ACC_WRITE 2, ACC_USER 4.",
        );
      }
      return verdict(
        wrong,
        "Two pages for one guest table: role.access 7 (W|U|X, through PD entry 2) and 5 (U|X, through the read-only PD entry 4). The role carries the rights from above (kvm_mmu_child_role), so each copy can give its leaves the right permissions; both write-protect the same gfn.",
      );
    },
  },
  {
    id: "ex12",
    question: `A 32-bit guest (no PAE) has one page directory of 1024 4-byte entries covering 4 GiB; KVM shadows it with pages of 512 8-byte entries. How many shadow pages shadow the guest's page directory (createLab32(), after a read of ${hex(GVA32)}), and which quadrant covers ${hex(GVA32)}?`,
    form: "{ pages: number, quadrant: number }",
    grade(answer) {
      const rec = asRecord(answer, ["pages", "quadrant"]);
      if (typeof rec === "string") return { ok: false, message: rec };
      const a = intFields(rec, ["pages", "quadrant"]);
      if (typeof a === "string") return { ok: false, message: a };
      // Geometry: a 32-bit PDE maps 4 MiB, so the guest PD covers 1024 × 4 MiB; a shadow PD entry
      // maps 2 MiB, so one shadow PD covers 512 × 2 MiB = 1 GiB. mmu_alloc_shadow_roots makes
      // the four pae_root pages at once, quadrant i for the i-th GiB (kvm_mmu_child_role's
      // comment): the quadrant of a gva is its bits 31:30.
      const guestSpan = PT32_ENT_PER_PAGE * 4 * MiB;
      const shadowSpan = PT64_ENT_PER_PAGE * 2 * MiB;
      const expected = { pages: guestSpan / shadowSpan, quadrant: Math.floor(GVA32 / shadowSpan) };
      const lab = createLab32();
      lab.touch(GVA32);
      const pds = live(lab).filter((p) => p.gfn === lab.pdGfn && p.level === 2);
      const used = pds.filter((p) => p.present > 0).map((p) => p.role.quadrant);
      const sim = { pages: pds.length, quadrant: used.length === 1 ? used[0] : used };
      if (sim.pages !== expected.pages || sim.quadrant !== expected.quadrant) {
        return disagree("the 32-bit guest's page directory", sim, expected);
      }
      const wrong: string[] = [];
      if (a.pages !== expected.pages) {
        wrong.push(
          "pages: compare what each covers: the guest PD maps 1024 × 4 MiB; a shadow PD maps 512 entries of 2 MiB.",
        );
      }
      if (a.quadrant !== expected.quadrant) {
        wrong.push(
          "quadrant: it numbers the GiB of the address space that a shadow PD covers, from 0: bits 31:30 of the gva.",
        );
      }
      return verdict(
        wrong,
        "Four pages, quadrants 0–3, one per GiB: a 4-byte guest PDE maps 4 MiB, an 8-byte shadow PDE 2 MiB, so each quarter of the guest PD needs a PD of its own. 0xc0400000 is in the fourth GiB: quadrant 3. Page tables are split the same way, in two halves (quadrant = bit 21 of the gva).",
      );
    },
  },
];

/** The exercises: id, question and answer form, as a table in the notebook. */
export function exercises(): Displayable {
  return exerciseTable(EXERCISES);
}

/**
 * Grades `answer` for exercise `id` ("ex1" … "ex12"). Never throws for a wrong or missing answer:
 * the result says in words what is right or, if not, what is off (without giving the answer).
 * Throws only for an unknown exercise id.
 */
export function check(id: string, answer: unknown): CheckResult {
  return gradeExercise(EXERCISES, id, answer);
}
