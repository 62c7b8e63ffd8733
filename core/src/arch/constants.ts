/**
 * Geometry and architectural constants, named as in KVM (`mmu.h`, `kvm_host.h`, `spte.h`).
 * Plain `const` numbers, not `const enum`, so per-file transpilers (tslab) can use them.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/** Entries per 64-bit (PAE, 4/5-level) table. */
export const PT64_ENT_PER_PAGE = 512;
/** Entries per 32-bit (non-PAE) table. */
export const PT32_ENT_PER_PAGE = 1024;

export const PG_LEVEL_4K = 1;
export const PG_LEVEL_2M = 2;
export const PG_LEVEL_1G = 3;
export const PG_LEVEL_512G = 4;

export const PT32_ROOT_LEVEL = 2;
export const PT32E_ROOT_LEVEL = 3;
export const PT64_ROOT_4LEVEL = 4;
export const PT64_ROOT_5LEVEL = 5;

/** Page-fault error code bits (`PFERR_*_MASK`). */
export const PFERR_PRESENT_MASK = 1 << 0;
export const PFERR_WRITE_MASK = 1 << 1;
export const PFERR_USER_MASK = 1 << 2;
export const PFERR_RSVD_MASK = 1 << 3;
export const PFERR_FETCH_MASK = 1 << 4;
export const PFERR_PK_MASK = 1 << 5;
/**
 * Simulator-internal access flag (KVM: `PFERR_IMPLICIT_ACCESS`, bit 48): a supervisor access made
 * implicitly by the CPU (descriptor tables, ...) at any CPL; SMAP ignores EFLAGS.AC for it.
 * Never appears in an error code.
 */
export const PFERR_IMPLICIT_ACCESS = 1 << 15;

/** Exception vectors. */
export const GP_VECTOR = 13;
export const PF_VECTOR = 14;

/** Effective access rights (`ACC_*_MASK`); W and U sit at their PTE bit positions on purpose. */
export const ACC_EXEC_MASK = 1;
export const ACC_WRITE_MASK = 2;
export const ACC_USER_MASK = 4;
export const ACC_ALL = 7;

/** Memslot flags (uapi `KVM_MEM_*`). */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
/** Largest user memslot in pages (`KVM_MEM_MAX_NR_PAGES`, 2^31 - 1). */
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
/** User memslots per address space on x86 (`KVM_USER_MEM_SLOTS`). */
export const KVM_USER_MEM_SLOTS = 32764;

/** CR0 bits. */
export const X86_CR0_PE = 1 << 0;
export const X86_CR0_MP = 1 << 1;
export const X86_CR0_EM = 1 << 2;
export const X86_CR0_TS = 1 << 3;
export const X86_CR0_ET = 1 << 4;
export const X86_CR0_NE = 1 << 5;
export const X86_CR0_WP = 1 << 16;
export const X86_CR0_AM = 1 << 18;
export const X86_CR0_NW = 1 << 29;
export const X86_CR0_CD = 1 << 30;
/** Bit 31; as an int32 this is negative, so compare with `(cr0 & X86_CR0_PG) !== 0`. */
export const X86_CR0_PG = 1 << 31;

/** CR4 bits. */
export const X86_CR4_PSE = 1 << 4;
export const X86_CR4_PAE = 1 << 5;
export const X86_CR4_PGE = 1 << 7;
export const X86_CR4_LA57 = 1 << 12;
export const X86_CR4_PCIDE = 1 << 17;
export const X86_CR4_SMEP = 1 << 20;
export const X86_CR4_SMAP = 1 << 21;
export const X86_CR4_PKE = 1 << 22;

/** EFER bits. */
export const EFER_SCE = 1 << 0;
export const EFER_LME = 1 << 8;
export const EFER_LMA = 1 << 10;
export const EFER_NX = 1 << 11;

/** RFLAGS.AC (alignment check / SMAP override). */
export const X86_EFLAGS_AC = 1 << 18;
/** RFLAGS bit 1 always reads as 1. */
export const X86_EFLAGS_FIXED = 1 << 1;

/** Table names by paging level (index 1..5; index 0 is never a level and repeats "PT"). */
export const LEVEL_NAMES = ["PT", "PT", "PD", "PDPT", "PML4", "PML5"] as const;
