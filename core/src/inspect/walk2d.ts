/**
 * The two-dimensional walk (`vcpu.walk2d()`): under EPT the guest walk's tables live in
 * guest-physical memory, so before the CPU can read a guest paging-structure entry it translates
 * the entry's gpa through EPT, and after the guest walk it translates the data's gpa the same
 * way. A walk with g guest levels read from memory and e EPT levels per translation makes
 * (g + 1)(e + 1) − 1 memory references: 24 for 4-level paging on 4-level EPT, fewer where an
 * EPT leaf is huge (the EPT walk of that column stops above level 1). PAE's PDPTEs are registers
 * loaded at MOV CR3, not read by the walk.
 *
 * Built on request, never in hot loops: the real access runs as `vcpu.walk()` runs it (the
 * vCPU's guest walker, its EPT walker, KVM's fault handler on each EPT violation, every counter),
 * over a fresh {@link GuestTables} whose source records each stage-2 access it forwards to the
 * CPU — the EPT path of the table's gpa before and after, and the VM exits taken — so the
 * access pays for no hook. The simulator's table cache would skip the EPT walks of tables read
 * before; the architecture makes them on every walk (the model has no TLB), which is what
 * this view draws.
 */
import { hexNum, splitU64, u64Of, u64Words } from "../arch/addr";
import { PFERR_FETCH_MASK, PFERR_USER_MASK, PFERR_WRITE_MASK } from "../arch/constants";
import type { PagingMode } from "../arch/guest_pte";
import type { CpuMmu } from "../cpu/cpu";
import type { EptWalker } from "../cpu/ept";
import { walk2dBundle } from "../display/bundle";
import type {
  EptAccess,
  EptStep,
  EptTableName,
  LevelName,
  MimeBundle,
  Walk2dColumn,
  Walk2dColumnKind,
  Walk2dPayload,
} from "../display/types";
import { JUPYTER_DISPLAY } from "../display/types";
import { InvalidArgumentError, MmuBugError } from "../errors";
import type { VmMmu } from "../mmu/mmu";
import { GuestTables, recordLevels, type TableSource } from "../mmu/paging_tmpl";
import {
  isAccessAllowed,
  isMmioSpte,
  isShadowPresent,
  SPTE_A,
  SPTE_D,
  spteFlags,
  spteHexLayout,
} from "../mmu/spte";
import type { AccessOk, AccessOptions, FaultResult, KvmVcpu } from "../x86/vcpu";
import { TdpWalk } from "./mmu_introspect";
import { WalkResult, type WalkTraceLevel } from "./walk";

/** One EPT entry of a column's EPT walk, root first. */
export interface EptStepTrace {
  /** EPT level (5 or 4 at the root ... 1). */
  level: number;
  /** Table name (EPT PML4 table, EPT page-directory-pointer table, ...). */
  name: EptTableName;
  /** Shadow page holding the entry, and the entry's index in it. */
  sp: number;
  index: number;
  /** The spte before and after the access (0n: not present). */
  before: bigint;
  after: bigint;
  /** A leaf (at level 2 or 3 a huge one) or an MMIO spte: the walk ends here. */
  leaf: boolean;
  /** Size the leaf maps (bytes), for a present leaf. */
  pageSize?: number;
  /** Number of this memory reference (1-based, in the CPU's order). */
  ref: number;
  /**
   * Not present before the access and present after: a KVM fault installed it, with the A/D
   * bits KVM sets itself (spte.c `make_spte`: A unless prefetched, D with W;
   * `make_nonleaf_spte`: A).
   */
  installed: boolean;
  /** A / D became set in this entry (present before) during the access. */
  aSet: boolean;
  dSet: boolean;
}

/** The EPT violations one guest-physical access took. */
export interface Walk2dViolationTrace {
  /** VM exits (EPT violations or misconfigurations); the CPU retried after each. */
  count: number;
  /** Where the first EPT walk stopped (absent: no EPT root). */
  level?: number;
  name?: EptTableName;
  /** Why it stopped, in words. */
  reason: string;
  /** The error code `handle_ept_violation` derived for the last exit (PFERR bits). */
  errorCode: number;
}

/** One guest-physical access of the walk: a guest table read, a PAE PDPTE register, or the data. */
export interface Walk2dColumnTrace {
  kind: Walk2dColumnKind;
  /** Guest table of the entry read (`PDPTR`: the PAE register), or `data`. */
  name: LevelName | "data";
  /** The gpa translated: the guest entry's, or the data's. */
  gpa: number;
  /** How EPT saw the access (guest table reads are writes with EPT A/D bits). */
  eptAccess?: EptAccess;
  /** The EPT walk that completed the access (or, when it left the guest, the one that exited). */
  ept: EptStepTrace[];
  /** "mmio": the access left the guest (no memslot, or a write to a read-only slot). */
  eptResult?: "mapped" | "mmio";
  /** Host-physical address reached. */
  hpa?: number;
  violation?: Walk2dViolationTrace;
  /** EPT violations of the A/D write-back into this table (EPT without A/D bits: its own write). */
  writeBackViolations: number;
  /** Index of the guest entry in {@link TwoDimWalk.guest}'s levels (gpte and pdptr columns). */
  guestLevel?: number;
  /** Reference number of the guest entry read (absent: a register, or the table had no memslot). */
  guestRef?: number;
}

/** What one stage-2 access of the walk found and did. */
interface Stage2Record {
  gfn: number;
  /** PFERR bits EPT saw. */
  pfec: number;
  /** The EPT path of gfn before and after the access. */
  before: TdpWalk;
  after: TdpWalk;
  /** VM exits it took, and the error code of the last. */
  exits: number;
  exitError: number;
  /** A frame was reached (false: the access left the guest). */
  ok: boolean;
}

/**
 * The guest walk's table source for one 2-D walk: forwards every call to the CPU's
 * ({@link CpuMmu}) and records each stage-2 access.
 */
class RecordingSource implements TableSource {
  readonly fills: Stage2Record[] = [];
  readonly writeBacks: Stage2Record[] = [];
  constructor(
    private readonly cpu: CpuMmu,
    private readonly observe: (gfn: number, pfec: number, run: () => boolean) => Stage2Record,
  ) {}

  fillTable(t: GuestTables, gfn: number, c: number): boolean {
    const r = this.observe(gfn, this.cpu.tableAccess, () => this.cpu.fillTable(t, gfn, c));
    this.fills.push(r);
    return r.ok;
  }

  tableWritable(gfn: number): boolean {
    const r = this.observe(gfn, PFERR_WRITE_MASK | PFERR_USER_MASK, () =>
      this.cpu.tableWritable(gfn),
    );
    this.writeBacks.push(r);
    return r.ok;
  }

  markTableDirty(gfn: number): void {
    this.cpu.markTableDirty(gfn);
  }

  notifyPteWrite(gpa: number, bytes: number): void {
    this.cpu.notifyPteWrite(gpa, bytes);
  }
}

const PAGE = 4096;

/** An entry the CPU can use or report: present, or an MMIO spte (EPT misconfiguration). */
const isThere = (lo: number) => isShadowPresent(lo) || isMmioSpte(lo);

function eptAccessOf(pfec: number): EptAccess {
  return (pfec & PFERR_WRITE_MASK) !== 0
    ? "write"
    : (pfec & PFERR_FETCH_MASK) !== 0
      ? "fetch"
      : "read";
}

/**
 * Where and why the first EPT walk of `r` stopped: the first entry that is not present, an MMIO
 * spte (vmx.c `handle_ept_misconfig`), or lacks the right the access needs (EPT rights combine
 * over the levels; vmx.c `handle_ept_violation` then exits to `kvm_mmu_page_fault`).
 */
function violationOf(r: Stage2Record): Walk2dViolationTrace | undefined {
  if (r.exits === 0) return undefined;
  const access = eptAccessOf(r.pfec);
  const stop = r.before.steps.find(
    (s) =>
      isMmioSpte(s.lo) ||
      !isShadowPresent(s.lo) ||
      !isAccessAllowed(s.lo, access === "write", access === "fetch"),
  );
  const base = { count: r.exits, errorCode: r.exitError };
  if (stop === undefined) {
    return r.before.steps.length === 0
      ? { ...base, reason: "no EPT root loaded" }
      : { ...base, reason: "EPT violation (the entries allowed the access before it)" };
  }
  const where = { level: stop.level, name: stop.name as EptTableName };
  if (isMmioSpte(stop.lo))
    return { ...base, ...where, reason: "EPT misconfiguration: MMIO spte (no memslot)" };
  if (!isShadowPresent(stop.lo)) return { ...base, ...where, reason: "EPT entry not present" };
  return {
    ...base,
    ...where,
    reason: `EPT ${stop.leaf ? "leaf" : "entry"} does not allow ${access}`,
  };
}

/**
 * The 2-D walk of one access (`vcpu.walk2d()`): per guest-physical access (each guest table read,
 * top first, then the data) the EPT walk that translated it, with reference numbers in the order
 * the CPU made them, the A/D bits set and the EPT violations taken; the guest dimension is
 * {@link guest}, the walk `vcpu.walk()` gives. Immutable; built only on request.
 */
export class TwoDimWalk {
  /** Guest paging mode. */
  readonly mode: PagingMode;
  /** EPT levels (4, or 5 for a MAXPHYADDR above 48). */
  readonly eptLevels: 4 | 5;
  /** EPTP bit 6 (`features.eptAccessDirty`): the CPU sets EPT A/D; guest table reads are writes. */
  readonly eptAccessDirty: boolean;
  /** The linear address walked. */
  readonly gva: bigint;
  /** The access (PFERR bits W/U/F). */
  readonly accessBits: number;
  /** The guest dimension: levels, A/D bits, result (as `vcpu.walk()` reports it). */
  readonly guest: WalkResult;
  /** The guest-physical accesses in the CPU's order. */
  readonly columns: readonly Walk2dColumnTrace[];
  /** Memory references of the walk (EPT entries and guest entries read). */
  readonly references: number;
  /** EPT violations and misconfigurations (VM exits to KVM) the access took. */
  readonly violations: number;
  private readonly spteLayout: "modern" | "v4";

  /** @internal Built by {@link walk2d}. */
  constructor(
    vmMmu: VmMmu,
    eptAccessDirty: boolean,
    guest: WalkResult,
    columns: Walk2dColumnTrace[],
    violations: number,
  ) {
    this.mode = guest.mode;
    this.eptLevels = vmMmu.rootLevel as 4 | 5;
    this.eptAccessDirty = eptAccessDirty;
    this.gva = guest.gva;
    this.accessBits = guest.accessBits;
    this.guest = guest;
    this.columns = columns;
    let n = 0;
    for (const c of columns) n += c.ept.length + (c.guestRef !== undefined ? 1 : 0);
    this.references = n;
    this.violations = violations;
    this.spteLayout = vmMmu.spteLayout;
  }

  /** Whether the access faulted (#PF, or #GP for a non-canonical address). */
  get fault(): boolean {
    return this.guest.fault;
  }

  /** The gpa of the access (success only). */
  get gpa(): number | undefined {
    return this.guest.gpa;
  }

  /** A / D bits set during the access: in guest entries, and in EPT entries present before. */
  get adSet(): { guestA: number; guestD: number; eptA: number; eptD: number } {
    const out = { guestA: 0, guestD: 0, eptA: 0, eptD: 0 };
    for (const l of this.guest.levels) {
      if (l.aSet) out.guestA++;
      if (l.dSet) out.guestD++;
    }
    for (const c of this.columns) {
      for (const s of c.ept) {
        if (s.aSet) out.eptA++;
        if (s.dSet) out.eptD++;
      }
    }
    return out;
  }

  /** The `application/vnd.mmulab.walk2d+json` payload (schema definitions.walk2d). */
  toPayload(): Walk2dPayload {
    const g = this.guest.toPayload();
    const hex = (v: bigint) => {
      const w = u64Words(v);
      return spteHexLayout(w.lo, w.hi, false, this.spteLayout);
    };
    const columns: Walk2dColumn[] = this.columns.map((c) => {
      const ept: EptStep[] = c.ept.map((s) => {
        const after = u64Words(s.after);
        const out: EptStep = {
          level: s.level,
          name: s.name,
          index: s.index,
          sp: s.sp,
          before: hex(s.before),
          after: hex(s.after),
          flags: spteFlags(after.lo, after.hi, s.level) as EptStep["flags"],
          leaf: s.leaf,
          ref: s.ref,
        };
        if (s.pageSize !== undefined) out.pageSize = s.pageSize as EptStep["pageSize"];
        if (s.installed) out.installed = true;
        if (s.aSet) out.aSet = true;
        if (s.dSet) out.dSet = true;
        return out;
      });
      const col: Walk2dColumn = { kind: c.kind, name: c.name, gpa: hexNum(c.gpa), ept };
      if (c.eptAccess !== undefined) col.eptAccess = c.eptAccess;
      if (c.eptResult !== undefined) col.eptResult = c.eptResult;
      if (c.hpa !== undefined) col.hpa = hexNum(c.hpa);
      if (c.violation !== undefined) col.violation = { ...c.violation };
      if (c.writeBackViolations > 0) col.writeBackViolations = c.writeBackViolations;
      if (c.guestLevel !== undefined) col.guest = g.levels[c.guestLevel]!;
      if (c.guestRef !== undefined) col.guestRef = c.guestRef;
      if (c.kind === "pdptr") col.note = "PDPTE register, loaded at MOV CR3: no memory reference";
      else if (c.kind === "gpte" && c.guestRef === undefined)
        col.note = "no memslot backs this table: the guest walk fails";
      return col;
    });
    return {
      version: 1,
      kind: "walk2d",
      mode: this.mode,
      eptLevels: this.eptLevels,
      eptAccessDirty: this.eptAccessDirty,
      gva: g.gva,
      access: g.access,
      columns,
      references: this.references,
      violations: this.violations,
      result: g.result,
    };
  }

  /** Jupyter display: the walk2d MIME bundle (rich payload + HTML + text). */
  [JUPYTER_DISPLAY](): MimeBundle {
    return walk2dBundle(this.toPayload());
  }

  /** One line: geometry, references, violations, result. */
  toString(): string {
    const head = this.guest.fault
      ? `fault vector ${this.guest.vector} error 0x${this.guest.errorCode!.toString(16)}`
      : `gpa ${hexNum(this.guest.gpa!)}${this.guest.mmio ? " (MMIO)" : ""}`;
    const v = this.violations;
    return `walk2d ${this.mode} guest on ${this.eptLevels}-level EPT, gva 0x${this.gva.toString(16)}: ${this.references} memory references, ${v} EPT violation${v === 1 ? "" : "s"}; ${head}`;
  }
}

/**
 * The EPT steps of record `r`, numbered from `ref` + 1: the walk that completed the access, or
 * when it left the guest the walk that exited; each entry with its value before and after.
 */
function eptSteps(r: Stage2Record, ref: number): EptStepTrace[] {
  const shown = r.ok ? r.after : r.before;
  const other = r.ok ? r.before : r.after;
  return shown.steps.map((s) => {
    const o = other.steps.find((x) => x.level === s.level && x.sp === s.sp && x.index === s.index);
    const bLo = r.ok ? (o?.lo ?? 0) : s.lo;
    const bHi = r.ok ? (o?.hi ?? 0) : s.hi;
    const aLo = r.ok ? s.lo : (o?.lo ?? s.lo);
    const aHi = r.ok ? s.hi : (o?.hi ?? s.hi);
    const was = isThere(bLo);
    const step: EptStepTrace = {
      level: s.level,
      name: s.name as EptTableName,
      sp: s.sp,
      index: s.index,
      before: u64Of(bHi, bLo),
      after: u64Of(aHi, aLo),
      leaf: s.leaf,
      ref: ++ref,
      installed: !was && isThere(aLo),
      aSet: was && (bLo & SPTE_A) === 0 && (aLo & SPTE_A) !== 0,
      dSet: was && (bLo & SPTE_D) === 0 && (aLo & SPTE_D) !== 0,
    };
    if (s === shown.steps[shown.steps.length - 1] && shown.outcome === "mapped")
      step.pageSize = shown.pageSize;
    return step;
  });
}

/** A column from the stage-2 record of its access. */
function column(
  kind: Walk2dColumnKind,
  name: LevelName | "data",
  gpa: number,
  r: Stage2Record,
  ref: number,
): Walk2dColumnTrace {
  const ept = eptSteps(r, ref);
  const col: Walk2dColumnTrace = {
    kind,
    name,
    gpa,
    eptAccess: eptAccessOf(r.pfec),
    ept,
    eptResult: r.ok ? "mapped" : "mmio",
    writeBackViolations: 0,
  };
  if (r.ok && r.after.pfn >= 0) col.hpa = r.after.pfn * PAGE + (gpa % PAGE);
  const v = violationOf(r);
  if (v !== undefined) col.violation = v;
  return col;
}

/**
 * `vcpu.walk2d(gva, opts)`: make the access (as `vcpu.walk()` does) and return its 2-D walk.
 * @throws InvalidArgumentError for a VM without EPT (shadow paging, `mmu: "none"`), a bad gva
 *   or bad access options — before anything runs.
 */
export function walk2d(vcpu: KvmVcpu, gva: number | bigint, opts?: AccessOptions): TwoDimWalk {
  const vmMmu = vcpu.vmMmu;
  if (vmMmu === null || vmMmu.shadowPaging) {
    throw new InvalidArgumentError(
      "mmu",
      vmMmu === null ? "none" : "shadow",
      vmMmu === null
        ? '"tdp": the 2-D walk nests the guest walk in EPT walks, and without KVM\'s MMU there is no second stage (use vcpu.walk())'
        : '"tdp": the 2-D walk nests the guest walk in EPT walks; under shadow paging the CPU walks KVM\'s shadow tables by gva, one dimension (use vcpu.walk())',
    );
  }
  const g = splitU64("gva", gva, { hi: 0, lo: 0 });
  const access = vcpu.accessBits(opts);
  const mode = vcpu.pagingMode;
  const gvaBig = u64Of(g.hi, g.lo);
  const eptAccessDirty = vcpu.kvm.features.eptAccessDirty;
  const cpu = vcpu.cpu;
  const ept = cpu.ept as EptWalker;
  if (!vcpu.gvaOk(g.hi, gva)) {
    const gp = new WalkResult(mode, gvaBig, access, vcpu.gpFault(), vcpu.walker, false);
    return new TwoDimWalk(vmMmu, eptAccessDirty, gp, [], 0);
  }
  const path = (gfn: number) => new TdpWalk(vmMmu, gfn * PAGE, vcpu.mmu.root);
  const observe = (gfn: number, pfec: number, run: () => boolean): Stage2Record => {
    const before = path(gfn);
    const exits = ept.exits;
    const ok = run();
    return {
      gfn,
      pfec,
      before,
      after: path(gfn),
      exits: ept.exits - exits,
      exitError: ept.exitError,
      ok,
    };
  };
  const exits0 = ept.exits;
  const source = new RecordingSource(cpu, observe);
  let gpa: number;
  if (mode === "none") {
    // Paging off: the gva is the gpa, no guest table is read.
    gpa = vcpu.walkGva(g.hi, g.lo, access);
  } else {
    // vcpu.walkGva over a table cache of this walk's own (so every table is filled, through EPT).
    const tables = new GuestTables(source, vcpu, vcpu.kvm.memory);
    vcpu.enterGuest();
    vcpu.stat.walks++;
    const ok = vcpu.walkAddr(vcpu.walker, vcpu.mmu, tables, g.hi, g.lo, access);
    gpa = ok ? vcpu.walker.gpa : -1;
    recordLevels(vcpu.walker, vcpu.mmu, tables, g.hi, g.lo);
  }
  let data: Stage2Record | undefined;
  let result: AccessOk | FaultResult;
  if (gpa < 0) result = vcpu.pageFault();
  else {
    let r: AccessOk | undefined;
    data = observe(
      Math.floor(gpa / PAGE),
      access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK),
      () => {
        r = vcpu.finish(gpa, access);
        return r.mmio !== true;
      },
    );
    result = r!;
  }
  const guest = new WalkResult(mode, gvaBig, access, result, vcpu.walker, mode !== "none");

  // Columns: each guest level read from memory gets the fill of its table; a table this walk
  // read before (two levels in one frame) is in the walk's cache, but the CPU translates its gpa
  // again: the same EPT walk, which changes nothing now.
  const columns: Walk2dColumnTrace[] = [];
  let ref = 0;
  let next = 0;
  const lastOf = new Map<number, Stage2Record>();
  guest.levels.forEach((l: WalkTraceLevel, i) => {
    if (l.name === "PDPTR") {
      columns.push({
        kind: "pdptr",
        name: "PDPTR",
        gpa: l.pteGpa,
        ept: [],
        writeBackViolations: 0,
        guestLevel: i,
      });
      return;
    }
    let r = source.fills[next];
    if (r !== undefined && r.gfn === l.tableGfn) next++;
    else {
      const seen = lastOf.get(l.tableGfn);
      if (seen === undefined)
        throw new MmuBugError(
          "walk2d",
          `no stage-2 access recorded for table gfn ${hexNum(l.tableGfn)}`,
        );
      r = { ...seen, before: seen.after, exits: 0 };
    }
    lastOf.set(l.tableGfn, r);
    const col = column("gpte", l.name, l.pteGpa, r, ref);
    ref += col.ept.length;
    col.guestLevel = i;
    if (r.ok) col.guestRef = ++ref;
    columns.push(col);
  });
  if (next !== source.fills.length)
    throw new MmuBugError(
      "walk2d",
      `${source.fills.length - next} table fills not matched to a level`,
    );
  // A/D write-backs that needed a stage-2 write of their own: top to leaf, as the walker makes them.
  let from = 0;
  for (const wb of source.writeBacks) {
    const k = columns.findIndex(
      (c, j) => j >= from && c.kind === "gpte" && Math.floor(c.gpa / PAGE) === wb.gfn,
    );
    if (k < 0)
      throw new MmuBugError("walk2d", `A/D write-back to gfn ${hexNum(wb.gfn)} outside the walk`);
    columns[k]!.writeBackViolations += wb.exits;
    from = k;
  }
  if (data !== undefined) columns.push(column("data", "data", gpa, data, ref));
  let counted = 0;
  for (const c of columns) counted += (c.violation?.count ?? 0) + c.writeBackViolations;
  const violations = ept.exits - exits0;
  if (counted !== violations)
    throw new MmuBugError(
      "walk2d",
      `${violations} EPT exits, ${counted} attributed to the walk's accesses`,
    );
  return new TwoDimWalk(vmMmu, eptAccessDirty, guest, columns, violations);
}
