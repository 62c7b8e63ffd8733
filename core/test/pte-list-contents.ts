import { type PteListDescPool, pteListForEach } from "../src/mmu/mmu";

/** The sptes on the list at `heads[i]`, sorted (the list's own order is an implementation detail). */
export function contents(pool: PteListDescPool, heads: Uint32Array, i: number): number[] {
  const out: number[] = [];
  pteListForEach(pool, heads, i, (s) => out.push(s));
  return out.sort((a, b) => a - b);
}
