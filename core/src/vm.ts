/**
 * The VM (`struct kvm`): memslots, guest memory, vCPUs and the stage-2 MMU under the guest walk.
 *
 * The stage-2 seam: every guest-physical access — the walker's table reads and A/D write-backs,
 * the final data access, guest stores — asks `vm.stage2.translate(vcpu, gpa, pfec, final)` for
 * the host frame. In this machine (`mmu: "none"`) it is the identity over memslots; the TDP MMU
 * plugs in another implementation that builds EPT/NPT entries on the way.
 */
import { splitU64, toUnsigned, type U64Parts } from "./addr";
import { auditTdp } from "./audit";
import { KVM_MEM_READONLY, PAGE_SIZE, PFERR_WRITE_MASK } from "./constants";
import { JUPYTER_DISPLAY, type MimeBundle } from "./display";
import { InvalidArgumentError } from "./errors";
import { vmBundle, vmString } from "./machine_display";
import { GuestMemory } from "./memory";
import { type MemSlot, MemSlots, type MemslotChange, type UserMemoryRegion } from "./memslot";
import { MMU_FEATURE_KEYS, type MmuFeatures, resolveMmuFeatures, TdpStage2 } from "./mmu";
import { GUEST_WALKER_FLAVOURS, type GuestWalkerFlavour, STAGE2_MMIO } from "./paging_tmpl";
import { KvmStats } from "./stats";
import { Vcpu } from "./vcpu";

/**
 * The MMU beneath the guest walk (second stage of translation).
 * Implementations must not allocate in `translate`.
 */
export interface Stage2 {
  /** Name shown in displays and errors, e.g. "none", "tdp". */
  readonly name: string;
  /**
   * Make guest-physical `gpa` accessible for `pfec` (PFERR_* bits; W for stores and A/D
   * write-backs) and return the host virtual frame number (hva >> 12) backing it, or
   * {@link STAGE2_MMIO} when no memslot backs it or a write hits a read-only slot (an MMIO exit).
   * `final` is false for the guest walker's own table accesses (PFERR_GUEST_PAGE), true for the
   * access itself (PFERR_GUEST_FINAL). `vcpu` is null for stores not made by a vCPU.
   * Sets {@link Stage2.writable} for the returned frame.
   */
  translate(vcpu: Vcpu | null, gpa: number, pfec: number, final: boolean): number;
  /** After `translate`: whether the frame may be written (false in a READONLY slot). */
  writable: boolean;
  /**
   * `kvm_arch_prepare_memory_region`: may throw to refuse the change (nothing applied yet).
   */
  prepareMemoryRegion?(
    change: MemslotChange,
    oldSlot: MemSlot | undefined,
    newSlot: MemSlot | undefined,
  ): void;
  /** `kvm_arch_commit_memory_region`: called after the memslot change is visible. */
  commitMemoryRegion(
    change: MemslotChange,
    oldSlot: MemSlot | undefined,
    newSlot: MemSlot | undefined,
  ): void;
  /** Guest INVLPG (`kvm_mmu_invlpg`); shadow paging reacts, TDP does not. */
  invlpg?(vcpu: Vcpu, gvaHi: number, gvaLo: number): void;
  /** A guest store of `bytes` at `gpa` went through (`kvm_page_track_write` hook for shadow paging). */
  trackWrite?(vcpu: Vcpu | null, gpa: number, bytes: number): void;
}

/** Identity stage 2 over memslots: gfn → slot → hva (the bare walker machine, `mmu: "none"`). */
export class MemslotStage2 implements Stage2 {
  readonly name: string = "none";
  writable = false;
  private readonly slots: MemSlots;
  constructor(protected readonly vm: Vm) {
    this.slots = vm.memslots;
  }

  translate(_vcpu: Vcpu | null, gpa: number, pfec: number, _final: boolean): number {
    const gfn = Math.floor(gpa / PAGE_SIZE);
    const slot = this.slots.gfnToSlot(gfn);
    if (slot === undefined) return STAGE2_MMIO;
    const ro = (slot.flags & KVM_MEM_READONLY) !== 0;
    if (ro && (pfec & PFERR_WRITE_MASK) !== 0 && _final) return STAGE2_MMIO;
    this.writable = !ro;
    return slot.baseHvfn + (gfn - slot.baseGfn);
  }

  commitMemoryRegion(): void {}
}

/** Guest CPU features (guest CPUID) that the MMU depends on. All default to true. */
export interface VmFeatures {
  /** EFER.NXE may be set (execute-disable). */
  nx?: boolean;
  /** 1 GiB pages. */
  gbpages?: boolean;
  /** PSE-36 for 32-bit 4 MiB pages. */
  pse36?: boolean;
  /** 5-level paging (CR4.LA57). */
  la57?: boolean;
  /** CR4.SMEP. */
  smep?: boolean;
  /** CR4.SMAP. */
  smap?: boolean;
  /** Protection keys (CR4.PKE). */
  pku?: boolean;
  /**
   * Guest walker (seed 2007, spec §13.2): "modern" (default, `walk_addr_generic`), "w07b"
   * (2.6.23–25: A set level by level while walking, D at the end of the walk) or "w07a"
   * (2.6.21/22: D set after the walk, one table mapping held across levels). Not a CPUID bit:
   * kept in {@link Vm.guestWalker}, not in {@link Vm.features}.
   */
  guestWalker?: GuestWalkerFlavour;
}

/** Options of {@link createVm}. */
export interface VmOptions {
  /** Guest MAXPHYADDR in bits, 32..52 (default 46). */
  maxPhysAddrBits?: number;
  /**
   * MMU beneath the guest walk. "tdp" (default): EPT tables built by the TDP MMU on EPT
   * violations (mmu.ts); "none": the guest walk runs directly over guest memory.
   */
  mmu?: "none" | "tdp";
  /** Guest CPU features, and the MMU switches of {@link MmuFeatures} (spec §16). */
  features?: VmFeatures & MmuFeatures;
}

/** Result of a guest store: whether it was an MMIO exit (no memslot, or a read-only slot). */
export interface GuestStoreResult {
  readonly mmio: boolean;
}
const STORED: GuestStoreResult = Object.freeze({ mmio: false });
const MMIO_EXIT: GuestStoreResult = Object.freeze({ mmio: true });

const ONE_GIB = 2 ** 30;
/** First host address handed out for slots created without `userspaceAddr` (1 TiB). */
const HVA_POOL_START = 2 ** 40;

/** Resolved features (all booleans). */
export type ResolvedFeatures = Required<Omit<VmFeatures, "guestWalker">>;

/** A virtual machine. Create with {@link createVm}. */
export class Vm {
  /** Guest MAXPHYADDR. */
  readonly maxPhysAddrBits: number;
  readonly features: ResolvedFeatures;
  /** Memslots (address space 0). */
  readonly memslots: MemSlots;
  /** Host memory backing the slots, keyed by hva frame. */
  readonly memory = new GuestMemory();
  /** The MMU beneath the guest walk. */
  stage2: Stage2;
  /** Name of the selected MMU. */
  readonly mmu: string;
  /** Guest walker flavour of every vCPU (`features.guestWalker`). */
  readonly guestWalker: GuestWalkerFlavour;
  readonly vcpus: Vcpu[] = [];
  /** Counters of guest-physical activity. */
  readonly stat = { guestStores: 0, mmioExits: 0, dirtyPagesMarked: 0 };
  private nextHva = HVA_POOL_START;
  private readonly scratch: U64Parts = { hi: 0, lo: 0 };

  constructor(options: VmOptions = {}) {
    if (options === null || typeof options !== "object") {
      throw new InvalidArgumentError(
        "options",
        options,
        "an object { maxPhysAddrBits?, mmu?, features? }",
      );
    }
    const bits = options.maxPhysAddrBits ?? 46;
    if (typeof bits !== "number" || !Number.isInteger(bits) || bits < 32 || bits > 52) {
      throw new InvalidArgumentError("maxPhysAddrBits", bits, "an integer in [32, 52]");
    }
    const mmu = options.mmu ?? "tdp";
    if (mmu !== "none" && mmu !== "tdp")
      throw new InvalidArgumentError("mmu", mmu, '"tdp" | "none"');
    const f = options.features ?? {};
    if (f === null || typeof f !== "object")
      throw new InvalidArgumentError("features", f, "an object of booleans");
    const known = ["nx", "gbpages", "pse36", "la57", "smep", "smap", "pku"];
    const mmuFeatures = resolveMmuFeatures(f as Record<string, unknown>, bits);
    const guestWalker = f.guestWalker === undefined ? "modern" : f.guestWalker;
    if (!(GUEST_WALKER_FLAVOURS as readonly unknown[]).includes(guestWalker)) {
      throw new InvalidArgumentError(
        "features.guestWalker",
        guestWalker,
        GUEST_WALKER_FLAVOURS.map((n) => `"${n}"`).join(" | "),
      );
    }
    for (const [k, v] of Object.entries(f)) {
      if ((MMU_FEATURE_KEYS as readonly string[]).includes(k) || k === "guestWalker") continue;
      if (!known.includes(k))
        throw new InvalidArgumentError(
          "features",
          k,
          [...known, "guestWalker", ...MMU_FEATURE_KEYS].join(", "),
        );
      if (typeof v !== "boolean")
        throw new InvalidArgumentError(`features.${k}`, v, "true or false");
    }
    this.features = {
      nx: f.nx ?? true,
      gbpages: f.gbpages ?? true,
      pse36: f.pse36 ?? true,
      la57: f.la57 ?? true,
      smep: f.smep ?? true,
      smap: f.smap ?? true,
      pku: f.pku ?? true,
    };
    this.maxPhysAddrBits = bits;
    this.memslots = new MemSlots(bits);
    this.mmu = mmu;
    this.guestWalker = guestWalker;
    this.stage2 =
      mmu === "tdp" ? new TdpStage2(this.memslots, mmuFeatures) : new MemslotStage2(this);
  }

  /** The TDP MMU, or null when `mmu: "none"`. */
  get tdp(): TdpStage2 | null {
    return this.stage2 instanceof TdpStage2 ? this.stage2 : null;
  }

  /**
   * KVM statistics (`kvm_vm_stat` + summed `kvm_vcpu_stat`) as plain numbers; MMU ones are zero
   * for "none". The guest-walker counters (`gpte_reads`, ...) are summed over the vCPUs (max for
   * `mappings_held_max`) when this getter runs.
   */
  get stats(): KvmStats {
    const s = this.tdp?.stats ?? new KvmStats();
    sumWalkerStats(s, this.vcpus);
    return s;
  }

  /** MMU self-audit (spec §14): list of violated invariants, empty when consistent. */
  audit(): string[] {
    const t = this.tdp;
    return t === null ? [] : auditTdp(t, this.memslots);
  }

  /**
   * `KVM_SET_USER_MEMORY_REGION`: create, move, change flags of, or delete (memorySize 0) a slot.
   * Returns the kind of change. Throws {@link InvalidArgumentError} with KVM's errno and changes
   * nothing if KVM would refuse the request.
   */
  setUserMemoryRegion(region: UserMemoryRegion): MemslotChange {
    const u = this.memslots.prepare(region, (gpa, size) => this.pickHva(gpa, size));
    if (u.old === u.new) return u.change; // identical request: a no-op
    this.stage2.prepareMemoryRegion?.(u.change, u.old, u.new);
    this.memslots.commit(u);
    if (u.change === "create" && region.userspaceAddr === undefined) this.reserveHva(u.new!);
    this.stage2.commitMemoryRegion(u.change, u.old, u.new);
    return u.change;
  }

  /** Default host address: congruent to gpa modulo 1 GiB, in a fresh 1 GiB-aligned range. */
  private pickHva(gpa: number, size: number): number {
    const hva = this.nextHva + (gpa % ONE_GIB);
    if (hva + size > 2 ** 47) {
      throw new InvalidArgumentError(
        "memorySize",
        size,
        "a size that fits the remaining host address space (give userspaceAddr)",
      );
    }
    return hva;
  }

  private reserveHva(slot: MemSlot): void {
    const end = slot.userspaceAddr + slot.npages * PAGE_SIZE;
    this.nextHva = Math.ceil(end / ONE_GIB) * ONE_GIB + ONE_GIB;
  }

  /** Parse a gpa: below 2^MAXPHYADDR. */
  private gpaArg(name: string, gpa: unknown, align: number): number {
    const n = toUnsigned(
      name,
      gpa,
      this.maxPhysAddrBits,
      `a guest-physical address below 2^${this.maxPhysAddrBits} (MAXPHYADDR)`,
    );
    if (n % align !== 0)
      throw new InvalidArgumentError(name, gpa, `a ${align}-byte aligned address`);
    return n;
  }

  /**
   * An 8-byte store by the guest CPU at guest-physical `gpa` (8-byte aligned): goes through
   * stage 2 as a write, marks the page dirty when logging. Returns `{ mmio: true }` (and stores
   * nothing) when no writable memslot backs the address.
   */
  guestWrite64(gpa: number | bigint, value: number | bigint): GuestStoreResult {
    const g = this.gpaArg("gpa", gpa, 8);
    const v = splitU64("value", value, this.scratch);
    return this.storeHalves(null, g, v.hi, v.lo, 8);
  }

  /** A 4-byte store by the guest CPU (4-byte aligned). */
  guestWrite32(gpa: number | bigint, value: number | bigint): GuestStoreResult {
    const g = this.gpaArg("gpa", gpa, 4);
    const v = toUnsigned("value", value, 32);
    return this.storeHalves(null, g, 0, v, 4);
  }

  /** @internal store path shared with the page-table builder and vCPUs. */
  storeHalves(
    vcpu: Vcpu | null,
    gpa: number,
    hi: number,
    lo: number,
    bytes: 4 | 8,
  ): GuestStoreResult {
    const hvfn = this.stage2.translate(vcpu, gpa, PFERR_WRITE_MASK, true);
    if (hvfn < 0) {
      this.stat.mmioExits++;
      return MMIO_EXIT;
    }
    const off = gpa % PAGE_SIZE;
    this.memory.write32(hvfn, off, lo >>> 0);
    if (bytes === 8) this.memory.write32(hvfn, off + 4, hi >>> 0);
    this.stat.guestStores++;
    this.markPageDirty(Math.floor(gpa / PAGE_SIZE));
    this.stage2.trackWrite?.(vcpu, gpa, bytes);
    return STORED;
  }

  /**
   * Read 8 bytes of guest memory at `gpa` (8-byte aligned) without side effects (no stage-2
   * faults, no A/D, no dirty marks). Throws if no memslot covers `gpa`.
   */
  readPhys64(gpa: number | bigint): bigint {
    const g = this.gpaArg("gpa", gpa, 8);
    const hvfn = this.hvfnOf("gpa", gpa, g);
    const off = g % PAGE_SIZE;
    return (
      (BigInt(this.memory.read32(hvfn, off + 4)) << 32n) | BigInt(this.memory.read32(hvfn, off))
    );
  }

  /** Read 4 bytes (4-byte aligned) without side effects. */
  readPhys32(gpa: number | bigint): number {
    const g = this.gpaArg("gpa", gpa, 4);
    return this.memory.read32(this.hvfnOf("gpa", gpa, g), g % PAGE_SIZE);
  }

  private hvfnOf(name: string, raw: unknown, g: number): number {
    const gfn = Math.floor(g / PAGE_SIZE);
    const slot = this.memslots.gfnToSlot(gfn);
    if (slot === undefined)
      throw new InvalidArgumentError(name, raw, "an address inside a memslot");
    return slot.hvfn(gfn);
  }

  /** `kvm_vcpu_mark_page_dirty` / `mark_page_dirty_in_slot`. */
  markPageDirty(gfn: number): void {
    const slot = this.memslots.gfnToSlot(gfn);
    if (slot?.markDirty(gfn)) this.stat.dirtyPagesMarked++;
  }

  /** `KVM_CREATE_VCPU`. */
  createVcpu(): Vcpu {
    const v = new Vcpu(this, this.vcpus.length);
    this.vcpus.push(v);
    return v;
  }

  /** One line: MMU, memslots, vCPUs and the leaf counts. */
  toString(): string {
    return vmString(this);
  }

  /** Jupyter display: MMU selection and features, memslots, key KVM stats. */
  [JUPYTER_DISPLAY](): MimeBundle {
    return vmBundle(this);
  }
}

/** Fill the summed guest-walker counters of `s` from the vCPUs' `stat`. */
function sumWalkerStats(s: KvmStats, vcpus: readonly Vcpu[]): void {
  s.gpte_reads = s.gpte_ad_writes = s.walk_not_present = s.walk_access_error = 0;
  s.mappings_held_max = 0;
  for (const v of vcpus) {
    const t = v.stat;
    s.gpte_reads += t.gpte_reads;
    s.gpte_ad_writes += t.gpte_ad_writes;
    s.walk_not_present += t.walk_not_present;
    s.walk_access_error += t.walk_access_error;
    s.mappings_held_max = Math.max(s.mappings_held_max, t.mappings_held_max);
  }
}

/**
 * Create a VM.
 * @example
 * const vm = createVm({ maxPhysAddrBits: 46 });
 * vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 1 << 30, flags: 0 });
 */
export function createVm(options: VmOptions = {}): Vm {
  return new Vm(options);
}
