// The kvm-unit-tests x86/access.c test space, with an oracle written from the x86 architecture's
// paging rules (access rights, A/D bits, page-fault error codes). It never calls the walker's
// permission code: the walker is only driven through the public contract (guestWrite64,
// setSregs, setPkru, access, readPhys64).
//
// A case is a bit set over the access.c flags (same order as its enum). The legal space follows
// ac_test_legal(): no SMEP (access.c excludes it from the main loop), not write+fetch, PKRU.AD/WD
// only with CR4.PKE, PDE bit 13 only with PDE.PSE, at most one reserved bit (bits 51/36/13 and NX
// when EFER.NX=0). Bits the CPU cannot treat as reserved are masked as access.c masks them:
// with MAXPHYADDR >= 37 bit 36 is an address bit, with >= 52 bit 51 too; FEP (forced emulation)
// is a host detail and is always off here.

export const FLAG_NAMES = [
  "pte.rw",
  "pte.user",
  "pte.a",
  "pte.d",
  "pte.nx",
  "pte.p",
  "pte.51",
  "pte.36",
  "pde.rw",
  "pde.user",
  "pde.a",
  "pde.d",
  "pde.pse",
  "pde.nx",
  "pde.p",
  "pde.51",
  "pde.36",
  "pde.13",
  "pdpte.ro",
  "pkru.ad",
  "pkru.wd",
  "pkey=1",
  "user",
  "write",
  "fetch",
  "twice",
  "efer.nx",
  "cr0.wp",
  "cr4.smep",
  "cr4.pke",
  "fep",
];
const B = Object.fromEntries(FLAG_NAMES.map((n, i) => [n, i]));
export const NR_FLAGS = FLAG_NAMES.length; // 31

const has = (f, name) => ((f >>> B[name]) & 1) === 1;

/** Flags that do not exist for this MAXPHYADDR (plus FEP). */
export function invalidMask(maxPhysAddrBits) {
  let m = 1 << B.fep;
  if (maxPhysAddrBits >= 37) m |= (1 << B["pde.36"]) | (1 << B["pte.36"]);
  if (maxPhysAddrBits >= 52) m |= (1 << B["pde.51"]) | (1 << B["pte.51"]);
  return m >>> 0;
}

/**
 * ac_test_legal() restated. `noPke`: the CPU has no protection keys (KVM offers none under
 * shadow paging), so CR4.PKE cases are not legal (access.c skips them without X86_FEATURE_PKU).
 */
export function isLegal(f, noPke = false) {
  if (has(f, "cr4.smep")) return false;
  if (noPke && has(f, "cr4.pke")) return false;
  if (has(f, "fetch") && has(f, "write")) return false;
  if (!has(f, "cr4.pke") && (has(f, "pkru.ad") || has(f, "pkru.wd"))) return false;
  if (!has(f, "pde.pse") && has(f, "pde.13")) return false;
  let rsvd = 0;
  for (const n of ["pde.51", "pde.36", "pde.13", "pte.51", "pte.36"]) if (has(f, n)) rsvd++;
  if (!has(f, "efer.nx")) {
    if (has(f, "pde.nx")) rsvd++;
    if (has(f, "pte.nx")) rsvd++;
  }
  return rsvd <= 1;
}

/** Bit positions that vary (not in the invalid mask), low first. */
export function freeBits(maxPhysAddrBits) {
  const inv = invalidMask(maxPhysAddrBits);
  const out = [];
  for (let b = 0; b < NR_FLAGS; b++) if (((inv >>> b) & 1) === 0) out.push(b);
  return out;
}

/** Spread the bits of `r` over the free positions (a software PDEP). */
export function deposit(r, positions) {
  let f = 0;
  for (let i = 0; i < positions.length; i++) if (r & (2 ** i)) f |= 1 << positions[i];
  return f >>> 0;
}

/** A fast deposit for fixed positions: four 256-entry tables, one per byte of `r`. */
export function makeDeposit(positions) {
  const tables = [0, 1, 2, 3].map((k) => {
    const t = new Uint32Array(256);
    for (let b = 0; b < 256; b++) t[b] = deposit(b * 2 ** (8 * k), positions);
    return t;
  });
  const [t0, t1, t2, t3] = tables;
  return (r) =>
    (t0[r & 255] | t1[(r >>> 8) & 255] | t2[(r >>> 16) & 255] | t3[(r >>> 24) & 255]) >>> 0;
}

const PTE_A = 0x20n;
const PTE_D = 0x40n;

/**
 * Oracle: the architectural outcome of one access on the access.c mapping.
 * `st` = { pteAD, pdeAD } current A/D bits (as 0x20/0x40 masks) — updated in place on success.
 * Returns { fault, errorCode }.
 */
export function oracleAccess(f, acc, st, maxPhysAddrBits) {
  const nx = has(f, "efer.nx");
  const wp = has(f, "cr0.wp");
  const pke = has(f, "cr4.pke");
  const user = acc.user;
  const write = acc.write;
  const fetch = acc.fetch;
  // Error code bits from the access itself; I only when EFER.NX (SMEP is never set here).
  let ec = (write ? 2 : 0) | (user ? 4 : 0) | (fetch && nx ? 16 : 0);
  const rsvdAt51 = maxPhysAddrBits <= 51;
  const rsvdAt36 = maxPhysAddrBits <= 36;
  // PML5/PML4 (P|RW|US) and the PDPTE (P|US, RW unless pdpte.ro) are valid and present.
  if (!has(f, "pde.p")) return { fault: true, errorCode: ec };
  const pdeRsvd =
    (has(f, "pde.51") && rsvdAt51) ||
    (has(f, "pde.36") && rsvdAt36) ||
    (has(f, "pde.pse") && has(f, "pde.13")) || // bits 20:13 of a 2 MiB PDE are reserved
    (has(f, "pde.nx") && !nx);
  if (pdeRsvd) return { fault: true, errorCode: ec | 9 };
  const large = has(f, "pde.pse");
  if (!large) {
    if (!has(f, "pte.p")) return { fault: true, errorCode: ec };
    const pteRsvd =
      (has(f, "pte.51") && rsvdAt51) || (has(f, "pte.36") && rsvdAt36) || (has(f, "pte.nx") && !nx);
    if (pteRsvd) return { fault: true, errorCode: ec | 9 };
  }
  // Rights: R/W and U/S AND over all levels, XD ORs.
  const W = !has(f, "pdpte.ro") && has(f, "pde.rw") && (large || has(f, "pte.rw"));
  const U = has(f, "pde.user") && (large || has(f, "pte.user"));
  const XD = has(f, "pde.nx") || (!large && has(f, "pte.nx"));
  let fault = false;
  if (user && !U) fault = true;
  if (write && !W && (user || wp)) fault = true; // supervisor writes ignore R/W when CR0.WP=0
  if (fetch && nx && XD) fault = true;
  // Protection keys: data accesses to user-mode pages; key of the leaf only.
  if (pke && U && !fetch && has(f, "pkey=1")) {
    const ad = has(f, "pkru.ad");
    const wd = has(f, "pkru.wd");
    if (ad || (wd && write && (user || wp))) {
      fault = true;
      ec |= 32;
    }
  }
  if (fault) return { fault: true, errorCode: ec | 1 };
  // Success: A on every level, D on the leaf for writes.
  st.pdeAD |= PTE_A;
  if (large) {
    if (write) st.pdeAD |= PTE_D;
  } else {
    st.pteAD |= PTE_A;
    if (write) st.pteAD |= PTE_D;
  }
  return { fault: false, errorCode: 0 };
}

/** Entry bits both the PTE and the PDE take from flags named `<level>.<bit>`. */
const ENTRY_FLAG_BITS = [
  ["p", 1n],
  ["rw", 2n],
  ["user", 4n],
  ["a", PTE_A],
  ["d", PTE_D],
  ["nx", 1n << 63n],
  ["51", 1n << 51n],
  ["36", 1n << 36n],
];

/** The bits of ENTRY_FLAG_BITS whose flag `<prefix>.<bit>` is set in `f`. */
function entryFlagBits(f, prefix) {
  let v = 0n;
  for (const [name, bit] of ENTRY_FLAG_BITS) if (has(f, `${prefix}.${name}`)) v |= bit;
  return v;
}

/** The flags of one paging level (`pte.*` or `pde.*`), in FLAG_NAMES order. */
function levelFlags(prefix) {
  return FLAG_NAMES.filter((n) => n.startsWith(`${prefix}.`));
}

/** `build(f)` cached by the flags it reads (`names`), so the hot loop does no BigInt math. */
function memoByFlags(names, build) {
  const cache = new Map();
  return (f) => {
    let key = 0;
    for (const n of names) key = key * 2 + (has(f, n) ? 1 : 0);
    let v = cache.get(key);
    if (v === undefined) {
      v = build(f);
      cache.set(key, v);
    }
    return v;
  };
}

const GVA = 0xffff923400000000n;
const DATA = 32 * 1024 * 1024;
const TABLES = 33 * 1024 * 1024;
/**
 * Where the guest sees its own page tables when it writes them itself (`writes: "guest"`):
 * table k of the access path (0 PML5, 1 PML4, 2 PDPT, 3 PD, 4 PT) at WINDOW + k * 4 KiB,
 * mapped supervisor-writable through PML5/PML4 entry 0 → PDPT_W[1] → PD_W[0] → PT_W[k].
 */
const WINDOW = 0x40000000;

/**
 * Build a harness over a VM made by `createVm` for `levels` (4 or 5), with the VM's default MMU
 * unless `mmu` is given. Returns run(flags) → null
 * when the walker agrees with the oracle, or a string describing the first mismatch.
 *
 * `writes`: how each case's entries are written. "host" (default, except under shadow paging):
 * userspace stores (`vm.guestWrite64`), which KVM does not see — fine where KVM shadows no
 * guest table. "guest" (the default for `mmu: "shadow"`): the guest stores them itself through
 * a supervisor window onto its tables (`vcpu.write`) and then runs INVLPG on the test address,
 * as access.c does; under shadow paging those stores trap (write-tracked tables) or make the
 * PT page unsync, and INVLPG syncs it.
 */
export function makeHarness(
  createVm,
  levels,
  maxPhysAddrBits = 46,
  mmu = undefined,
  writes = mmu === "shadow" ? "guest" : "host",
) {
  const noPke = mmu === "shadow";
  const vm = createVm(mmu === undefined ? { maxPhysAddrBits } : { maxPhysAddrBits, mmu });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * 1024 * 1024, flags: 0 });
  const idx = (l) => Number((GVA >> BigInt(12 + 9 * (l - 1))) & 511n);
  const pml5 = TABLES;
  const pml4 = TABLES + 0x1000;
  const pdpt = TABLES + 0x2000;
  const pd = TABLES + 0x3000;
  const pt = TABLES + 0x4000;
  const root = levels === 5 ? pml5 : pml4;
  if (levels === 5) vm.guestWrite64(pml5 + idx(5) * 8, BigInt(pml4) | 7n);
  if (writes === "guest") {
    const pdptW = TABLES + 0x5000;
    const pdW = TABLES + 0x6000;
    const ptW = TABLES + 0x7000;
    if (levels === 5) vm.guestWrite64(pml5, BigInt(pml4) | 0x67n);
    vm.guestWrite64(pml4, BigInt(pdptW) | 0x67n);
    vm.guestWrite64(pdptW + 8, BigInt(pdW) | 0x67n);
    vm.guestWrite64(pdW, BigInt(ptW) | 0x67n);
    for (let k = 0; k < 5; k++) vm.guestWrite64(ptW + k * 8, BigInt(TABLES + k * 0x1000) | 0x67n);
  }
  const pml4e = pml4 + idx(4) * 8;
  const pdpte = pdpt + idx(3) * 8;
  const pdeGpa = pd + idx(2) * 8;
  const pteGpa = pt + idx(1) * 8;
  const pml5e = pml5 + idx(5) * 8;

  // One vCPU per (EFER.NX, CR0.WP, CR4.PKE) so the case loop never reloads registers.
  const vcpus = [];
  for (let k = 0; k < 8; k++) {
    if (noPke && k >= 4) break;
    const v = vm.createVcpu();
    const nx = k & 1;
    const wp = (k >> 1) & 1;
    const pke = (k >> 2) & 1;
    v.setSregs({
      cr0: (0x80000001 | (wp ? 0x10000 : 0)) >>> 0,
      cr3: root,
      cr4: 0x20 | (levels === 5 ? 0x1000 : 0) | (pke ? 0x400000 : 0),
      efer: 0x100 | (nx ? 0x800 : 0),
    });
    vcpus.push(v);
  }
  const opts = [];
  for (let k = 0; k < 8; k++)
    opts.push({ user: (k & 1) === 1, write: (k & 2) === 2, fetch: (k & 4) === 4 });

  // Entry values by the bits that matter (no BigInt math in the loop).
  const pteVal = memoByFlags(
    [...levelFlags("pte"), "pkey=1"],
    (f) => BigInt(DATA) | entryFlagBits(f, "pte") | (has(f, "pkey=1") ? 1n << 59n : 0n),
  );
  const pdeVal = memoByFlags([...levelFlags("pde"), "pkey=1"], (f) => {
    const pse = has(f, "pde.pse");
    let v = pse ? BigInt(DATA) | 0x80n : BigInt(pt);
    // The key of a non-leaf PDE (2 here: AD2=WD2=1) must be ignored; a leaf PDE carries key 1.
    if (has(f, "pkey=1")) v |= pse ? 1n << 59n : 2n << 59n;
    if (has(f, "pde.13")) v |= 1n << 13n;
    return v | entryFlagBits(f, "pde");
  });
  const pdpteRw = BigInt(pd) | 7n;
  const pdpteRo = BigInt(pd) | 5n;
  const pml4Val = BigInt(pdpt) | 7n;
  const pml5Val = BigInt(pml4) | 7n;
  const st = { pteAD: 0n, pdeAD: 0n };
  const AD = PTE_A | PTE_D;

  const sup = { user: false };
  return function run(f) {
    if (noPke && has(f, "cr4.pke")) return "CR4.PKE case on a CPU without protection keys";
    const vcpu =
      vcpus[(has(f, "efer.nx") ? 1 : 0) | (has(f, "cr0.wp") ? 2 : 0) | (has(f, "cr4.pke") ? 4 : 0)];
    // Fresh entries for this case (upper levels get their A bits cleared too).
    const pde0 = pdeVal(f);
    const pte0 = pteVal(f);
    const pdpteV = has(f, "pdpte.ro") ? pdpteRo : pdpteRw;
    if (writes === "guest") {
      // The guest's own stores (table k at WINDOW + k * 4 KiB), then INVLPG of the address.
      const put = (k, gpa, v) => {
        const r = vcpu.write(WINDOW + k * 0x1000 + (gpa % 4096), v, sup);
        if (r.fault || r.mmio)
          throw new Error(`guest store to table ${k} failed: ${JSON.stringify(r)}`);
      };
      if (levels === 5) put(0, pml5e, pml5Val);
      put(1, pml4e, pml4Val);
      put(2, pdpte, pdpteV);
      put(3, pdeGpa, pde0);
      put(4, pteGpa, pte0);
      vcpu.invlpg(GVA);
    } else {
      if (levels === 5) vm.guestWrite64(pml5e, pml5Val);
      vm.guestWrite64(pml4e, pml4Val);
      vm.guestWrite64(pdpte, pdpteV);
      vm.guestWrite64(pdeGpa, pde0);
      vm.guestWrite64(pteGpa, pte0);
    }
    if (has(f, "cr4.pke"))
      vcpu.setPkru(0x30 | (has(f, "pkru.wd") ? 8 : 0) | (has(f, "pkru.ad") ? 4 : 0));
    st.pteAD = pte0 & AD;
    st.pdeAD = pde0 & AD;
    if (has(f, "twice")) {
      // A first supervisor read; its outcome only shows in the A bits.
      oracleAccess(f, opts[0], st, maxPhysAddrBits);
      vcpu.access(GVA, opts[0]);
    }
    const acc =
      opts[(has(f, "user") ? 1 : 0) | (has(f, "write") ? 2 : 0) | (has(f, "fetch") ? 4 : 0)];
    const exp = oracleAccess(f, acc, st, maxPhysAddrBits);
    const got = vcpu.access(GVA, acc);
    if (got.fault !== exp.fault)
      return `fault ${got.fault} expected ${exp.fault} (error 0x${(got.errorCode ?? 0).toString(16)})`;
    if (exp.fault) {
      if (got.vector !== 14) return `vector ${got.vector} expected 14`;
      if (got.errorCode !== exp.errorCode)
        return `error 0x${got.errorCode.toString(16)} expected 0x${exp.errorCode.toString(16)}`;
    } else if (got.gpa !== DATA)
      return `gpa 0x${got.gpa.toString(16)} expected 0x${DATA.toString(16)}`;
    const pteNow = vm.readPhys64(pteGpa);
    const pdeNow = vm.readPhys64(pdeGpa);
    const pteExp = (pte0 & ~AD) | st.pteAD;
    const pdeExp = (pde0 & ~AD) | st.pdeAD;
    if (pteNow !== pteExp) return `pte 0x${pteNow.toString(16)} expected 0x${pteExp.toString(16)}`;
    if (pdeNow !== pdeExp) return `pde 0x${pdeNow.toString(16)} expected 0x${pdeExp.toString(16)}`;
    return null;
  };
}

/**
 * Run `count` legal cases drawn with xorshift32(seed) from the flags free at MAXPHYADDR
 * `maxPhysAddrBits` through `run` (a makeHarness result); `onCase(f)` sees each case before it
 * runs. Returns the first 10 failures as "[flags] message". `noPke` leaves out CR4.PKE cases.
 */
export function runSeededSample(
  run,
  maxPhysAddrBits,
  seed,
  count,
  onCase = undefined,
  noPke = false,
) {
  const pos = freeBits(maxPhysAddrBits);
  const dep = makeDeposit(pos);
  const n = 2 ** pos.length;
  const rnd = xorshift32(seed);
  const failures = [];
  let cases = 0;
  while (cases < count) {
    const f = dep(rnd() % n);
    if (!isLegal(f, noPke)) continue;
    cases++;
    onCase?.(f);
    const err = run(f);
    if (err !== null && failures.length < 10) failures.push(`[${describeFlags(f)}] ${err}`);
  }
  return failures;
}

/** Describe a flag set by name. */
export function describeFlags(f) {
  return FLAG_NAMES.filter((_, i) => (f >>> i) & 1).join(" ") || "(none)";
}

/** Flags that ac_test_legal() looks at; every other free flag doubles the count. */
const LEGALITY_FLAGS = [
  "cr4.smep",
  "fetch",
  "write",
  "cr4.pke",
  "pkru.ad",
  "pkru.wd",
  "pde.pse",
  "pde.13",
  "pde.51",
  "pde.36",
  "pte.51",
  "pte.36",
  "efer.nx",
  "pde.nx",
  "pte.nx",
];

/**
 * Count legal cases for a MAXPHYADDR (19,169,280 at 46): enumerate the flags the legality rule
 * reads and multiply by 2^(other free flags). The full-space script cross-checks this number
 * against the cases it actually ran.
 */
export function countLegal(maxPhysAddrBits = 46, noPke = false) {
  const free = freeBits(maxPhysAddrBits);
  const rel = free.filter((b) => LEGALITY_FLAGS.includes(FLAG_NAMES[b]));
  let c = 0;
  for (let r = 0; r < 2 ** rel.length; r++) if (isLegal(deposit(r, rel), noPke)) c++;
  return c * 2 ** (free.length - rel.length);
}

/** Small seeded PRNG (xorshift32). */
export function xorshift32(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}
