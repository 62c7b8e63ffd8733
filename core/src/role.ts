/**
 * `union kvm_mmu_page_role` (kvm_host.h): the 32-bit key of a shadow page, packed exactly as the
 * modern kernel packs it, with accessors. Two pages with the same gfn and the same role word are
 * the same page (the legacy MMU's hash lookup compares the whole word).
 *
 * ```
 *  bits 0..3  level            bit 11 invalid        bit 16 ad_disabled
 *  bit  4     has_4_byte_gpte  bit 12 efer_nx        bit 17 guest_mode
 *  bits 5..6  quadrant         bit 13 cr0_wp         bit 18 passthrough
 *  bit  7     direct           bit 14 smep_andnot_wp bits 24..31 smm (address space)
 *  bits 8..10 access (ACC_*)   bit 15 smap_andnot_wp
 * ```
 */

export const ROLE_LEVEL_MASK = 0xf;
export const ROLE_HAS_4_BYTE_GPTE = 1 << 4;
export const ROLE_QUADRANT_SHIFT = 5;
export const ROLE_DIRECT = 1 << 7;
export const ROLE_ACCESS_SHIFT = 8;
export const ROLE_INVALID = 1 << 11;
export const ROLE_EFER_NX = 1 << 12;
export const ROLE_CR0_WP = 1 << 13;
export const ROLE_SMEP_ANDNOT_WP = 1 << 14;
export const ROLE_SMAP_ANDNOT_WP = 1 << 15;
export const ROLE_AD_DISABLED = 1 << 16;
export const ROLE_GUEST_MODE = 1 << 17;
export const ROLE_PASSTHROUGH = 1 << 18;
export const ROLE_SMM_SHIFT = 24;

export function roleLevel(role: number): number {
  return role & ROLE_LEVEL_MASK;
}
export function roleDirect(role: number): boolean {
  return (role & ROLE_DIRECT) !== 0;
}
export function roleAccess(role: number): number {
  return (role >>> ROLE_ACCESS_SHIFT) & 7;
}
export function roleQuadrant(role: number): number {
  return (role >>> ROLE_QUADRANT_SHIFT) & 3;
}
export function roleInvalid(role: number): boolean {
  return (role & ROLE_INVALID) !== 0;
}
export function roleSmm(role: number): number {
  return role >>> ROLE_SMM_SHIFT;
}

/**
 * `kvm_calc_tdp_mmu_root_page_role`: level = TDP level, direct, ACC_ALL, cr0_wp and efer_nx set,
 * ad_disabled when A/D bits are off.
 */
export function tdpRootRole(level: number, adEnabled: boolean, smm = 0): number {
  let r = level | ROLE_DIRECT | (7 << ROLE_ACCESS_SHIFT) | ROLE_CR0_WP | ROLE_EFER_NX;
  if (!adEnabled) r |= ROLE_AD_DISABLED;
  r |= smm << ROLE_SMM_SHIFT;
  return r >>> 0;
}

/** `kvm_mmu_child_role` for a direct child: level − 1, the given access, passthrough cleared. */
export function childRole(parent: number, direct: boolean, access: number): number {
  let r = parent & ~(ROLE_LEVEL_MASK | ROLE_PASSTHROUGH | (7 << ROLE_ACCESS_SHIFT) | ROLE_DIRECT);
  r |= (parent & ROLE_LEVEL_MASK) - 1;
  r |= (access & 7) << ROLE_ACCESS_SHIFT;
  if (direct) r |= ROLE_DIRECT;
  return r >>> 0;
}

/** Decoded role, field names as in the display schema (`definitions.role`). */
export interface DecodedRole {
  word: string;
  level: number;
  direct: boolean;
  access: number;
  quadrant: number;
  invalid: boolean;
  hasFourByteGpte: boolean;
  cr0Wp: boolean;
  eferNx: boolean;
  adDisabled: boolean;
  guestMode: boolean;
  smm: number;
}

/** Decode a role word for notebooks and snapshots. */
export function decodeRole(role: number): DecodedRole {
  return {
    word: `0x${(role >>> 0).toString(16)}`,
    level: roleLevel(role),
    direct: roleDirect(role),
    access: roleAccess(role),
    quadrant: roleQuadrant(role),
    invalid: roleInvalid(role),
    hasFourByteGpte: (role & ROLE_HAS_4_BYTE_GPTE) !== 0,
    cr0Wp: (role & ROLE_CR0_WP) !== 0,
    eferNx: (role & ROLE_EFER_NX) !== 0,
    adDisabled: (role & ROLE_AD_DISABLED) !== 0,
    guestMode: (role & ROLE_GUEST_MODE) !== 0,
    smm: roleSmm(role),
  };
}
