/**
 * A full-state snapshot of a VM for "nothing changed" checks: every object reachable from the VM
 * (memslots with their flags, dirty bitmaps and `slot->arch` — rmaps, lpage_info, write-track
 * counts —, guest memory, the shadow-page / TDP store with every spte, the roots and MMU context
 * of every vCPU, registers, requests, stats counters, dirty rings, the trace ring) walked
 * generically through its own properties, so a field added to the model is covered without
 * editing this file.
 *
 * Not compared, by name (see {@link NOT_STATE}): memoization and scratch fields that a read-only
 * lookup or an argument parse may legitimately rewrite, and that no later result depends on
 * except for speed. Functions are not walked (closures have no inspectable state).
 */
/**
 * Fields that are caches or scratch buffers, not state. Each is filled by a pure lookup or a
 * parse (so a refused call may touch it) and is either recomputed or validated before use.
 */
export const NOT_STATE: ReadonlySet<string> = new Set([
  // arch/addr.ts splitU64 writes its halves into a caller's scratch before the range checks of
  // the caller run (vcpu.ts, kvm_main.ts, pgtable_builder.ts).
  "scratch",
  "scratch2",
  "walkScratch",
  // kvm/memslot.ts MemSlots.gfnToSlot: the one-entry lookup cache (KVM's `last_used_slot`).
  "last",
  // kvm/memory.ts GuestMemory: the directory-leaf and frame caches of a read.
  "cacheKey",
  "cacheLeaf",
  "frameCacheKey",
  "frameCacheWord",
]);

/**
 * The snapshot: one line per primitive, object or typed array reached, by access path, and a
 * copy of every typed array's bytes (compared with memcmp: hashing megabytes of guest memory
 * per call would dominate the fuzz test's time).
 */
export interface FullState {
  readonly lines: readonly string[];
  readonly bytes: readonly Buffer[];
}

function prim(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "symbol") return v.toString();
  if (Object.is(v, -0)) return "-0";
  return String(v);
}

/**
 * Snapshot everything reachable from `roots` (one path prefix per root). With `copy` false the
 * typed arrays are views of the live buffers, for comparing the current state with a copied one
 * at once (no megabyte copies per check).
 */
export function fullState(roots: Record<string, unknown>, copy = true): FullState {
  const lines: string[] = [];
  const bytes: Buffer[] = [];
  const seen = new Map<object, string>();
  const walk = (path: string, v: unknown): void => {
    if (v === null || (typeof v !== "object" && typeof v !== "function")) {
      lines.push(`${path}=${prim(v)}`);
      return;
    }
    if (typeof v === "function") return;
    const first = seen.get(v);
    if (first !== undefined) {
      lines.push(`${path}->${first}`);
      return;
    }
    seen.set(v, path);
    if (ArrayBuffer.isView(v)) {
      lines.push(`${path}=${v.constructor.name}[${v.byteLength}]#${bytes.length}`);
      const view = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      bytes.push(copy ? Buffer.from(view) : view);
      return;
    }
    const ctor = Object.getPrototypeOf(v)?.constructor?.name ?? "null";
    lines.push(`${path}:${ctor}${Object.isFrozen(v) ? " frozen" : ""}`);
    if (v instanceof Map) {
      let i = 0;
      for (const [k, x] of v) {
        walk(`${path}<${i}k>`, k);
        walk(`${path}<${i++}>`, x);
      }
      return;
    }
    if (v instanceof Set) {
      let i = 0;
      for (const x of v) walk(`${path}{${i++}}`, x);
      return;
    }
    for (const k of Reflect.ownKeys(v)) {
      if (typeof k === "string" && NOT_STATE.has(k)) continue;
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      if (!("value" in d)) continue; // accessors compute from the fields walked
      walk(`${path}.${String(k)}`, d.value);
    }
  };
  for (const [name, root] of Object.entries(roots)) walk(name, root);
  return { lines, bytes };
}

/**
 * Where two snapshots differ: up to `max` differing lines (a typed array's line when its bytes
 * differ, with the first differing byte offset); empty when equal.
 */
export function stateDiff(a: FullState, b: FullState, max = 8): string[] {
  const out: string[] = [];
  const n = Math.max(a.lines.length, b.lines.length);
  for (let i = 0; i < n && out.length < max; i++) {
    const x = a.lines[i];
    const y = b.lines[i];
    if (x !== y) {
      out.push(`- ${x}\n+ ${y}`);
      continue;
    }
    const m = /#(\d+)$/.exec(x ?? "");
    if (m === null) continue;
    const k = Number(m[1]);
    const bx = a.bytes[k]!;
    const by = b.bytes[k]!;
    if (bx.equals(by)) continue;
    let off = 0;
    while (off < bx.length && bx[off] === by[off]) off++;
    out.push(`~ ${x}: bytes differ from offset ${off}`);
  }
  return out;
}
