/**
 * Names of the architectural bits of CR0, CR4, EFER and the KVM memslot flags, for displays
 * (x86 architecture; `KVM_MEM_*` from uapi/linux/kvm.h). Not used on hot paths.
 */

/** A bit position and its architectural name. */
export type BitName = readonly [bit: number, name: string];

/** CR0 bits (x86 architecture). */
export const CR0_BIT_NAMES: readonly BitName[] = [
  [0, "PE"],
  [1, "MP"],
  [2, "EM"],
  [3, "TS"],
  [4, "ET"],
  [5, "NE"],
  [16, "WP"],
  [18, "AM"],
  [29, "NW"],
  [30, "CD"],
  [31, "PG"],
];

/** CR4 bits (x86 architecture). */
export const CR4_BIT_NAMES: readonly BitName[] = [
  [0, "VME"],
  [1, "PVI"],
  [2, "TSD"],
  [3, "DE"],
  [4, "PSE"],
  [5, "PAE"],
  [6, "MCE"],
  [7, "PGE"],
  [8, "PCE"],
  [9, "OSFXSR"],
  [10, "OSXMMEXCPT"],
  [11, "UMIP"],
  [12, "LA57"],
  [13, "VMXE"],
  [14, "SMXE"],
  [16, "FSGSBASE"],
  [17, "PCIDE"],
  [18, "OSXSAVE"],
  [20, "SMEP"],
  [21, "SMAP"],
  [22, "PKE"],
];

/** IA32_EFER bits (x86 architecture; SVME, LMSLE, FFXSR and TCE are AMD's). */
export const EFER_BIT_NAMES: readonly BitName[] = [
  [0, "SCE"],
  [8, "LME"],
  [10, "LMA"],
  [11, "NXE"],
  [12, "SVME"],
  [13, "LMSLE"],
  [14, "FFXSR"],
  [15, "TCE"],
];

/** `KVM_MEM_*` memslot flags. */
export const KVM_MEM_FLAG_NAMES: readonly BitName[] = [
  [0, "KVM_MEM_LOG_DIRTY_PAGES"],
  [1, "KVM_MEM_READONLY"],
];

/** Names of the bits of 32-bit `value` that are set, in bit order; unnamed set bits as `bitN`. */
export function setBitNames(value: number, names: readonly BitName[]): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 32; bit++) {
    if (((value >>> bit) & 1) === 0) continue;
    const n = names.find(([b]) => b === bit);
    out.push(n !== undefined ? n[1] : `bit${bit}`);
  }
  return out;
}
