/**
 * A virtual CPU (`struct kvm_vcpu`): the paging registers with the checks of `KVM_SET_SREGS`
 * (x86.c `kvm_is_valid_sregs`, `kvm_set_cr0/cr4`), CPL, RFLAGS.AC and PKRU; its MMU context
 * (`vcpu->arch.mmu`, rebuilt by `kvm_init_mmu` on every paging-register change); and the access
 * API, which runs one guest access on the simulated CPU (cpu/) and handles the VM exits it takes.
 *
 * An invalid register combination throws {@link GeneralProtectionError} (#GP) or
 * {@link InvalidArgumentError} and leaves every register as it was.
 */
import { hexNum, splitReg, splitU64, type U64Parts } from "../arch/addr";
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
  X86_CR4_SMAP,
  X86_CR4_SMEP,
  X86_EFLAGS_FIXED,
} from "../arch/constants";
import { type PagingMode, pagingModeOf, pdptrReservedMask } from "../arch/guest_pte";
import { CpuMmu, STAGE2_MMIO } from "../cpu/cpu";
import { GeneralProtectionError, InvalidArgumentError, MmuBugError, refuseFrozen } from "../errors";
import type { KvmDirtyRing } from "../kvm/dirty_ring";
import {
  IN_GUEST_MODE,
  KVM_REQ_DIRTY_RING_SOFT_FULL,
  KVM_REQ_MMU_SYNC,
  KVM_REQ_TLB_FLUSH,
  type Kvm,
  type KvmVcpuCommon,
  OUTSIDE_GUEST_MODE,
} from "../kvm/kvm_main";
import { VcpuStat } from "../kvm/stats";
import { kvmInitMmu, type VmMmu } from "../mmu/mmu";
import { KvmMmu, RET_PF_EMULATE } from "../mmu/mmu_internal";
import {
  GuestWalker,
  type ShadowWalkCtx,
  WALK_ACCESS,
  WALK_RSVD,
  type WalkAddrFn,
  walkAddrFor,
} from "../mmu/paging_tmpl";

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

/**
 * The exception a guest access takes: #GP (13) for a non-canonical address, else #PF (14).
 * Every result type names every key (absent ones as `?: undefined`), so that a notebook can read
 * `r.gpa` or `r.value` without narrowing first (tslab does not check in strict mode).
 */
export type FaultResult = {
  fault: true;
  vector: 13 | 14;
  errorCode: number;
  gpa?: undefined;
  mmio?: undefined;
  value?: undefined;
  exit?: undefined;
};

/**
 * The vCPU did not run: its dirty ring is soft-full (`KVM_EXIT_DIRTY_RING_FULL`). Harvest it
 * (`vcpu.dirtyRing.harvest()`), call `vm.resetDirtyRings()`, and run the access again.
 */
export type DirtyRingFullExit = {
  fault: false;
  exit: "dirty_ring_full";
  gpa?: undefined;
  mmio?: undefined;
  value?: undefined;
  vector?: undefined;
  errorCode?: undefined;
};

/** A completed access: the gpa, and `mmio` when it left the guest for userspace. */
export type AccessOk = {
  fault: false;
  gpa: number;
  mmio?: true;
  vector?: undefined;
  errorCode?: undefined;
  exit?: undefined;
};

/** Result of {@link Vcpu.access}. */
export type AccessResult = AccessOk | FaultResult | DirtyRingFullExit;

/** Options of the data instructions {@link KvmVcpu.read}, {@link KvmVcpu.write}, {@link KvmVcpu.fetch}. */
export interface DataAccessOptions {
  /** Operand size in bytes: 1, 2, 4 or 8 (default 8). */
  size?: 1 | 2 | 4 | 8;
  /** Made at CPL 3 (default: true iff the vCPU's CPL is 3). */
  user?: boolean;
  /** An implicit supervisor access (see {@link AccessOptions.implicit}). */
  implicit?: boolean;
}

/**
 * Result of {@link KvmVcpu.read} and {@link KvmVcpu.fetch}: the value read (little-endian, as an
 * unsigned bigint of `size` bytes), an MMIO exit (nothing read), or the fault the guest takes.
 */
export type ReadResult =
  | {
      fault: false;
      gpa: number;
      value: bigint;
      mmio?: undefined;
      vector?: undefined;
      errorCode?: undefined;
      exit?: undefined;
    }
  | {
      fault: false;
      gpa: number;
      mmio: true;
      value?: undefined;
      vector?: undefined;
      errorCode?: undefined;
      exit?: undefined;
    }
  | FaultResult
  | DirtyRingFullExit;

/** The one result of a soft-full dirty ring (shared: it carries nothing else). */
const RING_FULL: DirtyRingFullExit = Object.freeze({ fault: false, exit: "dirty_ring_full" });

/** Operand sizes of the data instructions. */
const DATA_SIZES: readonly number[] = [1, 2, 4, 8];

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

/** A boolean option's allowed values. */
function isFlag(v: unknown): boolean {
  return v === undefined || v === true || v === false;
}

/** A virtual CPU (the model; notebooks get the `Vcpu` of `vm.createVcpu()`). */
/**
 * Refuses a frozen vCPU, or a vCPU of a frozen VM, before a method changes anything
 * (errors.ts, `refuseFrozen`).
 */
export function refuseFrozenVcpu(vcpu: KvmVcpu): void {
  refuseFrozen(vcpu, "vcpu");
  refuseFrozen(vcpu.kvm, "vm");
}

export class KvmVcpu implements KvmVcpuCommon {
  /** The VM (its generic part). */
  readonly kvm: Kvm;
  readonly id: number;
  /** `vcpu->mode`: in guest mode from the first access until {@link pause}. */
  mode = OUTSIDE_GUEST_MODE;
  /** `vcpu->requests`: KVM_REQ_* bits, handled at the next guest entry. */
  requests = 0;
  /** `vcpu->dirty_ring` with KVM_CAP_DIRTY_LOG_RING (harvest it, then `vm.resetDirtyRings()`). */
  dirtyRing: KvmDirtyRing | null = null;
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
  /** The reusable walker state of the last walk. */
  readonly walker = new GuestWalker();
  /** Per-vCPU counters (KVM's names where KVM has the counter). */
  readonly stat = new VcpuStat(this.walker);
  /** `vcpu->arch.mmu`: the MMU context (`struct kvm_mmu`), rebuilt on every register change. */
  readonly mmu: KvmMmu;
  /** The VM's MMU, or null on the bare machine (`mmu: "none"`). */
  readonly vmMmu: VmMmu | null;
  /** The simulated CPU's translation hardware for this vCPU. */
  readonly cpu: CpuMmu;
  /** @internal The guest walker of the VM's `features.guestWalker` flavour, chosen once. */
  readonly walkAddr: WalkAddrFn;
  private readonly scratch: U64Parts = { hi: 0, lo: 0 };
  private readonly scratch2: U64Parts = { hi: 0, lo: 0 };
  /** Shadow paging: what `FNAME(page_fault)` uses of this vCPU (walker, table frames, walk). */
  private readonly shadowCtx: ShadowWalkCtx;
  /** Shadow paging: the last {@link walkGva} ended in instruction emulation (a trapped write). */
  private emulated = false;

  constructor(kvm: Kvm, vmMmu: VmMmu | null, id: number) {
    this.kvm = kvm;
    this.vmMmu = vmMmu;
    this.id = id;
    this.mmu = new KvmMmu(id, this.stat);
    this.cpu = new CpuMmu(kvm, vmMmu, this.mmu, this, this);
    this.walkAddr = walkAddrFor(kvm.features.guestWalker);
    this.shadowCtx = { w: this.walker, t: this.cpu.tables, walkAddr: this.walkAddr };
    this.rebuildMmu();
  }

  /** Current paging mode. */
  get pagingMode(): PagingMode {
    return pagingModeOf(this.cr0, this.cr4, this.efer);
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
    refuseFrozenVcpu(this);
    if (s === null || typeof s !== "object" || Array.isArray(s))
      throw new InvalidArgumentError("sregs", s, "an object { cr0?, cr3?, cr4?, efer?, cpl? }");
    for (const k of Object.keys(s)) {
      if (!["cr0", "cr3", "cr4", "efer", "cpl"].includes(k))
        throw new InvalidArgumentError("sregs", k, "keys cr0, cr3, cr4, efer, cpl");
    }
    const f = this.kvm.features;
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
    const mode = pagingModeOf(cr0, cr4, efer);
    const maxPhys = this.kvm.maxPhysAddrBits;
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
    // PAE: load the PDPTEs (load_pdptrs) now; a reserved bit in a present PDPTE is #GP. KVM reads
    // them from guest memory itself (kvm_vcpu_read_guest_page): no EPT access, no fault.
    const pdLo = new Uint32Array(4);
    const pdHi = new Uint32Array(4);
    const pdptGpa = (cr3Lo & ~31) >>> 0;
    // A CPL-only change loads no control register, so the PDPTE registers keep their values.
    const loadsControlRegs =
      s.cr0 !== undefined || s.cr3 !== undefined || s.cr4 !== undefined || s.efer !== undefined;
    const reloadPdptrs = mode === "pae" && loadsControlRegs;
    if (reloadPdptrs) {
      const rsvd = pdptrReservedMask(maxPhys);
      const pdptSlot = this.kvm.memslots.gfnToSlot(Math.floor(pdptGpa / PAGE_SIZE));
      if (pdptSlot === undefined) {
        throw new GeneralProtectionError(
          "cr3",
          s.cr3 ?? cr3Lo,
          `a PDPT inside a memslot (PDPT gpa ${hexNum(pdptGpa)} is not backed; #GP)`,
        );
      }
      const hvfn = pdptSlot.hvfn(Math.floor(pdptGpa / PAGE_SIZE));
      const base = pdptGpa % PAGE_SIZE;
      for (let i = 0; i < 4; i++) {
        const lo = this.kvm.memory.read32(hvfn, base + i * 8);
        const hi = this.kvm.memory.read32(hvfn, base + i * 8 + 4);
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
    // Under shadow paging a MOV CR3 switches roots (kvm_mmu_new_pgd, then KVM_REQ_MMU_SYNC);
    // any other paging-register change resets the MMU context (kvm_mmu_reset_context).
    const onlyCr3 = s.cr0 === undefined && s.cr4 === undefined && s.efer === undefined;
    const shadowRoots = this.vmMmu?.shadowPaging === true && loadsControlRegs;
    const cr3Changed = cr3Hi !== this.cr3Hi || cr3Lo !== this.cr3Lo;
    // Commit.
    this.cr0 = cr0;
    this.cr4 = cr4;
    this.efer = efer;
    this.cr3Hi = cr3Hi;
    this.cr3Lo = cr3Lo;
    this.cpl = cpl;
    this.rebuildMmu();
    if (shadowRoots) {
      // KVM_SET_SREGS and CR writes run on this vCPU's thread (vcpu_load makes it the running
      // vCPU): what the MMU marks dirty meanwhile goes to this vCPU's dirty ring.
      const kvm = this.kvm;
      const prev = kvm.running;
      kvm.running = this;
      try {
        if (onlyCr3) {
          // kvm_set_cr3 calls kvm_mmu_new_pgd only for a new value (a reload keeps the root and
          // its flooding count); special roots (pae_root, none yet) are looked up again as before.
          if (cr3Changed || this.mmu.root < 0)
            this.vmMmu!.newPgd(this.mmu, cr3Hi * 1048576 + (cr3Lo >>> 12));
          // kvm_invalidate_pcid (the model has no CR3 NOFLUSH bit: every load flushes): a sync of
          // the roots (KVM_REQ_MMU_SYNC) and KVM_REQ_TLB_FLUSH_CURRENT, which
          // kvm_vcpu_flush_tlb_current counts in tlb_flush.
          this.requests |= KVM_REQ_MMU_SYNC | KVM_REQ_TLB_FLUSH;
        } else this.vmMmu!.unloadRoots(this.mmu);
      } finally {
        kvm.running = prev;
      }
    }
    if (reloadPdptrs || mode !== "pae") {
      this.mmu.pdptrLo.set(pdLo);
      this.mmu.pdptrHi.set(pdHi);
      this.mmu.pdptGpa = pdptGpa;
    }
  }

  /** MOV to CR3: same checks as the CR3 part of {@link setSregs} (PAE reloads the PDPTEs). */
  movCr3(cr3: number | bigint): void {
    refuseFrozenVcpu(this);
    // An omitted field of setSregs keeps its value; here the value is the whole argument.
    if (cr3 === undefined) throw new InvalidArgumentError("cr3", cr3, "a number or bigint");
    this.setSregs({ cr3 });
  }

  /** Set the current privilege level. */
  setCpl(cpl: number): void {
    refuseFrozenVcpu(this);
    if (cpl === undefined) throw new InvalidArgumentError("cpl", cpl, "0, 1, 2 or 3");
    this.setSregs({ cpl });
  }

  /** WRPKRU. */
  setPkru(pkru: number | bigint): void {
    refuseFrozenVcpu(this);
    const v = splitReg("pkru", pkru, this.scratch);
    if (v.hi !== 0) throw new InvalidArgumentError("pkru", pkru, "a 32-bit value");
    this.pkru = v.lo >>> 0;
  }

  /** Set RFLAGS (only AC matters to the MMU). Bit 1 is forced to 1 as on hardware; other reserved bits are refused. */
  setRflags(rflags: number | bigint): void {
    refuseFrozenVcpu(this);
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

  /** `kvm_init_mmu`: rebuild the MMU context from the registers. */
  private rebuildMmu(): void {
    const regs = {
      cr0: this.cr0,
      cr3Hi: this.cr3Hi,
      cr3Lo: this.cr3Lo,
      cr4: this.cr4,
      efer: this.efer,
    };
    kvmInitMmu(this.mmu, regs, this.kvm.features, this.kvm.maxPhysAddrBits, this.vmMmu);
  }

  /** @internal Parse access options into PFERR bits (errors from {@link badAccess}). */
  accessBits(opts: AccessOptions | undefined): number {
    if (opts === undefined) return this.cpl === 3 ? PFERR_USER_MASK : 0;
    if (opts === null || typeof opts !== "object" || Array.isArray(opts))
      return this.badAccess(opts);
    // Every enumerable key must be one of the four (for-in: no array per access).
    for (const k in opts) {
      if (k !== "write" && k !== "fetch" && k !== "user" && k !== "implicit")
        return this.badAccess(opts);
    }
    const write = opts.write;
    const fetch = opts.fetch;
    const implicitOpt = opts.implicit;
    let user = opts.user;
    if (!isFlag(write) || !isFlag(fetch) || !isFlag(user) || !isFlag(implicitOpt))
      return this.badAccess(opts);
    if (write === true && fetch === true) return this.badAccess(opts);
    if (user === undefined) user = this.cpl === 3 && implicitOpt !== true;
    else if (user && implicitOpt === true) return this.badAccess(opts);
    // A supervisor-mode access made while CPL = 3 is implicit by definition (x86 SMAP rules).
    const implicit = implicitOpt === true || (!user && this.cpl === 3);
    return (
      (write === true ? PFERR_WRITE_MASK : 0) |
      (fetch === true ? PFERR_FETCH_MASK : 0) |
      (user ? PFERR_USER_MASK : 0) |
      (implicit ? PFERR_IMPLICIT_ACCESS : 0)
    );
  }

  /** The error for access options {@link accessBits} refused (kept out of its hot path). */
  private badAccess(opts: unknown): never {
    if (opts === null || typeof opts !== "object" || Array.isArray(opts))
      throw new InvalidArgumentError(
        "access",
        opts,
        "an object { write?, fetch?, user?, implicit? }",
      );
    for (const k in opts) {
      if (k !== "write" && k !== "fetch" && k !== "user" && k !== "implicit")
        throw new InvalidArgumentError("access", k, "keys write, fetch, user, implicit");
    }
    const o = opts as AccessOptions;
    for (const k of ["write", "fetch", "user", "implicit"] as const) {
      if (!isFlag(o[k]))
        throw new InvalidArgumentError(`access.${k}`, o[k], "true, false or undefined");
    }
    if (o.write && o.fetch)
      throw new InvalidArgumentError("access", opts, "at most one of write and fetch");
    throw new InvalidArgumentError(
      "access",
      opts,
      "implicit accesses are supervisor accesses (user must be false)",
    );
  }

  /**
   * @internal Check a gva for the current mode: returns false if it is non-canonical (#GP).
   * Throws if the value cannot be a linear address of the mode at all (above 2^32 outside long
   * mode).
   */
  gvaOk(hi: number, raw: unknown): boolean {
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
        return hi === 0 || this.notLinear(raw);
    }
  }

  /** The error for a gva above 2^32 outside long mode (kept out of {@link gvaOk}, inlined). */
  private notLinear(raw: unknown): never {
    throw new InvalidArgumentError(
      "gva",
      raw,
      "a 32-bit linear address (the vCPU is not in long mode)",
    );
  }

  /**
   * @internal Guest entry (`vcpu_enter_guest`): pending requests, the root (`kvm_mmu_reload`), guest mode;
   * and the CPU learns which table frames it cached are still exact.
   */
  enterGuest(): void {
    if (this.vmMmu !== null && (this.requests !== 0 || this.mmu.root === -1))
      this.serviceRequests();
    if (this.mode !== IN_GUEST_MODE) this.mode = IN_GUEST_MODE;
    this.cpu.refreshTables();
  }

  /** The slow part of {@link enterGuest}, kept apart so that the check above stays inlined. */
  private serviceRequests(): void {
    // vcpu_enter_guest runs on this vCPU's CPU, outside guest mode: a flush it causes kicks
    // nobody here.
    this.mode = OUTSIDE_GUEST_MODE;
    const kvm = this.kvm;
    const prev = kvm.running;
    kvm.running = this;
    try {
      this.vmMmu!.enterGuest(this, this.mmu);
    } finally {
      kvm.running = prev;
    }
  }

  /**
   * `vcpu.pause()`: the vCPU leaves guest mode (its thread returned to userspace, as when KVM_RUN
   * exits) until its next access. Remote TLB flushes do not need to kick a paused vCPU, so they
   * count in `remote_tlb_flush_requests` but not in `remote_tlb_flush`.
   */
  pause(): void {
    refuseFrozenVcpu(this);
    this.mode = OUTSIDE_GUEST_MODE;
    // Leaving the guest is a VM exit: the PML buffer goes to the dirty log.
    this.cpu.ept?.flushPml();
  }

  /**
   * A guest load of `opts.size` bytes (default 8) at `gva`: the walk as {@link access} makes it
   * (A set), stage 2, then the bytes from guest memory, little-endian. A load that crosses into
   * the next page translates both pages first, as the CPU does, and faults on either. Under TDP a
   * data page never touched faults in through an EPT violation, as with {@link access}.
   */
  read(gva: number | bigint, opts?: DataAccessOptions): ReadResult {
    refuseFrozenVcpu(this);
    return this.dataAccess("read", gva, undefined, opts, 0) as ReadResult;
  }

  /**
   * A guest instruction fetch of `opts.size` bytes (default 8) at `gva`: {@link read} with the
   * access's fetch bit (NX, SMEP apply).
   */
  fetch(gva: number | bigint, opts?: DataAccessOptions): ReadResult {
    refuseFrozenVcpu(this);
    return this.dataAccess("fetch", gva, undefined, opts, PFERR_FETCH_MASK) as ReadResult;
  }

  /**
   * A guest store of `value` (an unsigned integer of `opts.size` bytes, default 8) at `gva`: the
   * walk with the write bit (A and D set on success), stage 2 for a write (under TDP a
   * write-protected spte takes its EPT violation, which is where dirty logging sees the page),
   * then the bytes into guest memory. Both pages of a store that crosses a page are translated
   * before anything is written. A store to a read-only memslot is an MMIO exit: nothing is
   * written. The CPU tells no one of its stores (KVM does not see them under EPT).
   */
  write(gva: number | bigint, value: number | bigint, opts?: DataAccessOptions): AccessResult {
    refuseFrozenVcpu(this);
    return this.dataAccess("write", gva, value, opts, PFERR_WRITE_MASK) as AccessResult;
  }

  /**
   * The data instructions: parse everything first (nothing changes on bad input), then run.
   * Returns a {@link ReadResult} for loads and fetches, an {@link AccessResult} for stores.
   */
  private dataAccess(
    op: "read" | "fetch" | "write",
    gva: number | bigint,
    value: number | bigint | undefined,
    opts: DataAccessOptions | undefined,
    kind: number,
  ): ReadResult | AccessResult {
    const size = this.dataSize(op, opts);
    const g = splitU64("gva", gva, this.scratch);
    const hi = g.hi;
    const lo = g.lo;
    let vHi = 0;
    let vLo = 0;
    if (op === "write") {
      const v = splitU64("value", value, this.scratch2);
      vHi = v.hi;
      vLo = v.lo >>> 0;
      if (size < 8 && (vHi !== 0 || (size < 4 && vLo >= 2 ** (8 * size))))
        throw new InvalidArgumentError(
          "value",
          value,
          `an unsigned ${8 * size}-bit integer (0 to 2^${8 * size} - 1) for size ${size}`,
        );
    }
    const access =
      kind |
      this.accessBits(
        opts === undefined ? undefined : { user: opts.user, implicit: opts.implicit },
      );
    if ((this.requests & KVM_REQ_DIRTY_RING_SOFT_FULL) !== 0 && this.ringFull()) return RING_FULL;
    if (!this.gvaOk(hi, gva)) return this.gpFault();
    // The bytes' pages: the first, and the next when the operand crosses into it (the CPU
    // translates both before it writes anything).
    const off = lo & 0xfff;
    const split = off + size > PAGE_SIZE;
    const gpa0 = this.walkGva(hi, lo, access);
    if (gpa0 < 0) return this.pageFault();
    const hvfn0 = this.stage2Final(gpa0, access);
    const emul0 = this.emulated;
    let emul1 = false;
    let gpa1 = 0;
    let hvfn1 = STAGE2_MMIO;
    if (split) {
      // The next page's address. At 4 GiB it carries into the high half in long mode (and may
      // leave the canonical range: #GP); a 32-bit linear address wraps to 0.
      const nextLo = ((lo >>> 0) - off + PAGE_SIZE) >>> 0;
      const nextHi = nextLo === 0 && this.mmu.rootLevel >= 4 ? (hi + 1) >>> 0 : hi;
      if (!this.gvaOk(nextHi, gva)) return this.gpFault();
      gpa1 = this.walkGva(nextHi, nextLo, access);
      if (gpa1 < 0) return this.pageFault();
      hvfn1 = this.stage2Final(gpa1, access);
      emul1 = this.emulated;
    }
    if (hvfn0 === STAGE2_MMIO || (split && hvfn1 === STAGE2_MMIO)) {
      this.stat.mmio_exits++;
      return { fault: false, gpa: gpa0, mmio: true };
    }
    const memory = this.kvm.memory;
    let rLo = 0;
    let rHi = 0;
    for (let i = 0; i < size; i++) {
      const o = off + i;
      const hvfn = o < PAGE_SIZE ? hvfn0 : hvfn1;
      const byteOff = o < PAGE_SIZE ? o : o - PAGE_SIZE;
      const shift = (i & 3) * 8;
      if (op === "write") {
        memory.write8(hvfn, byteOff, ((i < 4 ? vLo : vHi) >>> shift) & 0xff);
      } else if (i < 4) {
        rLo |= memory.read8(hvfn, byteOff) << shift;
      } else {
        rHi |= memory.read8(hvfn, byteOff) << shift;
      }
    }
    if (op === "write") {
      const n0 = split ? PAGE_SIZE - off : size;
      // KVM emulates the whole store when either page needs it (x86_emulate_instruction), and
      // emulator_read_write writes it one page at a time: each part is tracked.
      if (emul0 || emul1) {
        this.trackEmulatedWrite(gpa0, n0);
        if (split) this.trackEmulatedWrite(gpa1, size - n0);
      }
      return { fault: false, gpa: gpa0 };
    }
    return {
      fault: false,
      gpa: gpa0,
      value: (BigInt(rHi >>> 0) << 32n) | BigInt(rLo >>> 0),
    };
  }

  /** @internal Stage 2 of the access's own page at `gpa`: the host frame, or STAGE2_MMIO. */
  stage2Final(gpa: number, access: number): number {
    // Shadow paging: the CPU's walk (or the emulator) found the host frame already.
    if (this.mmu.shadowPaging) return this.cpu.shadowHvfn;
    const pfec = access & (PFERR_WRITE_MASK | PFERR_USER_MASK | PFERR_FETCH_MASK);
    return this.cpu.stage2(Math.floor(gpa / PAGE_SIZE), pfec, true);
  }

  /**
   * The operand size of a data instruction's options, after checking every key and flag (errors
   * name the bad key or value; `user` with `implicit` is refused by {@link accessBits}).
   */
  private dataSize(op: string, opts: DataAccessOptions | undefined): number {
    if (opts === undefined) return 8;
    if (opts === null || typeof opts !== "object" || Array.isArray(opts))
      throw new InvalidArgumentError(op, opts, "an options object { size, user, implicit }");
    for (const k in opts) {
      if (k !== "size" && k !== "user" && k !== "implicit")
        throw new InvalidArgumentError(`${op} option`, k, "keys size, user, implicit");
    }
    const size = opts.size === undefined ? 8 : opts.size;
    if (!DATA_SIZES.includes(size as number))
      throw new InvalidArgumentError(`${op}.size`, opts.size, "1, 2, 4 or 8 (bytes)");
    for (const k of ["user", "implicit"] as const) {
      if (!isFlag(opts[k]))
        throw new InvalidArgumentError(`${op}.${k}`, opts[k], "true, false or undefined");
    }
    return size as number;
  }

  /**
   * Hot path: translate gva halves for PFERR access bits. Returns the gpa (>= 0), -1 for a #PF
   * (error code in `walker.errorCode`), -13 for #GP (non-canonical). No allocation; does not take
   * the final gpa through stage 2.
   */
  translateGva(hi: number, lo: number, access: number): number {
    const rl = this.mmu.rootLevel;
    if (rl >= 4) {
      const top = rl === 4 ? hi >>> 15 : hi >>> 24;
      if (top !== 0 && top !== (rl === 4 ? 0x1ffff : 0xff)) return -13;
    }
    return this.walkGva(hi, lo, access);
  }

  /** @internal {@link translateGva} for a gva already checked canonical. */
  walkGva(hi: number, lo: number, access: number): number {
    const rl = this.mmu.rootLevel;
    this.enterGuest();
    this.stat.walks++;
    if (this.mmu.shadowPaging) return this.shadowWalk(hi, lo, access);
    if (rl === 0) return lo >>> 0;
    if (this.walkAddr(this.walker, this.mmu, this.cpu.tables, hi, lo, access) === true)
      return this.walker.gpa;
    return -1;
  }

  /**
   * Shadow paging: the CPU walks KVM's shadow tables; each #PF it takes is a VM exit to
   * `kvm_mmu_page_fault` (`FNAME(page_fault)`), after which the guest runs the access again.
   * Returns the gpa, or -1 when the guest gets the #PF (`pf_guest`; error code in the walker).
   * An access KVM must emulate (a write to a write-protected guest table, MMIO) is translated by
   * the emulator's guest walk ({@link emulate}).
   */
  private shadowWalk(hi: number, lo: number, access: number): number {
    const mmu = this.mmu;
    const cpu = this.cpu;
    this.emulated = false;
    for (let n = 0; ; n++) {
      const gpa = cpu.shadowTranslate(hi, lo, access);
      if (gpa >= 0) return gpa;
      if (n >= 8)
        throw new MmuBugError(
          "kvm_mmu_page_fault",
          `gva 0x${(hi * 4294967296 + lo).toString(16)}: still faulting (error 0x${cpu.hwError.toString(16)}) after ${n} exits`,
        );
      // The exit is handled on this vCPU's thread: kvm_get_running_vcpu() is this vCPU, so the
      // pages KVM dirties meanwhile (gpte A/D write-back, a leaf made writable, an emulated
      // store) go to its dirty ring (mark_page_dirty_in_slot), and a flush does not kick it.
      const kvm = this.kvm;
      const prev = kvm.running;
      kvm.running = this;
      try {
        const r = this.vmMmu!.shadowPageFault(mmu, this.shadowCtx, hi, lo, cpu.hwError, access);
        if (mmu.fault.guestFault) {
          this.stat.pf_guest++;
          return -1;
        }
        if (r === RET_PF_EMULATE) return this.emulate(hi, lo, access);
      } finally {
        kvm.running = prev;
      }
      this.enterGuest();
    }
  }

  /**
   * `x86_emulate_instruction` for an access KVM could not let the CPU make: the emulator
   * translates the gva with the guest walker (`gva_to_gpa`); no memslot, or a store to a
   * read-only one, is an MMIO exit; a store is made by KVM, which then tells page tracking
   * (the caller: {@link trackEmulatedWrite}).
   */
  private emulate(hi: number, lo: number, access: number): number {
    const w = this.walker;
    let gpa = lo >>> 0;
    if (this.mmu.rootLevel !== 0) {
      if (this.walkAddr(w, this.mmu, this.cpu.tables, hi, lo, access) !== true) {
        this.stat.pf_guest++;
        return -1;
      }
      gpa = w.gpa;
    }
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const slot = this.kvm.memslots.gfnToSlot(gfn);
    if (slot === undefined || ((access & PFERR_WRITE_MASK) !== 0 && slot.readonly)) {
      this.cpu.shadowHvfn = STAGE2_MMIO;
      return gpa;
    }
    this.cpu.shadowHvfn = slot.hvfn(gfn);
    this.emulated = (access & PFERR_WRITE_MASK) !== 0;
    return gpa;
  }

  /**
   * After KVM wrote `bytes` at `gpa` for the guest (`emulator_write_phys`): the dirty log
   * (`kvm_vcpu_write_guest`) and page tracking (`kvm_page_track_write` →
   * `kvm_mmu_track_write`).
   */
  private trackEmulatedWrite(gpa: number, bytes: number): void {
    // Still the exit's handling on this vCPU's thread (see shadowWalk).
    const kvm = this.kvm;
    const prev = kvm.running;
    kvm.running = this;
    try {
      kvm.markPageDirty(Math.floor(gpa / PAGE_SIZE));
      this.vmMmu!.shadow!.trackWrite(gpa, bytes, this.mmu.pae);
    } finally {
      kvm.running = prev;
    }
  }

  /**
   * A guest access at `gva` (number or bigint): walks the guest tables, sets A/D, then takes
   * the gpa through stage 2. Returns `{fault:false, gpa}` (plus `mmio:true` when no memslot backs
   * the gpa — an MMIO exit), `{fault:true, vector:14, errorCode}` for a page fault, or
   * `{fault:true, vector:13, errorCode:0}` for a non-canonical address.
   */
  access(gva: number | bigint, opts?: AccessOptions): AccessResult {
    refuseFrozenVcpu(this);
    let hi: number;
    let lo: number;
    // Number.isInteger, not `% 1`: V8 compiles a double's remainder to an x87 fprem.
    if (
      typeof gva === "number" &&
      gva >= 0 &&
      gva <= Number.MAX_SAFE_INTEGER &&
      Number.isInteger(gva)
    ) {
      lo = gva >>> 0;
      hi = (gva - lo) / 4294967296;
    } else {
      const g = splitU64("gva", gva, this.scratch);
      hi = g.hi;
      lo = g.lo;
    }
    const access = this.accessBits(opts);
    if ((this.requests & KVM_REQ_DIRTY_RING_SOFT_FULL) !== 0 && this.ringFull()) return RING_FULL;
    if (!this.gvaOk(hi, gva)) return this.gpFault();
    const r = this.walkGva(hi, lo, access);
    if (r < 0) return this.pageFault();
    // A store KVM had to emulate: access() carries no data, so the bytes already there are
    // stored again (8 at the aligned address); page tracking sees that write.
    if (this.emulated && this.cpu.shadowHvfn !== STAGE2_MMIO)
      this.trackEmulatedWrite(r - (r % 8), 8);
    return this.finish(r, access);
  }

  /**
   * `kvm_dirty_ring_check_request` at guest entry: while the ring is soft-full the vCPU exits
   * to userspace (`KVM_EXIT_DIRTY_RING_FULL`) instead of running; the request stays pending until
   * a reset makes room.
   */
  private ringFull(): boolean {
    if (this.dirtyRing?.softFull() === true) {
      this.stat.dirty_ring_full_exits++;
      return true;
    }
    this.requests &= ~KVM_REQ_DIRTY_RING_SOFT_FULL;
    return false;
  }

  /** @internal #GP for a non-canonical address (the CPU delivers it). */
  gpFault(): FaultResult {
    this.stat.gp_guest++;
    return { fault: true, vector: GP_VECTOR, errorCode: 0 };
  }

  /**
   * @internal The walk failed: the CPU delivers #PF to the guest (under TDP and on the bare
   * machine KVM does not see it, so `pf_guest` stays 0).
   */
  pageFault(): FaultResult {
    const w = this.walker;
    this.stat.walk_faults++;
    if (w.failure === WALK_ACCESS) this.stat.walk_access_error++;
    else if (w.failure === WALK_RSVD) this.stat.walk_rsvd++;
    else this.stat.walk_not_present++;
    return { fault: true, vector: PF_VECTOR, errorCode: w.errorCode };
  }

  /** @internal The data access at `gpa` through stage 2: done, or an MMIO exit. */
  finish(gpa: number, access: number): AccessOk {
    if (this.stage2Final(gpa, access) === STAGE2_MMIO) {
      this.stat.mmio_exits++;
      return { fault: false, gpa, mmio: true };
    }
    return { fault: false, gpa };
  }

  /**
   * Guest INVLPG. Under EPT (and on the bare machine) KVM does not intercept it and there is no
   * TLB in the model, so nothing happens and `invlpg` is not counted. Shadow paging intercepts it
   * (`kvm_mmu_invlpg`, `invlpg`++): entries of unsync pages on the gva's path are synced again.
   * A non-canonical address is a no-op.
   */
  invlpg(gva: number | bigint): void {
    refuseFrozenVcpu(this);
    const g = splitU64("gva", gva, this.scratch);
    if (this.vmMmu === null || !this.vmMmu.shadowPaging) return;
    const hi = g.hi;
    const lo = g.lo;
    if (!this.gvaOk(hi, gva)) return;
    this.enterGuest();
    // The INVLPG exit is handled on this vCPU's thread (kvm_get_running_vcpu() is this vCPU): a
    // spte the sync makes writable is pushed to this vCPU's dirty ring (mark_page_dirty_in_slot).
    const kvm = this.kvm;
    const prev = kvm.running;
    kvm.running = this;
    try {
      this.vmMmu.shadow!.invlpg(this.mmu, hi * 1048576 + (lo >>> 12));
    } finally {
      kvm.running = prev;
    }
    this.stat.invlpg++;
  }
}
