/**
 * Precomputed permission tables, as KVM's `update_permission_bitmask` and `update_pkru_bitmask`.
 *
 * `permissions[pfec >> 1]` is a byte with bit `acc` set when an access with error-code bits
 * `pfec` (W, U, F; the RSVD slot means "not subject to SMAP") faults on a page whose effective
 * rights are `acc` (ACC_EXEC | ACC_WRITE | ACC_USER). Computing it once per register change keeps
 * the walk's permission check to one load and a shift.
 */
import {
  ACC_EXEC_MASK,
  ACC_USER_MASK,
  ACC_WRITE_MASK,
  PFERR_FETCH_MASK,
  PFERR_RSVD_MASK,
  PFERR_USER_MASK,
  PFERR_WRITE_MASK,
} from "./constants";

/** Byte with bit `acc` set for each of the 8 ACC values that include `mask`. */
function byteMask(mask: number): number {
  let b = 0;
  for (let acc = 0; acc < 8; acc++) if (acc & mask) b |= 1 << acc;
  return b;
}

/** Register state the tables depend on. */
export interface PermissionInputs {
  cr0Wp: boolean;
  efeNx: boolean;
  smep: boolean;
  smap: boolean;
}

/** Fill `out` (16 bytes) like `update_permission_bitmask` (non-EPT). */
export function updatePermissionBitmask(out: Uint8Array, p: PermissionInputs): void {
  const x = byteMask(ACC_EXEC_MASK);
  const w = byteMask(ACC_WRITE_MASK);
  const u = byteMask(ACC_USER_MASK);
  for (let byte = 0; byte < 16; byte++) {
    const pfec = byte << 1;
    let wf = pfec & PFERR_WRITE_MASK ? ~w & 0xff : 0;
    const uf = pfec & PFERR_USER_MASK ? ~u & 0xff : 0;
    let ff = pfec & PFERR_FETCH_MASK ? ~x & 0xff : 0;
    let smepf = 0;
    let smapf = 0;
    // kernel-mode accesses to user pages
    const kf = pfec & PFERR_USER_MASK ? 0 : u;
    if (!p.efeNx) ff = 0; // without NX every page is executable (NX bits are reserved)
    if (!p.cr0Wp) wf = pfec & PFERR_USER_MASK ? wf : 0; // supervisor writes ignore R/W when WP=0
    if (p.smep) smepf = pfec & PFERR_FETCH_MASK ? kf : 0;
    // SMAP: supervisor data access to a user page, unless the RSVD slot says AC overrides it.
    if (p.smap) smapf = pfec & (PFERR_RSVD_MASK | PFERR_FETCH_MASK) ? 0 : kf;
    out[byte] = ff | uf | wf | smepf | smapf;
  }
}

/**
 * `update_pkru_bitmask`: a 32-bit mask; for error-code bits `pfec` (with the RSVD slot replaced by
 * "page is user"), bits `pfec` and `pfec + 1` say whether PKRU.AD and PKRU.WD apply.
 * Zero unless CR4.PKE is set and the guest is in long mode (keys exist only in 64-bit entries).
 */
export function updatePkruBitmask(cr4Pke: boolean, longMode: boolean, cr0Wp: boolean): number {
  if (!cr4Pke || !longMode) return 0;
  let mask = 0;
  for (let bit = 0; bit < 16; bit++) {
    const pfec = bit << 1;
    const ff = (pfec & PFERR_FETCH_MASK) !== 0;
    const uf = (pfec & PFERR_USER_MASK) !== 0;
    const wf = (pfec & PFERR_WRITE_MASK) !== 0;
    const pteUser = (pfec & PFERR_RSVD_MASK) !== 0;
    const checkPkey = !ff && pteUser; // data accesses to user pages only
    const checkWrite = checkPkey && wf && (uf || cr0Wp); // WD binds supervisor writes only with CR0.WP
    const bits = (checkPkey ? 1 : 0) | (checkWrite ? 2 : 0);
    mask |= bits << pfec;
  }
  return mask >>> 0;
}
