/** Plain-word descriptions for the notebooks (error codes, addresses). */

/** Page-fault error code bits (PFERR_*), in bit order, with their meaning. */
const PF_BITS: ReadonlyArray<[number, string, string]> = [
  [0x1, "P", "the page was present (a protection violation, not a missing page)"],
  [0x2, "W", "the access was a write"],
  [0x4, "U", "the access came from user mode (CPL 3)"],
  [0x8, "RSVD", "a reserved bit was set in a paging-structure entry"],
  [0x10, "I", "the access was an instruction fetch"],
  [0x20, "PK", "a protection key forbade the access"],
];

/** `0x7 (P|W|U)`, or `0x0 (none: ...)`. */
export function describeErrorCode(ec: number): string {
  const names = PF_BITS.filter(([m]) => (ec & m) !== 0).map(([, n]) => n);
  return `${hex(ec)} (${names.length > 0 ? names.join("|") : "no bits: a supervisor read of a page that is not present"})`;
}

/** The meaning of each set bit, as a sentence. */
export function explainErrorCode(ec: number): string {
  const parts = PF_BITS.filter(([m]) => (ec & m) !== 0).map(([, n, why]) => `${n}: ${why}`);
  if ((ec & 0x1) === 0) parts.unshift("P clear: the page was not present");
  return parts.join("; ");
}

/** Lower-case hex with 0x, for numbers and bigints. */
export function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}
