/**
 * Values the tests compare against, written out here from the architecture and the kernel rather
 * than imported from src/: a test that takes its expected masks from the code under test cannot
 * catch a wrong mask.
 *
 * The spte layout is KVM's EPT one (arch/x86/kvm/mmu/spte.h, `kvm_mmu_set_ept_masks`): the
 * hardware bits of an EPT paging-structure entry (Intel SDM vol. 3, "Format of an EPT
 * Paging-Structure Entry") plus KVM's software bits. Held as two 32-bit words (lo = bits 31..0,
 * hi = bits 63..32).
 */

/** EPT read access (bit 0); KVM also uses it as `shadow_user_mask`. */
export const EPT_R = 0x1;
/** EPT write access (bit 1). */
export const EPT_W = 0x2;
/** EPT execute access (bit 2). */
export const EPT_X = 0x4;
/** Bit 7: the entry maps a page (2 MiB / 1 GiB) instead of pointing to a table. */
export const EPT_PS = 0x80;
/** Bit 8: accessed (EPT A/D enabled). */
export const EPT_A = 0x100;
/** Bit 9: dirty (EPT A/D enabled). */
export const EPT_D = 0x200;
/** Bit 11: `SPTE_MMU_PRESENT_MASK` (BIT_ULL(11), a bit EPT ignores). */
export const SPTE_MMU_PRESENT_BIT = 0x800;
/** Spte bit 57, `EPT_SPTE_HOST_WRITABLE`, as a bit of the hi word. */
export const HI_HOST_WRITABLE = 2 ** (57 - 32);
/** Spte bit 58, `EPT_SPTE_MMU_WRITABLE`, as a bit of the hi word. */
export const HI_MMU_WRITABLE = 2 ** (58 - 32);

/**
 * `PTE_LIST_EXT` (arch/x86/kvm/mmu/mmu.c): sptes per `pte_list_desc`, 14 since the descriptor
 * was laid out to fill two cache lines (it was 3 before, as in v4.x).
 */
export const PTE_LIST_EXT_MODERN = 14;

/**
 * Bits of a guest paging-structure entry (Intel SDM vol. 3, "Formats of Paging Structures"), as
 * bigints for 64-bit entries (32-bit paging uses the low word).
 */
export const GPTE = {
  /** Bit 0: present. */
  P: 1n,
  /** Bit 1: read/write. */
  RW: 2n,
  /** Bit 2: user/supervisor. */
  US: 4n,
  /** Bit 5: accessed. */
  A: 0x20n,
  /** Bit 6: dirty (leaves). */
  D: 0x40n,
  /** Bit 7: page size (a PDE or PDPTE that maps a page). */
  PS: 0x80n,
  /** Bit 63: execute-disable (with EFER.NXE). */
  NX: 1n << 63n,
} as const;
