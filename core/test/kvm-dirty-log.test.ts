/**
 * The dirty-log ioctls of kvm_main.c at their edges: what KVM_ENABLE_CAP
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_CAP_DIRTY_LOG_RING), KVM_GET_DIRTY_LOG,
 * KVM_CLEAR_DIRTY_LOG and KVM_RESET_DIRTY_RINGS accept and refuse, with the errno KVM returns.
 * The limits come from the kernel's uapi and checks: a ring of 16-byte `struct kvm_dirty_gfn`,
 * at least a page (4096 bytes) and the 64 reserved entries, at most KVM_DIRTY_RING_MAX_ENTRIES
 * (65,536) entries, a power of two, once and before any vCPU; CLEAR's first page a multiple of
 * 64 not past the slot, its page count a multiple of 64 unless it ends at the slot's end.
 */
import { describe, expect, it } from "vitest";
import { createVm, KVM_DIRTY_LOG_INITIALLY_SET } from "../src";
import { InvalidArgumentError } from "../src/errors";
import { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from "../src/kvm/kvm_main";

const PAGE = 4096;
const LOG = 1; // KVM_MEM_LOG_DIRTY_PAGES
const BASE = 0x100000;
const ENTRY = 16; // sizeof(struct kvm_dirty_gfn)

/** The InvalidArgumentError `fn` throws, as [argument, errno, allowed]. */
function refusal(fn: () => unknown): [string, string | undefined, string] {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof InvalidArgumentError)) throw e;
    return [e.argument, e.errno, e.allowed];
  }
  throw new Error("accepted");
}

const popcount = (bm: Uint32Array) => {
  let n = 0;
  for (const w of bm) for (let v = w; v !== 0; v &= v - 1) n++;
  return n;
};

describe("KVM_ENABLE_CAP", () => {
  it("MANUAL_DIRTY_LOG_PROTECT2 takes 0, 1 or 3 (INITIALLY_SET only with MANUAL_PROTECT); INITIALLY_SET fills new bitmaps", () => {
    const vm = createVm();
    // kvm_vm_ioctl_enable_cap_generic: args & ~allowed_options, and INITIALLY_SET alone, are -EINVAL.
    for (const bad of [2, 4, 5, -1, 1.5, Number.NaN, "1"]) {
      const [arg, errno, allowed] = refusal(() =>
        vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", bad as number),
      );
      expect([arg, errno]).toEqual(["args", "EINVAL"]);
      expect(allowed).toMatch(
        /KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE \(1\).*1 \| KVM_DIRTY_LOG_INITIALLY_SET \(3\)/,
      );
    }
    const [arg, errno, allowed] = refusal(() => vm.enableCap("KVM_CAP_FOO" as never, 1));
    expect([arg, errno]).toEqual(["cap", "EINVAL"]);
    expect(allowed).toContain("KVM_CAP_DIRTY_LOG_RING");
    for (const args of [
      0,
      KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
      KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET,
    ]) {
      const v = createVm();
      v.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", args);
      v.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 96 * PAGE, flags: LOG });
      // Manual protect: GET is a copy (twice the same); INITIALLY_SET: every page starts dirty.
      const want = args & KVM_DIRTY_LOG_INITIALLY_SET ? 96 : 0;
      expect(popcount(v.getDirtyLog(1))).toBe(want);
      expect(popcount(v.getDirtyLog(1))).toBe(args === 0 ? 0 : want);
    }
  });

  it("DIRTY_LOG_RING: a power of two, 4096 to 65,536 × 16 bytes, once, before any vCPU", () => {
    for (const bad of [3000, 5000, 2048, 0, -4096, 4096.5, Number.NaN]) {
      const [arg, errno, allowed] = refusal(() =>
        createVm().enableCap("KVM_CAP_DIRTY_LOG_RING", bad),
      );
      expect([bad, arg, errno]).toEqual([bad, "args", "EINVAL"]);
      expect(allowed).toContain(`${Math.max(4096, 64 * ENTRY)} bytes`);
    }
    const [arg, errno, allowed] = refusal(() =>
      createVm().enableCap("KVM_CAP_DIRTY_LOG_RING", 2 * 65536 * ENTRY),
    );
    expect([arg, errno]).toEqual(["args", "E2BIG"]);
    expect(allowed).toContain(`${65536 * ENTRY} bytes`);
    for (const bytes of [4096, 65536 * ENTRY]) {
      const vm = createVm();
      vm.enableCap("KVM_CAP_DIRTY_LOG_RING", bytes);
      expect(vm.createVcpu().dirtyRing!.size).toBe(bytes / ENTRY);
      expect(refusal(() => vm.enableCap("KVM_CAP_DIRTY_LOG_RING", bytes)).slice(0, 2)).toEqual([
        "KVM_CAP_DIRTY_LOG_RING",
        "EINVAL",
      ]);
    }
    // With PML the reserved entries are 64 + 512 (the PML buffer): at least 576 × 16 = 9216 bytes.
    const pml = createVm({ features: { pml: true } });
    const [, , pmlAllowed] = refusal(() => pml.enableCap("KVM_CAP_DIRTY_LOG_RING", 8192));
    expect(pmlAllowed).toContain(`${(64 + 512) * ENTRY} bytes`);
    pml.enableCap("KVM_CAP_DIRTY_LOG_RING", 16384);
    expect(refusal(() => pml.enableCap("KVM_CAP_DIRTY_LOG_RING", 16384))[2]).toContain("once");
    const late = createVm();
    late.createVcpu();
    expect(refusal(() => late.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096))[2]).toContain(
      "before the first vCPU",
    );
  });
});

describe("the dirty ring", () => {
  const ringVm = () => {
    const vm = createVm();
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 128 * PAGE, flags: LOG });
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 2 * BASE, memorySize: 64 * PAGE, flags: 0 });
    return { vm, v: vm.createVcpu() };
  };

  it("a write to a logging slot pushes (slot, offset) on the writer's ring; other slots nothing", () => {
    const { vm, v } = ringVm();
    v.write(BASE + 5 * PAGE, 1n);
    v.write(2 * BASE + 3 * PAGE, 1n);
    v.write(BASE + 70 * PAGE, 1n);
    expect(v.dirtyRing!.harvest()).toEqual([
      { slot: 1, offset: 5 },
      { slot: 1, offset: 70 },
    ]);
    expect(refusal(() => vm.getDirtyLog(1)).slice(0, 2)).toEqual(["KVM_GET_DIRTY_LOG", "ENXIO"]);
  });

  it("soft-full at size - 64 entries: the vCPU is asked to exit before it runs again", () => {
    const vm = createVm();
    vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096); // 256 entries: soft-full at 192
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 256 * PAGE, flags: LOG });
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 2 * BASE, memorySize: 64 * PAGE, flags: 0 });
    const v = vm.createVcpu();
    for (let p = 0; p < 64; p++) v.write(2 * BASE + p * PAGE, 1n); // not logged: no entries
    for (let p = 0; p < 192; p++) expect(v.write(BASE + p * PAGE, 1n).exit).toBeUndefined();
    expect(v.dirtyRing!.used).toBe(192);
    expect(v.write(BASE + 192 * PAGE, 1n)).toEqual({ fault: false, exit: "dirty_ring_full" });
  });

  it("RESET re-protects the harvested pages (a new write is logged again) with one flush", () => {
    const { vm, v } = ringVm();
    for (const p of [0, 1, 127]) v.write(BASE + p * PAGE, 1n);
    v.dirtyRing!.harvest();
    const flushes = vm.stats.remote_tlb_flush_requests;
    expect(vm.resetDirtyRings()).toBe(3);
    expect(vm.stats.remote_tlb_flush_requests - flushes).toBe(1);
    expect(vm.resetDirtyRings()).toBe(0);
    expect(vm.stats.remote_tlb_flush_requests - flushes).toBe(1);
    v.write(BASE + 127 * PAGE, 2n);
    expect(v.dirtyRing!.harvest()).toEqual([{ slot: 1, offset: 127 }]);
  });

  it("RESET of entries whose slot is gone is ignored; without a ring RESET is EINVAL", () => {
    const { vm, v } = ringVm();
    v.write(BASE, 1n);
    v.dirtyRing!.harvest();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 0, flags: 0 });
    expect(vm.resetDirtyRings()).toBe(1);
    expect(refusal(() => createVm().resetDirtyRings())).toEqual([
      "KVM_RESET_DIRTY_RINGS",
      "EINVAL",
      expect.stringContaining("KVM_CAP_DIRTY_LOG_RING"),
    ]);
  });
});

describe("KVM_GET_DIRTY_LOG without manual protect", () => {
  it("takes and clears the bits; flushes only when one was set; returns a copy", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: 96 * PAGE, flags: LOG });
    const v = vm.createVcpu();
    const flushes = () => vm.stats.remote_tlb_flush_requests;
    const f0 = flushes();
    expect(popcount(vm.getDirtyLog(1))).toBe(0);
    expect(flushes()).toBe(f0);
    v.write(BASE + 70 * PAGE, 1n);
    const first = vm.getDirtyLog(1);
    expect([first.length, first[2]]).toEqual([4, 1 << (70 - 64)]);
    expect(flushes()).toBe(f0 + 1);
    v.write(BASE + 3 * PAGE, 1n);
    const second = vm.getDirtyLog(1);
    expect([second[0], second[2]]).toEqual([1 << 3, 0]);
    expect([first[0], first[2]]).toEqual([0, 1 << 6]); // the first answer is not overwritten
  });
});

describe("KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG arguments", () => {
  const NPAGES = 200; // not a multiple of 64: the last range is partial
  const manualVm = () => {
    const vm = createVm();
    vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: NPAGES * PAGE, flags: LOG });
    vm.setUserMemoryRegion({ slot: 2, guestPhysAddr: 2 * BASE, memorySize: 64 * PAGE, flags: 0 });
    return vm;
  };
  const words = (n: number) => new Uint32Array(Math.ceil(n / 32)).fill(0xffffffff);

  it("unknown slots and slots that do not log are ENOENT", () => {
    const vm = manualVm();
    expect(refusal(() => vm.getDirtyLog(9))[2]).toContain("existing memslot");
    expect(refusal(() => vm.getDirtyLog(2))[2]).toContain("KVM_MEM_LOG_DIRTY_PAGES");
    for (const f of [
      () => vm.getDirtyLog(9),
      () => vm.getDirtyLog(2),
      () => vm.clearDirtyLog(2, 0, 64, words(64)),
    ])
      expect(refusal(f).slice(0, 2)).toEqual(["slot", "ENOENT"]);
  });

  it("firstPage: a multiple of 64 up to the slot's pages", () => {
    const vm = manualVm();
    for (const first of [32, 256, -64, 64.5])
      expect(refusal(() => vm.clearDirtyLog(1, first, 0, words(0))).slice(0, 2)).toEqual([
        "firstPage",
        "EINVAL",
      ]);
    expect(refusal(() => vm.clearDirtyLog(1, 32, 0, words(0)))[2]).toContain(`${NPAGES} pages`);
    expect(vm.clearDirtyLog(1, 192, NPAGES - 192, words(8))).toBe(0);
  });

  it("numPages: a multiple of 64 within the slot, or exactly to its end", () => {
    const vm = manualVm();
    for (const [first, n] of [
      [192, 64],
      [0, 32],
      [0, 264],
      [0, -64],
      [128, 73],
    ]) {
      const [arg, errno, allowed] = refusal(() => vm.clearDirtyLog(1, first!, n!, words(264)));
      expect([arg, errno]).toEqual(["numPages", "EINVAL"]);
      expect(allowed).toContain(`exactly ${NPAGES - first!}`);
    }
    expect(vm.clearDirtyLog(1, 128, NPAGES - 128, words(72))).toBe(0);
    expect(vm.clearDirtyLog(1, 0, 128, words(128))).toBe(0);
    expect(vm.getDirtyLog(1)).toHaveLength(Math.ceil(NPAGES / 64) * 2); // the bitmap, not its snapshot half
  });

  it("bitmap: a Uint32Array of at least one bit per page", () => {
    const vm = manualVm();
    const need = Math.ceil(NPAGES / 32);
    for (const bm of [new Uint32Array(need - 1), [0xffffffff] as unknown as Uint32Array]) {
      const [arg, errno, allowed] = refusal(() => vm.clearDirtyLog(1, 0, NPAGES, bm));
      expect([arg, errno]).toEqual(["bitmap", "EINVAL"]);
      expect(allowed).toContain(`${need} elements`);
    }
    expect(vm.clearDirtyLog(1, 0, NPAGES, new Uint32Array(need))).toBe(0);
  });

  it("CLEAR counts and clears exactly the set bits it was given, in the partial last range too", () => {
    const vm = createVm();
    vm.enableCap(
      "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2",
      KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET,
    );
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: BASE, memorySize: NPAGES * PAGE, flags: LOG });
    const flushes = vm.stats.remote_tlb_flush_requests;
    // Pages 0, 63, 64, 131 and 199 (the last); bits past the range are ignored.
    const bm = new Uint32Array(7);
    for (const p of [0, 63, 64, 131, 199]) bm[p >>> 5]! |= 1 << (p & 31);
    expect(vm.clearDirtyLog(1, 0, NPAGES, bm)).toBe(5);
    expect(vm.stats.remote_tlb_flush_requests - flushes).toBe(1);
    expect(vm.clearDirtyLog(1, 0, NPAGES, bm)).toBe(0); // already clear: no flush
    expect(vm.stats.remote_tlb_flush_requests - flushes).toBe(1);
    // A bitmap longer than numPages: bits past the range are not cleared.
    expect(vm.clearDirtyLog(1, 64, 64, new Uint32Array(4).fill(0xffffffff))).toBe(63); // 64 was clear
    const left = vm.getDirtyLog(1);
    expect(popcount(left)).toBe(NPAGES - 5 - 63);
    for (const p of [0, 63, 64, 131, 199]) expect((left[p >>> 5]! >>> (p & 31)) & 1).toBe(0);
    expect([left[2], left[3], left[4]! & 1]).toEqual([0, 0, 1]); // 64..127 clear, 128 still set
    // From page 128: bit k of the bitmap is page 128 + k.
    const hi = new Uint32Array(3);
    hi[0] = 1 << 2; // page 130
    hi[2] = 1 << 7; // page 192 + 7 = 199, already clear
    expect(vm.clearDirtyLog(1, 128, NPAGES - 128, hi)).toBe(1);
    expect((vm.getDirtyLog(1)[130 >>> 5]! >>> (130 & 31)) & 1).toBe(0);
  });
});
