/**
 * Every behaviour switch of the simulator in one typed, documented table, validated once when a
 * VM is created (`createVm({ features })`). Two kinds live here:
 *
 * - **cpuid**: features of the guest CPU (what CPUID would report) that change paging rules;
 * - **kvm**: how KVM behaves — the seed-patch switches (before/after a historic commit), the MMU
 *   flavour, and the choices where kernel versions disagree.
 *
 * A switch is a row of {@link SWITCHES}: its accepted values, its default (possibly computed from
 * the VM's MAXPHYADDR), and the kernel behaviour each value stands for. Rules that tie two switches
 * together are checked after every row ({@link resolveFeatures}). Era presets (named bundles of
 * values, e.g. "v4.2") are built on this table.
 *
 * Nothing on a hot path reads this table: the MMU copies the resolved values into plain fields.
 */
import { InvalidArgumentError } from "../errors";

/** One row of {@link SWITCHES}. */
interface SwitchSpec {
  /** "cpuid": guest CPU feature; "kvm": KVM behaviour. */
  readonly kind: "cpuid" | "kvm";
  /** Accepted values (booleans are `[false, true]`). */
  readonly values: readonly (string | number | boolean)[];
  /** The default, or a function of the VM's MAXPHYADDR. */
  readonly default: string | number | boolean | ((maxPhysAddrBits: number) => number);
  /** What the switch does, with the kernel code behind each value. */
  readonly doc: string;
}

const BOOL = [false, true] as const;

/**
 * The switches. Keys are the names accepted in `createVm({ features })`; see each `doc`.
 * Defaults describe KVM v6.12 on an Intel host with EPT and A/D bits.
 */
export const SWITCHES = {
  // ---- guest CPUID ------------------------------------------------------------------------
  nx: { kind: "cpuid", values: BOOL, default: true, doc: "EFER.NXE may be set (execute-disable)" },
  gbpages: { kind: "cpuid", values: BOOL, default: true, doc: "1 GiB pages (Page1GB)" },
  pse36: {
    kind: "cpuid",
    values: BOOL,
    default: true,
    doc: "PSE-36: 32-bit 4 MiB pages reach 36-bit addresses",
  },
  la57: { kind: "cpuid", values: BOOL, default: true, doc: "5-level paging (CR4.LA57)" },
  smep: { kind: "cpuid", values: BOOL, default: true, doc: "CR4.SMEP" },
  smap: { kind: "cpuid", values: BOOL, default: true, doc: "CR4.SMAP" },
  pku: { kind: "cpuid", values: BOOL, default: true, doc: "protection keys (CR4.PKE)" },

  // ---- KVM behaviour -------------------------------------------------------------------------
  guestWalker: {
    kind: "kvm",
    values: ["modern", "w07b", "w07a", "w07p"],
    default: "modern",
    doc:
      "Seed 2007 (paging_tmpl.h, commit 42bf3f0a): 'modern' = FNAME(walk_addr_generic), rights " +
      "ANDed and checked once, A/D written after a successful walk. The 2007 walkers check each " +
      "entry as they descend (no reserved-bit check, PS only in a PDE), set A while walking and " +
      "report the access's fetch bit as it came: 'w07a' = as released in 2.6.21-2.6.24, one table " +
      "mapping held across levels, leaf D set after the walk when the spte is made (fix_write_pf, " +
      "then set_pte_common); 'w07p' = the parent of 42bf3f0a (kvm.git, October 2007): D set at " +
      "the end of the walk with kvm_mmu_pte_write (commits e3c5e7ec, c4fcc272), mapping still " +
      "held; 'w07b' = 42bf3f0a as released in 2.6.25: the same, no mapping across levels",
  },
  allocTranslationForDirect: {
    kind: "kvm",
    values: BOOL,
    default: false,
    doc:
      "Seed 2010 (commit 2032a93d): true = before the patch, every shadow page allocates a gfn " +
      "array (sp->gfns); false = after, only pages with guest PTEs do (kvm_mmu_alloc_page)",
  },
  selfCheckGfns: {
    kind: "kvm",
    values: BOOL,
    default: false,
    doc:
      "Keep an uncounted gfn array on direct pages too and check kvm_mmu_page_get_gfn's formula " +
      "against it on every removal (proves the seed-2010 formula)",
  },
  tdpLevels: {
    kind: "kvm",
    values: [4, 5],
    default: (maxPhysAddrBits: number) => (maxPhysAddrBits > 48 ? 5 : 4),
    doc: "TDP root level (kvm_mmu_get_tdp_level: 5 only when the guest MAXPHYADDR exceeds 48)",
  },
  mmuFlavor: {
    kind: "kvm",
    values: ["tdp_mmu", "legacy_direct"],
    default: "tdp_mmu",
    doc:
      "Which MMU builds the EPT tables: 'tdp_mmu' (tdp_mmu.c, default since ~v5.15) or " +
      "'legacy_direct' (the rmap/hash MMU of mmu.c, tdp_mmu=0)",
  },
  prefetch: {
    kind: "kvm",
    values: BOOL,
    default: true,
    doc:
      "rmap MMU: direct_pte_prefetch of the aligned group of 8 around a 4K fault (never with " +
      "EPT A/D bits off: sp_ad_disabled)",
  },
  eagerPageSplit: {
    kind: "kvm",
    values: BOOL,
    default: true,
    doc:
      "Split huge leaves when dirty logging is enabled (eager_page_split, v5.18+; TDP MMU " +
      "only, kvm_mmu_slot_try_split_huge_pages)",
  },
  collapseOnLogDisable: {
    kind: "kvm",
    values: ["zap", "recover", "none", "rmap2015"],
    default: "zap",
    doc:
      "What disabling dirty logging does to 4K mappings: 'zap' = v5.10-v6.12 " +
      "kvm_mmu_zap_collapsible_sptes (TDP: one flush per zap; rmaps: levels 1-2, the " +
      "kvm_mmu_max_mapping_level criterion of ~5.13, also 2M to 1G), 'recover' = v6.13 " +
      "kvm_mmu_recover_huge_pages (huge leaves in place, one flush), 'rmap2015' = seed 2015 " +
      "itself (v4.1, commit 3ea3b7fa: level-1 rmaps, sptes of direct pages whose pfn is in a huge " +
      "host page; rmap MMU only), 'none' = before v4.1",
  },
  collapseFlush: {
    kind: "kvm",
    values: ["batched", "perSpte"],
    default: "batched",
    doc:
      "Remote TLB flushes of the rmap collapse walk: 'batched' = one at the end (the patch; " +
      "KVM also flushes at lock breaks, which a deterministic run never takes), 'perSpte' = one " +
      "per zapped spte, to show what batching saves",
  },
  hugeOnDirtyWrite: {
    kind: "kvm",
    values: ["split", "zap"],
    default: "split",
    doc:
      "TDP MMU, a write below a huge leaf (dirty logging): 'split' = split it in place into 512 " +
      "children (~v6.0+), 'zap' = v5.10-5.19: zap it (one flush) and link an empty table. The rmap " +
      "MMU always drops the huge leaf and maps 4K one at a time (direct_map)",
  },
  fastPageFault: {
    kind: "kvm",
    values: ["modern", "v4", "none"],
    default: "modern",
    doc:
      "fast_page_fault: 'modern' = any level unless the slot is logged, and not-present faults " +
      "too without A/D bits (page_fault_can_be_fast); 'v4' = v3.6-v5.x: write faults on present " +
      "4K sptes that are Host- and MMU-writable only; 'none' = before v3.6",
  },
  hashShift: {
    kind: "kvm",
    values: [12, 10],
    default: 12,
    doc: "KVM_MMU_HASH_SHIFT: mmu_page_hash has 2^shift buckets (10 before ~v4.13)",
  },
  hashFn: {
    kind: "kvm",
    values: ["hash64", "mask"],
    default: "hash64",
    doc: "kvm_page_table_hashfn: 'hash64' = hash_64(gfn, shift) (modern), 'mask' = gfn & (2^shift - 1)",
  },
  pteListExt: {
    kind: "kvm",
    values: [14, 3],
    default: 14,
    doc: "PTE_LIST_EXT: sptes per rmap/parent_ptes descriptor (3 before v6.1 made it 14)",
  },
  reclaim: {
    kind: "kvm",
    values: ["modern", "legacy"],
    default: "modern",
    doc:
      "make_mmu_pages_available: 'modern' = zap KVM_REFILL_PAGES - available from the tail " +
      "skipping roots, mmu_recycled += zapped; 'legacy' = one tail page at a time until " +
      "KVM_REFILL_PAGES are available, roots not skipped, mmu_recycled per step",
  },
  statsStyle: {
    kind: "kvm",
    values: ["modern", "legacy"],
    default: "modern",
    doc:
      "'modern' = pf_taken/pf_fixed/pf_emulate/pf_spurious/pf_fast by return code; 'legacy' " +
      "(v4 and before) = only pf_fixed, counted whenever a fault installed a mapping (the " +
      "lpages gauge is shown in both styles)",
  },
  spteLayout: {
    kind: "kvm",
    values: ["modern", "v4"],
    default: "modern",
    doc:
      "Software bits of an spte as views show them: 'modern' = Host-writable 57, MMU-writable 58, " +
      "MMU-present 11 (EPT); 'v4' = Host-writable 10, MMU-writable 11, no MMU-present bit. The " +
      "simulator keeps one encoding; this decides the values snapshots and walks print",
  },
  eptAccessDirty: {
    kind: "kvm",
    values: BOOL,
    default: true,
    doc:
      "EPT accessed/dirty bits (kvm_intel.eptad, EPTP bit 6). Off: KVM's sptes carry no A/D " +
      "(kvm_mmu_set_ept_masks: shadow_accessed_mask = shadow_dirty_mask = 0; role.ad_disabled), " +
      "the CPU sets none, and its guest page-table reads are reads (with A/D on they count as " +
      "writes for EPT); a guest A/D write-back is then a write access of its own. PML needs it " +
      "(vmx hardware_setup turns enable_pml off without it)",
  },
  pml: {
    kind: "kvm",
    values: BOOL,
    default: false,
    doc:
      "Intel PML (enable_pml): while a slot logs, 4K leaves stay writable with D cleared and the " +
      "CPU logs each gpa whose D it sets into a 512-entry per-vCPU buffer, flushed into the dirty " +
      "log on every VM exit (PML-full included); huge leaves are write-protected so they split",
  },
  possibleWritableBitmap: {
    kind: "kvm",
    values: BOOL,
    default: false,
    doc:
      "Seed 2017 (RFC 'KVM: MMU: fast write protect', not merged): every shadow page keeps " +
      "possible_writable_spte_bitmap and a count of its writable or MMU-writable entries, kept " +
      "by each MMU's spte sink, so write protection visits only those (vm.writeProtectAllSps, " +
      "vm.fastWriteProtectAll)",
  },
  manualDirtyLogProtect: {
    kind: "kvm",
    values: BOOL,
    default: false,
    doc:
      "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 bit 0 at creation: GET_DIRTY_LOG neither clears nor " +
      "protects; CLEAR_DIRTY_LOG does (also vm.enableCap)",
  },
  dirtyLogInitiallySet: {
    kind: "kvm",
    values: BOOL,
    default: false,
    doc:
      "KVM_DIRTY_LOG_INITIALLY_SET (bit 1, needs manual protect): the bitmap starts all ones " +
      "and protection is applied lazily by CLEAR_DIRTY_LOG",
  },
} as const satisfies Record<string, SwitchSpec>;

/** Names of every switch. */
export type SwitchName = keyof typeof SWITCHES;

type ValueOf<K extends SwitchName> = (typeof SWITCHES)[K]["values"][number];

/** Resolved switches: every key present, every value validated. */
export type Features = { readonly [K in SwitchName]: ValueOf<K> };

/** What `createVm({ features })` accepts: any subset of the switches. */
export type FeatureOptions = { [K in SwitchName]?: ValueOf<K> };

/** The guest CPUID switches. */
export type CpuidFeatures = Pick<
  Features,
  "nx" | "gbpages" | "pse36" | "la57" | "smep" | "smap" | "pku"
>;

/** Names of the switches of one kind. */
export function switchNames(kind: "cpuid" | "kvm"): SwitchName[] {
  return (Object.keys(SWITCHES) as SwitchName[]).filter((k) => SWITCHES[k].kind === kind);
}

function allowedText(values: readonly unknown[]): string {
  if (values.length === 2 && values[0] === false && values[1] === true) return "true or false";
  return values.map((v) => (typeof v === "string" ? `"${v}"` : String(v))).join(" | ");
}

/**
 * Validate `input` against {@link SWITCHES} and fill in defaults. Throws
 * {@link InvalidArgumentError} naming the first bad key or value; nothing is clamped.
 */
export function resolveFeatures(input: unknown, maxPhysAddrBits: number): Features {
  if (input === undefined) input = {};
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new InvalidArgumentError("features", input, "an object of switches (see SWITCHES)");
  }
  const given = input as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(given)) {
    if (!Object.hasOwn(SWITCHES, k)) {
      throw new InvalidArgumentError("features", k, Object.keys(SWITCHES).join(", "));
    }
  }
  for (const k of Object.keys(SWITCHES) as SwitchName[]) {
    const spec: SwitchSpec = SWITCHES[k];
    const v = given[k];
    if (v === undefined) {
      out[k] = typeof spec.default === "function" ? spec.default(maxPhysAddrBits) : spec.default;
      continue;
    }
    if (!spec.values.includes(v as never)) {
      throw new InvalidArgumentError(`features.${k}`, v, allowedText(spec.values));
    }
    out[k] = v;
  }
  const f = out as Features;
  // Rules between switches.
  if (f.tdpLevels === 4 && maxPhysAddrBits > 48) {
    throw new InvalidArgumentError(
      "features.tdpLevels",
      4,
      `5 when maxPhysAddrBits (${maxPhysAddrBits}) exceeds 48`,
    );
  }
  if (f.pml && !f.eptAccessDirty) {
    throw new InvalidArgumentError(
      "features.pml",
      true,
      "false when eptAccessDirty is false (PML logs the writes that set EPT D bits; vmx hardware_setup turns enable_pml off without EPT A/D)",
    );
  }
  if (f.dirtyLogInitiallySet && !f.manualDirtyLogProtect) {
    throw new InvalidArgumentError(
      "features.dirtyLogInitiallySet",
      true,
      "false unless manualDirtyLogProtect is true (KVM_DIRTY_LOG_INITIALLY_SET needs MANUAL_PROTECT_ENABLE)",
    );
  }
  return Object.freeze(f);
}
