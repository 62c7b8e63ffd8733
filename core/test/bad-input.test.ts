/**
 * Bad-input catalogue: one test per kind of bad input. Each asserts that the error names the
 * offending value and what is allowed (or, for guest-visible cases, the architectural outcome),
 * and that the state is unchanged afterwards.
 */
import { describe, expect, it } from "vitest";
import {
  createVm,
  GeneralProtectionError,
  GuestPageTableBuilder,
  InvalidArgumentError,
  type UserMemoryRegion,
} from "../src";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

function slotsOf(vm: ReturnType<typeof createVm>) {
  return vm.memslots.list().map((s) => ({
    id: s.id,
    baseGfn: s.baseGfn,
    npages: s.npages,
    flags: s.flags,
    hva: s.userspaceAddr,
  }));
}

/** Expect `fn` to throw an InvalidArgumentError whose message matches every pattern. */
function expectRejected(fn: () => unknown, ...patterns: RegExp[]): InvalidArgumentError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InvalidArgumentError);
  for (const p of patterns) expect((err as Error).message).toMatch(p);
  return err as InvalidArgumentError;
}

/** The 1 MiB slot-1 request at 2 GiB the memslot cases vary, with `over` replacing fields. */
function slot1(over: Partial<UserMemoryRegion> = {}): UserMemoryRegion {
  return { slot: 1, guestPhysAddr: 2 * GiB, memorySize: MiB, flags: 0, ...over };
}

function vmWithSlot() {
  const vm = createVm({ maxPhysAddrBits: 46 });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GiB, flags: 0 });
  vm.guestWrite64(0x1000, 0x1234n);
  return vm;
}

describe("memslots (KVM_SET_USER_MEMORY_REGION)", () => {
  it("overlapping slot: EEXIST naming the address and the slot it overlaps", () => {
    const vm = vmWithSlot();
    const before = slotsOf(vm);
    const e = expectRejected(
      () => vm.setUserMemoryRegion(slot1({ guestPhysAddr: GiB - 4096, memorySize: 8192 })),
      /guestPhysAddr/,
      /0x3ffff000/,
      /slot 0/,
    );
    expect(e.errno).toBe("EEXIST");
    expect(slotsOf(vm)).toEqual(before);
  });
  it("moving a slot onto another: EEXIST, both unchanged", () => {
    const vm = vmWithSlot();
    vm.setUserMemoryRegion(slot1());
    const before = slotsOf(vm);
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ guestPhysAddr: 0x100000 })),
      /0x100000/,
      /slot 0/,
    );
    expect(slotsOf(vm)).toEqual(before);
  });
  it("misaligned guest_phys_addr", () => {
    const vm = vmWithSlot();
    const before = slotsOf(vm);
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ guestPhysAddr: 2 * GiB + 0x800 })),
      /guestPhysAddr/,
      /0x80000800/,
      /4 KiB-aligned/,
    );
    expect(slotsOf(vm)).toEqual(before);
  });
  it("memory_size not a multiple of 4 KiB", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ memorySize: 5000 })),
      /memorySize/,
      /5000/,
      /multiple of 4096/,
    );
    expect(vm.memslots.get(1)).toBeUndefined();
  });
  it("misaligned userspace_addr", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ userspaceAddr: 0x10000123 })),
      /userspaceAddr/,
      /0x10000123/,
    );
    expect(vm.memslots.get(1)).toBeUndefined();
  });
  it("slot id out of range and address space other than 0", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ slot: 32764 })),
      /slot/,
      /32764/,
      /\[0, 32764\)/,
    );
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ slot: 0x10000 })),
      /slot/,
      /65536/,
      /address space 0/,
    );
    expectRejected(() => vm.setUserMemoryRegion(slot1({ slot: -1 })), /slot/, /-1/);
    expect(vm.memslots.list()).toHaveLength(1);
  });
  it("range beyond MAXPHYADDR", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ guestPhysAddr: 2 ** 46 - MiB, memorySize: 2 * MiB })),
      /guestPhysAddr/,
      /2\^46/,
    );
    expect(vm.memslots.get(1)).toBeUndefined();
  });
  it("unknown flag bits", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ flags: 4 })),
      /flags/,
      /4/,
      /KVM_MEM_LOG_DIRTY_PAGES/,
    );
    expect(vm.memslots.get(1)).toBeUndefined();
  });
  it("resizing an existing slot (EINVAL) and toggling READONLY (EINVAL)", () => {
    const vm = vmWithSlot();
    const before = slotsOf(vm);
    expectRejected(
      () => vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * GiB, flags: 0 }),
      /memorySize/,
      /current size/,
    );
    expectRejected(
      () => vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: GiB, flags: 2 }),
      /flags/,
      /READONLY/,
    );
    expect(slotsOf(vm)).toEqual(before);
  });
  it("deleting a slot that does not exist", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion({ slot: 7, guestPhysAddr: 0, memorySize: 0, flags: 0 }),
      /slot/,
      /7/,
      /existing slot/,
    );
    expect(slotsOf(vm)).toHaveLength(1);
  });
  it("flags above 32 bits (2^53 & ~3 is 0 in JS) and misspelt fields are refused", () => {
    // check_memory_region_flags tests `mem->flags & ~valid_flags` on the whole field.
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ flags: 2 ** 53 })),
      /flags/,
      /2\^53|9007199254740992/,
    );
    expectRejected(
      () => vm.setUserMemoryRegion({ ...slot1(), memorysize: MiB } as never),
      /region/,
      /"memorysize"/,
    );
    expect(vm.memslots.get(1)).toBeUndefined();
  });
  it("unknown backing", () => {
    const vm = vmWithSlot();
    expectRejected(
      () => vm.setUserMemoryRegion(slot1({ backing: "2m" as never })),
      /backing/,
      /"2m"/,
      /hugetlb-2m/,
    );
    expect(vm.memslots.get(1)).toBeUndefined();
  });
});

describe("KVM_ENABLE_CAP", () => {
  it("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: INITIALLY_SET only with MANUAL_PROTECT_ENABLE, no bits above", () => {
    // kvm_vm_ioctl_enable_cap_generic: allowed_options is MANUAL_PROTECT_ENABLE (1), widened to
    // 1 | INITIALLY_SET (3) only when bit 0 is set; 2 alone and 2^53 (whose low 32 bits are 0)
    // are -EINVAL.
    const vm = vmWithSlot();
    for (const args of [2, 4, 2 ** 53, 2 ** 32 + 1]) {
      const e = expectRejected(
        () => vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", args),
        /args/,
        new RegExp(String(args)),
      );
      expect(e.errno).toBe("EINVAL");
    }
    expect(vm.manualDirtyLogProtect).toBe(0);
    vm.enableCap("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", 3);
    expect(vm.manualDirtyLogProtect).toBe(3);
  });
});

describe("vCPU registers (KVM_SET_SREGS)", () => {
  function vcpuIn4Level() {
    const vm = vmWithSlot();
    const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 0x100000, poolSize: MiB });
    b.map(0x400000, 0x200000, 4096);
    const vcpu = vm.createVcpu();
    vcpu.setSregs(b.sregs({ nx: true }));
    return { vm, vcpu, b };
  }
  const cases: [string, Record<string, number | bigint>, RegExp[], boolean][] = [
    ["CR0.PG without CR0.PE", { cr0: 0x80000000 }, [/cr0/, /2147483648/, /PE/], true],
    ["CR0.NW without CR0.CD", { cr0: 0x20000001 }, [/cr0/, /NW/], true],
    [
      "CR0 bits 63:32",
      { cr0: (2n ** 32n) | 0x80000001n },
      [/cr0/, /0x180000001/, /reserved/],
      true,
    ],
    ["long mode (LME+PG) without CR4.PAE", { cr4: 0 }, [/cr4/, /PAE/], true],
    ["a reserved CR4 bit (bit 25)", { cr4: 0x20 | (1 << 25) }, [/cr4/, /0x2000020/], true],
    ["EFER.LMA without paging", { cr0: 1, efer: 0x500 }, [/efer/, /LMA/], false],
    ["an EFER reserved bit (bit 9)", { efer: 0x300 }, [/efer/, /0x300/], false],
    ["CR3 above MAXPHYADDR in long mode", { cr3: 2 ** 47 }, [/cr3/, /2\^46/], true],
    ["CR4.PCIDE outside long mode", { cr0: 1, efer: 0, cr4: 0x20000 }, [/cr4/, /PCIDE/], true],
  ];
  for (const [name, regs, patterns, gp] of cases) {
    it(`refuses ${name}, registers unchanged`, () => {
      const { vcpu } = vcpuIn4Level();
      const before = vcpu.getSregs();
      const e = expectRejected(() => vcpu.setSregs(regs), ...patterns);
      expect(e instanceof GeneralProtectionError).toBe(gp);
      expect(vcpu.getSregs()).toEqual(before);
      expect(vcpu.access(0x400000)).toEqual({ fault: false, gpa: 0x200000 });
    });
  }
  it("refuses CR4 bits of features the VM does not have (LA57, PKE, SMEP, SMAP) and EFER.NX without NX", () => {
    const vm = createVm({
      features: { la57: false, pku: false, smep: false, smap: false, nx: false },
    });
    const vcpu = vm.createVcpu();
    for (const bit of [12, 20, 21, 22])
      expectRejected(() => vcpu.setSregs({ cr4: 1 << bit }), /cr4/);
    expectRejected(() => vcpu.setSregs({ efer: 0x800 }), /efer/, /NX is not supported/);
    expect(vcpu.getSregs().cr4).toBe(0);
  });
  it("refuses a CPL outside 0..3 and unknown register names", () => {
    const { vcpu } = vcpuIn4Level();
    expectRejected(() => vcpu.setSregs({ cpl: 4 }), /cpl/, /4/, /0, 1, 2 or 3/);
    expectRejected(() => vcpu.setSregs({ cr2: 5 } as never), /cr2/);
    expect(vcpu.getSregs().cpl).toBe(0);
  });
  it("PAE: a reserved bit in a present PDPTE is #GP at CR3 load", () => {
    const vm = vmWithSlot();
    vm.guestWrite64(0x5000, (1n << 63n) | 0x6001n); // XD is reserved in a PDPTE
    const vcpu = vm.createVcpu();
    const e = expectRejected(
      () => vcpu.setSregs({ cr0: 0x80000001, cr3: 0x5000, cr4: 0x20 }),
      /cr3/,
      /PDPTE\[0\]/,
      /reserved/,
    );
    expect(e).toBeInstanceOf(GeneralProtectionError);
    expect(vcpu.pagingMode).toBe("none");
  });
  it("values out of range: PKRU above 32 bits, RFLAGS reserved bits", () => {
    const { vcpu } = vcpuIn4Level();
    expectRejected(() => vcpu.setPkru(2 ** 32), /pkru/, /4294967296/, /32-bit/);
    expectRejected(() => vcpu.setRflags(1 << 3), /rflags/, /reserved/);
    expect(vcpu.pkru).toBe(0);
    expect(vcpu.rflags).toBe(2);
  });
});

describe("guest accesses", () => {
  function ready() {
    const vm = vmWithSlot();
    const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 0x100000, poolSize: MiB });
    b.map(0x400000, 0x200000, 4096);
    b.map(0x401000, 2 * GiB, 4096); // no memslot there
    const vcpu = vm.createVcpu();
    vcpu.setSregs(b.sregs());
    return { vm, vcpu, b };
  }
  it("a non-canonical gva is #GP (vector 13, error 0), not #PF, and touches no entry", () => {
    const { vm, vcpu, b } = ready();
    const pml4e = vm.readPhys64(b.root);
    expect(vcpu.access(0x0000_8000_0000_0000n)).toEqual({ fault: true, vector: 13, errorCode: 0 });
    expect(vcpu.access(0x1234_0000_0040_0000n, { write: true })).toEqual({
      fault: true,
      vector: 13,
      errorCode: 0,
    });
    expect(vm.readPhys64(b.root)).toBe(pml4e);
  });
  it("a gpa outside memslots is an MMIO exit: access reports mmio, guest stores report mmio, inspection throws", () => {
    const { vm, vcpu } = ready();
    const frames = vm.memory.framesAllocated;
    expect(vcpu.access(0x401010, { write: true })).toEqual({
      fault: false,
      gpa: 2 * GiB + 0x10,
      mmio: true,
    });
    expect(vm.guestWrite64(2 * GiB, 1n)).toEqual({ mmio: true });
    expectRejected(() => vm.readPhys64(2 * GiB), /gpa/, /0x80000000/, /inside a memslot/);
    // Nothing got backing: 1 data page (vmWithSlot) + PML4, PDPT, PD, PT written by the builder.
    expect(vm.memory.framesAllocated).toBe(frames);
    expect(frames).toBe(1 + 4);
  });
  it("a gva that is not an address (negative, fractional, >= 2^64, a string)", () => {
    const { vcpu } = ready();
    expectRejected(() => vcpu.access(-1), /gva/, /-1/);
    expectRejected(() => vcpu.access(1.5), /gva/, /1.5/);
    expectRejected(() => vcpu.access(2n ** 64n), /gva/, /0x10000000000000000/);
    expectRejected(() => vcpu.access("0x1000" as never), /gva/, /"0x1000"/);
    expectRejected(
      () => vcpu.access(0x400000, { write: true, fetch: true }),
      /access/,
      /at most one of write and fetch/,
    );
    expectRejected(() => vcpu.access(0x400000, { write: 1 } as never), /access.write/, /1/);
    expect(vcpu.access(0x400000)).toEqual({ fault: false, gpa: 0x200000 });
  });
  it("guest stores: value above 2^64, negative value, gpa above MAXPHYADDR, misaligned gpa", () => {
    const { vm } = ready();
    expectRejected(() => vm.guestWrite64(0x2000, 2n ** 64n), /value/, /2\^64/);
    expectRejected(() => vm.guestWrite64(0x2000, -1), /value/, /-1/);
    expectRejected(() => vm.guestWrite64(2 ** 46, 1n), /gpa/, /2\^46/);
    expectRejected(() => vm.guestWrite64(0x2004, 1n), /gpa/, /0x2004|8196/, /8-byte aligned/);
    expect(vm.readPhys64(0x2000)).toBe(0n);
    expect(vm.readPhys64(0x1000)).toBe(0x1234n);
  });
  it("createVm options out of range", () => {
    expectRejected(() => createVm({ maxPhysAddrBits: 60 }), /maxPhysAddrBits/, /60/, /\[32, 52\]/);
    expectRejected(() => createVm({ mmu: "ept" as never }), /mmu/, /"ept"/, /"shadow"/);
    // KVM offers no protection keys without TDP (cpuid.c kvm_set_cpu_caps).
    expectRejected(
      () => createVm({ mmu: "shadow", features: { pku: true } }),
      /features\.pku/,
      /shadow/,
    );
    expectRejected(() => createVm({ features: { tlb: true } as never }), /features/, /"tlb"/);
  });
});
