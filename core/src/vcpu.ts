/**
 * A virtual CPU (`struct kvm_vcpu`): control registers, CPL, RFLAGS.AC, PKRU, the per-vCPU MMU
 * context for the guest walk, and the access API.
 *
 * Register loads are checked the way `KVM_SET_SREGS` (`kvm_is_valid_sregs`, `kvm_set_cr0/cr4`)
 * and the CPU check them; an invalid combination throws {@link GeneralProtectionError} (#GP) or
 * {@link InvalidArgumentError} and leaves every register as it was.
 */
import { hexNum, splitReg, splitU64, type U64Parts } from "./addr";
import {
  EFER_LMA,
  EFER_LME,
  EFER_NX,
  EFER_SCE,
  GP_VECTOR,
  PAGE_SIZE,
  PF_VECTOR,
  PFERR_FETCH_MASK,
  PFERR_IMPLICIT_ACCESS,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
  X86_CR0_AM,
  X86_CR0_CD,
  X86_CR0_EM,
  X86_CR0_ET,
  X86_CR0_MP,
  X86_CR0_NE,
  X86_CR0_NW,
  X86_CR0_PE,
  X86_CR0_PG,
  X86_CR0_TS,
  X86_CR0_WP,
  X86_CR4_LA57,
  X86_CR4_PAE,
  X86_CR4_PCIDE,
  X86_CR4_PKE,
  X86_CR4_PSE,
  X86_CR4_SMAP,
  X86_CR4_SMEP,
  X86_EFLAGS_FIXED,
} from "./constants";
import { JUPYTER_DISPLAY, type MimeBundle } from "./display";
import { GeneralProtectionError, InvalidArgumentError } from "./errors";
import { type PagingMode, pdptrReservedMask, reservedMasks, rootLevelOf } from "./guest_pte";
import { vcpuBundle, vcpuString } from "./machine_display";
import {
  GuestMmuContext,
  GuestWalker,
  STAGE2_MMIO,
  type WalkAddrFn,
  type WalkerEnv,
  WalkResult,
} from "./paging_tmpl";
import { walkAddrFor } from "./paging_tmpl_w07";
import { updatePermissionBitmask, updatePkruBitmask } from "./permission";
import type { Vm } from "./vm";

/** Register values accepted by {@link Vcpu.setSregs}; omitted fields keep their value. */
export interface SregsInput {
  cr0?: number | bigint;
  cr3?: number | bigint;
  cr4?: number | bigint;
  efer?: number | bigint;
  /** Current privilege level 0..3 (CS.DPL). */
  cpl?: number;
}

/** Register state as returned by {@link Vcpu.getSregs}. */
export interface Sregs {
  cr0: number;
  cr3: number;
  cr4: number;
  efer: number;
  cpl: number;
}

/** Access kind for {@link Vcpu.access}. */
export interface AccessOptions {
  /** A write (store). */
  write?: boolean;
  /** An instruction fetch. */
  fetch?: boolean;
  /** Made at CPL 3 (default: true iff the vCPU's CPL is 3). */
  user?: boolean;
  /**
   * An implicit supervisor access (descriptor tables, ...): SMAP applies regardless of
   * RFLAGS.AC. Requires `user` false. A supervisor access (`user: false`) made while the CPL is
   * 3 is always implicit.
   */
  implicit?: boolean;
}

/** Result of {@link Vcpu.access}. */
export type AccessResult =
  | { fault: false; gpa: number; mmio?: true }
  | { fault: true; vector: 13 | 14; errorCode: number };

/** CR0 bits KVM accepts (others are reserved: #GP). */
const CR0_KNOWN =
  (X86_CR0_PE |
    X86_CR0_MP |
    X86_CR0_EM |
    X86_CR0_TS |
    X86_CR0_ET |
    X86_CR0_NE |
    X86_CR0_WP |
    X86_CR0_AM |
    X86_CR0_NW |
    X86_CR0_CD |
    X86_CR0_PG) >>>
  0;
/** CR4 bits that exist without a feature check: VME..OSXMMEXCPT, UMIP, VMXE, SMXE, FSGSBASE, PCIDE, OSXSAVE. */
const CR4_BASE =
  (0x7ff | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 16) | X86_CR4_PCIDE | (1 << 18)) >>> 0;
/** EFER bits accepted: SCE, LME, LMA, NXE, SVME, LMSLE, FFXSR, TCE. */
const EFER_KNOWN =
  EFER_SCE | EFER_LME | EFER_LMA | EFER_NX | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15);

/**
 * Per-vCPU counters. The plain fields are counted by the vCPU; the guest walker's counters
 * (incremented in the walk loop itself) are read through prototype getters. Own properties stay
 * plain numbers: getters as own properties made `stat.walks++` in the access path ~8 % slower.
 */
export class VcpuStat {
  walks = 0;
  pf_guest = 0;
  gp_guest = 0;
  mmio_exits = 0;
  walk_not_present = 0;
  walk_access_error = 0;
  walk_rsvd = 0;
  invlpg = 0;
  readonly #w: GuestWalker;

  constructor(w: GuestWalker) {
    this.#w = w;
  }

  /** Guest PTEs read by walks (one per level reached). */
  get gpte_reads(): number {
    return this.#w.gpteReads;
  }
  /** A/D write-backs into guest PTEs (an entry written twice in one walk counts twice). */
  get gpte_ad_writes(): number {
    return this.#w.gpteAdWrites;
  }
  /** "w07a": D bits set in the step after the walk (also counted in gpte_ad_writes). */
  get gpte_d_writes_after_walk(): number {
    return this.#w.gpteDWritesAfterWalk;
  }
  /** Guest-table mappings held across walker levels, at most (1 for "w07a", else 0). */
  get mappings_held_max(): number {
    return this.#w.mappingsHeldMax;
  }

  /** Plain-object copy of every counter (own fields and walker counters). */
  toJSON(): Record<string, number> {
    return {
      ...(this as unknown as Record<string, number>),
      gpte_reads: this.gpte_reads,
      gpte_ad_writes: this.gpte_ad_writes,
      gpte_d_writes_after_walk: this.gpte_d_writes_after_walk,
      mappings_held_max: this.mappings_held_max,
    };
  }
}

/** A virtual CPU. Create with `vm.createVcpu()`. */
export class Vcpu implements WalkerEnv {
  readonly vm: Vm;
  readonly id: number;
  private cr0 = X86_CR0_ET; // reset value has ET set (0x10)
  private cr3Hi = 0;
  private cr3Lo = 0;
  private cr4 = 0;
  private efer = 0;
  private cpl = 0;
  /** RFLAGS (bit 1 always set). */
  rflags = X86_EFLAGS_FIXED;
  /** PKRU register. */
  pkru = 0;
  /** Guest-walk MMU context (rebuilt on every register change). */
  readonly mmu = new GuestMmuContext();
  /** The reusable walker state of the last walk. */
  readonly walker = new GuestWalker();
  /** Per-vCPU counters (KVM names where they exist; the walker's as in spec §13.2). */
  readonly stat = new VcpuStat(this.walker);
  /** The guest walker of the VM's `features.guestWalker` flavour, chosen once. */
  private readonly walkAddr: WalkAddrFn;
  /** WalkerEnv: writable flag of the last stage-2 translation. */
  writable = false;
  private readonly scratch: U64Parts = { hi: 0, lo: 0 };
  private readonly scratch2: U64Parts = { hi: 0, lo: 0 };

  constructor(vm: Vm, id: number) {
    this.vm = vm;
    this.id = id;
    this.walkAddr = walkAddrFor(vm.guestWalker);
    this.rebuildMmu();
  }

  /** WalkerEnv: the backing memory. */
  get memory() {
    return this.vm.memory;
  }

  /** WalkerEnv: stage-2 translation on behalf of this vCPU. */
  translate(gpa: number, pfec: number, final: boolean): number {
    const s2 = this.vm.stage2;
    const r = s2.translate(this, gpa, pfec, final);
    this.writable = s2.writable;
    return r;
  }

  /** WalkerEnv: dirty-log a gpte A/D write-back. */
  markPageDirty(gfn: number): void {
    this.vm.markPageDirty(gfn);
  }

  /** WalkerEnv: the 2.6.23–25 walker's `kvm_mmu_pte_write` after it set D in a gpte. */
  notifyPteWrite(gpa: number, bytes: number): void {
    this.vm.stage2.trackWrite?.(this, gpa, bytes);
  }

  /** Current paging mode. */
  get pagingMode(): PagingMode {
    return this.modeOf(this.cr0, this.cr4, this.efer);
  }

  private modeOf(cr0: number, cr4: number, efer: number): PagingMode {
    if ((cr0 & X86_CR0_PG) === 0) return "none";
    if ((cr4 & X86_CR4_PAE) === 0) return "32-bit";
    if ((efer & EFER_LMA) === 0) return "pae";
    return (cr4 & X86_CR4_LA57) !== 0 ? "5-level" : "4-level";
  }

  /** Current register values. */
  getSregs(): Sregs {
    return {
      cr0: this.cr0 >>> 0,
      cr3: this.cr3Hi * 2 ** 32 + this.cr3Lo,
      cr4: this.cr4 >>> 0,
      efer: this.efer >>> 0,
      cpl: this.cpl,
    };
  }

  /**
   * `KVM_SET_SREGS` for the paging registers. Validates the whole combination first; throws
   * {@link GeneralProtectionError} for combinations the CPU refuses with #GP (e.g. CR0.PG without
   * CR0.PE, long mode without CR4.PAE, a PAE PDPTE with reserved bits) and
   * {@link InvalidArgumentError} for malformed values, changing nothing.
   *
   * EFER.LMA follows the CPU: it is set when EFER.LME and CR0.PG are both set (the CPU activates
   * IA-32e mode when paging is enabled with LME), and giving LMA without them is refused.
   * In PAE mode the four PDPTEs are loaded from CR3 now, as MOV CR3 does.
   */
  setSregs(s: SregsInput): void {
    if (s === null || typeof s !== "object")
      throw new InvalidArgumentError("sregs", s, "an object { cr0?, cr3?, cr4?, efer?, cpl? }");
    for (const k of Object.keys(s)) {
      if (!["cr0", "cr3", "cr4", "efer", "cpl"].includes(k))
        throw new InvalidArgumentError("sregs", k, "keys cr0, cr3, cr4, efer, cpl");
    }
    const f = this.vm.features;
    let cr0 = this.cr0 >>> 0;
    let cr4 = this.cr4 >>> 0;
    let efer = this.efer >>> 0;
    let cr3Hi = this.cr3Hi;
    let cr3Lo = this.cr3Lo;
    let cpl = this.cpl;
    if (s.cr0 !== undefined) {
      const v = splitReg("cr0", s.cr0, this.scratch);
      if (v.hi !== 0 || (v.lo & ~CR0_KNOWN) !== 0)
        throw new GeneralProtectionError(
          "cr0",
          s.cr0,
          `only defined bits (mask ${hexNum(CR0_KNOWN)}); bits 63:32 and the rest are reserved (#GP)`,
        );
      cr0 = v.lo >>> 0;
    }
    if (s.cr4 !== undefined) {
      const v = splitReg("cr4", s.cr4, this.scratch);
      let allowed = CR4_BASE;
      if (f.la57) allowed |= X86_CR4_LA57;
      if (f.smep) allowed |= X86_CR4_SMEP;
      if (f.smap) allowed |= X86_CR4_SMAP;
      if (f.pku) allowed |= X86_CR4_PKE;
      allowed >>>= 0;
      if (v.hi !== 0 || (v.lo & ~allowed) !== 0) {
        throw new GeneralProtectionError(
          "cr4",
          s.cr4,
          `bits of mask ${hexNum(allowed)} (reserved or unsupported-feature bits give #GP)`,
        );
      }
      cr4 = v.lo >>> 0;
    }
    if (s.efer !== undefined) {
      const v = splitReg("efer", s.efer, this.scratch);
      const allowed = f.nx ? EFER_KNOWN : EFER_KNOWN & ~EFER_NX;
      if (v.hi !== 0 || (v.lo & ~allowed) !== 0) {
        throw new InvalidArgumentError(
          "efer",
          s.efer,
          `bits of mask ${hexNum(allowed)}${f.nx ? "" : " (NX is not supported by this VM)"}`,
        );
      }
      efer = v.lo >>> 0;
    }
    if (s.cpl !== undefined) {
      if (typeof s.cpl !== "number" || !Number.isInteger(s.cpl) || s.cpl < 0 || s.cpl > 3)
        throw new InvalidArgumentError("cpl", s.cpl, "0, 1, 2 or 3");
      cpl = s.cpl;
    }
    if (s.cr3 !== undefined) {
      const v = splitU64("cr3", s.cr3, this.scratch2);
      cr3Hi = v.hi;
      cr3Lo = v.lo >>> 0;
    }
    const pg = (cr0 & X86_CR0_PG) !== 0;
    if ((cr0 & X86_CR0_NW) !== 0 && (cr0 & X86_CR0_CD) === 0)
      throw new GeneralProtectionError(
        "cr0",
        s.cr0 ?? cr0,
        "CR0.NW only together with CR0.CD (#GP)",
      );
    if (pg && (cr0 & X86_CR0_PE) === 0)
      throw new GeneralProtectionError(
        "cr0",
        s.cr0 ?? cr0,
        "CR0.PG only together with CR0.PE (#GP)",
      );
    const lme = (efer & EFER_LME) !== 0;
    if (lme && pg && (cr4 & X86_CR4_PAE) === 0) {
      throw new GeneralProtectionError(
        "cr4",
        s.cr4 ?? cr4,
        "CR4.PAE set when EFER.LME and CR0.PG are set (long mode needs PAE, #GP)",
      );
    }
    if ((efer & EFER_LMA) !== 0 && !(lme && pg)) {
      throw new InvalidArgumentError(
        "efer",
        s.efer ?? efer,
        "EFER.LMA only with EFER.LME and CR0.PG (KVM_SET_SREGS: -EINVAL)",
        "EINVAL",
      );
    }
    if (lme && pg) efer |= EFER_LMA;
    const longMode = (efer & EFER_LMA) !== 0;
    if ((cr4 & X86_CR4_PCIDE) !== 0 && !longMode)
      throw new GeneralProtectionError("cr4", s.cr4 ?? cr4, "CR4.PCIDE only in long mode (#GP)");
    const mode = this.modeOf(cr0, cr4, efer);
    const maxPhys = this.vm.maxPhysAddrBits;
    // CR3 checks by mode.
    if (longMode) {
      const limitHi = 2 ** (maxPhys - 32);
      if (cr3Hi >= limitHi) {
        throw new GeneralProtectionError(
          "cr3",
          s.cr3 ?? cr3Hi * 2 ** 32 + cr3Lo,
          `an address below 2^${maxPhys} (bits MAXPHYADDR..63 are reserved in long mode, #GP)`,
        );
      }
    } else if (cr3Hi !== 0) {
      throw new GeneralProtectionError(
        "cr3",
        s.cr3 ?? cr3Hi * 2 ** 32 + cr3Lo,
        "a 32-bit value outside long mode (#GP)",
      );
    }
    // PAE: load the PDPTEs (load_pdptrs) now; a reserved bit in a present PDPTE is #GP.
    const pdLo = new Uint32Array(4);
    const pdHi = new Uint32Array(4);
    const pdptGpa = (cr3Lo & ~31) >>> 0;
    // A CPL-only change loads no control register, so the PDPTE registers keep their values.
    const loadsControlRegs =
      s.cr0 !== undefined || s.cr3 !== undefined || s.cr4 !== undefined || s.efer !== undefined;
    const reloadPdptrs = mode === "pae" && loadsControlRegs;
    if (reloadPdptrs) {
      const rsvd = pdptrReservedMask(maxPhys);
      const hvfn = this.vm.stage2.translate(this, pdptGpa, 0, false);
      if (hvfn === STAGE2_MMIO) {
        throw new GeneralProtectionError(
          "cr3",
          s.cr3 ?? cr3Lo,
          `a PDPT inside a memslot (PDPT gpa ${hexNum(pdptGpa)} is not backed; #GP)`,
        );
      }
      const base = pdptGpa % PAGE_SIZE;
      for (let i = 0; i < 4; i++) {
        const lo = this.vm.memory.read32(hvfn, base + i * 8);
        const hi = this.vm.memory.read32(hvfn, base + i * 8 + 4);
        if ((lo & 1) !== 0 && ((lo & rsvd.lo) !== 0 || (hi & rsvd.hi) !== 0)) {
          throw new GeneralProtectionError(
            "cr3",
            s.cr3 ?? cr3Lo,
            `PDPTEs without reserved bits: PDPTE[${i}] at ${hexNum(pdptGpa + i * 8)} = 0x${hi.toString(16)}${lo.toString(16).padStart(8, "0")} sets reserved bits (#GP at CR3 load)`,
          );
        }
        pdLo[i] = lo;
        pdHi[i] = hi;
      }
    }
    // Commit.
    this.cr0 = cr0;
    this.cr4 = cr4;
    this.efer = efer;
    this.cr3Hi = cr3Hi;
    this.cr3Lo = cr3Lo;
    this.cpl = cpl;
    this.rebuildMmu();
    if (reloadPdptrs || mode !== "pae") {
      this.mmu.pdptrLo.set(pdLo);
      this.mmu.pdptrHi.set(pdHi);
      this.mmu.pdptGpa = pdptGpa;
    }
  }

  /** MOV to CR3: same checks as the CR3 part of {@link setSregs} (PAE reloads the PDPTEs). */
  movCr3(cr3: number | bigint): void {
    this.setSregs({ cr3 });
  }

  /** Set the current privilege level. */
  setCpl(cpl: number): void {
    this.setSregs({ cpl });
  }

  /** WRPKRU. */
  setPkru(pkru: number | bigint): void {
    const v = splitReg("pkru", pkru, this.scratch);
    if (v.hi !== 0) throw new InvalidArgumentError("pkru", pkru, "a 32-bit value");
    this.pkru = v.lo >>> 0;
  }

  /** Set RFLAGS (only AC matters to the MMU). Bit 1 is forced to 1 as on hardware; other reserved bits are refused. */
  setRflags(rflags: number | bigint): void {
    const v = splitReg("rflags", rflags, this.scratch);
    // Reserved: bits 3, 5, 15, 22..63.
    const reserved = (1 << 3) | (1 << 5) | (1 << 15) | ~0x3fffff;
    if (v.hi !== 0 || (v.lo & reserved) !== 0)
      throw new InvalidArgumentError(
        "rflags",
        rflags,
        "RFLAGS without reserved bits 3, 5, 15, 22..63",
      );
    this.rflags = (v.lo | X86_EFLAGS_FIXED) >>> 0;
  }

  /** `kvm_init_mmu`: rebuild the walk context from the registers. */
  private rebuildMmu(): void {
    const m = this.mmu;
    const mode = this.pagingMode;
    const f = this.vm.features;
    m.rootLevel = rootLevelOf(mode);
    m.cr3Hi = this.cr3Hi;
    m.cr3Lo = this.cr3Lo;
    // KVM keeps efer_nx in the cpu role for every paging mode (it decides PFERR_FETCH even for
    // 32-bit paging); the 32-bit PTE format simply has no NX bit to check.
    const nx = (this.efer & EFER_NX) !== 0 && mode !== "none";
    m.nx = nx;
    m.smep = (this.cr4 & X86_CR4_SMEP) !== 0;
    m.pse = (this.cr4 & X86_CR4_PSE) !== 0;
    m.pse36 = f.pse36;
    const r = reservedMasks(mode, this.vm.maxPhysAddrBits, nx, m.pse, f);
    m.rsvdLo.set(r.lo);
    m.rsvdHi.set(r.hi);
    const wp = (this.cr0 & X86_CR0_WP) !== 0;
    m.wp = wp;
    updatePermissionBitmask(m.permissions, {
      cr0Wp: wp,
      efeNx: nx,
      smep: m.smep,
      smap: (this.cr4 & X86_CR4_SMAP) !== 0,
    });
    m.pkruMask = updatePkruBitmask(
      (this.cr4 & X86_CR4_PKE) !== 0,
      mode === "4-level" || mode === "5-level",
      wp,
    );
  }

  /** Parse access options into PFERR bits. */
  private accessBits(opts: AccessOptions | undefined): number {
    if (opts === undefined) return this.cpl === 3 ? PFERR_USER_MASK : 0;
    if (opts === null || typeof opts !== "object")
      throw new InvalidArgumentError(
        "access",
        opts,
        "an object { write?, fetch?, user?, implicit? }",
      );
    // for-in over own keys: the same checks as Object.keys without an array per access.
    for (const k in opts) {
      if (!Object.hasOwn(opts, k)) continue;
      if (k !== "write" && k !== "fetch" && k !== "user" && k !== "implicit")
        throw new InvalidArgumentError("access", k, "keys write, fetch, user, implicit");
      const v = (opts as Record<string, unknown>)[k];
      if (v !== undefined && typeof v !== "boolean")
        throw new InvalidArgumentError(`access.${k}`, v, "true, false or undefined");
    }
    if (opts.write && opts.fetch)
      throw new InvalidArgumentError("access", opts, "at most one of write and fetch");
    const user = opts.user ?? (this.cpl === 3 && !opts.implicit);
    if (user && opts.implicit)
      throw new InvalidArgumentError(
        "access",
        opts,
        "implicit accesses are supervisor accesses (user must be false)",
      );
    // A supervisor-mode access made while CPL = 3 is implicit by definition (SDM vol. 3 §4.6).
    const implicit = opts.implicit === true || (!user && this.cpl === 3);
    return (
      (opts.write ? PFERR_WRITE_MASK : 0) |
      (opts.fetch ? PFERR_FETCH_MASK : 0) |
      (user ? PFERR_USER_MASK : 0) |
      (implicit ? PFERR_IMPLICIT_ACCESS : 0)
    );
  }

  /**
   * Check a gva for the current mode: returns false if it is non-canonical (#GP). Throws if the
   * value cannot be a linear address of the mode at all (above 2^32 outside long mode).
   */
  private gvaOk(hi: number, raw: unknown): boolean {
    switch (this.mmu.rootLevel) {
      case 4: {
        const top = hi >>> 15; // bits 63:47 must all equal bit 47
        return top === 0 || top === 0x1ffff;
      }
      case 5: {
        const top = hi >>> 24; // bits 63:56
        return top === 0 || top === 0xff;
      }
      default:
        if (hi !== 0)
          throw new InvalidArgumentError(
            "gva",
            raw,
            "a 32-bit linear address (the vCPU is not in long mode)",
          );
        return true;
    }
  }

  /**
   * Hot path: translate gva halves for PFERR access bits. Returns the gpa (>= 0), -1 for a #PF
   * (error code in `walker.errorCode`), -13 for #GP (non-canonical). No allocation; does not
   * consult stage 2 for the final gpa.
   */
  translateGva(hi: number, lo: number, access: number): number {
    const rl = this.mmu.rootLevel;
    if (rl >= 4) {
      const top = rl === 4 ? hi >>> 15 : hi >>> 24;
      if (top !== 0 && top !== (rl === 4 ? 0x1ffff : 0xff)) return -13;
    }
    this.stat.walks++;
    if (rl === 0) return lo >>> 0;
    if (this.walkAddr(this.walker, this.mmu, this, hi, lo, access)) return this.walker.gpa;
    return -1;
  }

  /**
   * A guest access at `gva` (number or bigint): walks the guest tables, sets A/D, then takes
   * the gpa through stage 2. Returns `{fault:false, gpa}` (plus `mmio:true` when no memslot backs
   * the gpa — an MMIO exit), `{fault:true, vector:14, errorCode}` for a page fault, or
   * `{fault:true, vector:13, errorCode:0}` for a non-canonical address.
   */
  access(gva: number | bigint, opts?: AccessOptions): AccessResult {
    const g = splitU64("gva", gva, this.scratch);
    const access = this.accessBits(opts);
    if (!this.gvaOk(g.hi, gva)) {
      this.stat.gp_guest++;
      return { fault: true, vector: GP_VECTOR, errorCode: 0 };
    }
    const r = this.translateGva(g.hi, g.lo, access);
    if (r < 0) return this.pageFault();
    return this.finish(r, access);
  }

  private pageFault(): AccessResult {
    const w = this.walker;
    this.stat.pf_guest++;
    if (w.failure === 3) this.stat.walk_access_error++;
    else if (w.failure === 2) this.stat.walk_rsvd++;
    else this.stat.walk_not_present++;
    return { fault: true, vector: PF_VECTOR, errorCode: w.errorCode };
  }

  private finish(gpa: number, access: number): AccessResult {
    if (
      this.translate(
        gpa,
        access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK),
        true,
      ) === STAGE2_MMIO
    ) {
      this.stat.mmio_exits++;
      return { fault: false, gpa, mmio: true };
    }
    return { fault: false, gpa };
  }

  /**
   * Like {@link access}, but returns a {@link WalkResult} with the per-level trace (table gfn,
   * index, entry gpa, value before/after, A/D set) and the final rights. Not for hot loops.
   */
  walk(gva: number | bigint, opts?: AccessOptions): WalkResult {
    const g = splitU64("gva", gva, this.scratch);
    const access = this.accessBits(opts);
    const mode = this.pagingMode;
    const gvaBig = (BigInt(g.hi) << 32n) | BigInt(g.lo >>> 0);
    if (!this.gvaOk(g.hi, gva)) {
      this.stat.gp_guest++;
      return new WalkResult(
        mode,
        gvaBig,
        access,
        { fault: true, vector: GP_VECTOR, errorCode: 0 },
        this.walker,
        false,
      );
    }
    const r = this.translateGva(g.hi, g.lo, access);
    const result = r < 0 ? this.pageFault() : this.finish(r, access);
    return new WalkResult(mode, gvaBig, access, result, this.walker, mode !== "none");
  }

  /** Guest INVLPG. No TLB is modelled under the bare walker; the stage-2 MMU may react. */
  invlpg(gva: number | bigint): void {
    const g = splitU64("gva", gva, this.scratch);
    this.stat.invlpg++;
    this.vm.stage2.invlpg?.(this, g.hi, g.lo);
  }

  /** One line: id, paging mode, CPL, CR3. */
  toString(): string {
    return vcpuString(this);
  }

  /** Jupyter display: paging mode, CR0/CR3/CR4/EFER with set bits named, CPL, RFLAGS.AC, PKRU. */
  [JUPYTER_DISPLAY](): MimeBundle {
    return vcpuBundle(this);
  }
}
