/**
 * Guest data instructions: `vcpu.read`, `vcpu.write`, `vcpu.fetch`, in both modes that exist
 * today (`none`, `tdp`). Expected bytes come from little-endian layout computed here with BigInt
 * and read back through the host's own path (`vm.readPhys64`, not the vCPU); expected faults from
 * the x86 paging rules (error code P|W|U|I/D); A/D effects are compared with `vcpu.access`.
 */
import { describe, expect, it } from "vitest";
import {
  createVm,
  GuestPageTableBuilder,
  InvalidArgumentError,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
} from "../src";

const MiB = 2 ** 20;
/** #PF error code bits (x86 architecture): present, write, user, instruction fetch. */
const PF = { P: 1, W: 2, U: 4, ID: 16 };

// Guest layout: code/data pages at 4 MiB (gva) backed at 2 MiB (gpa).
const GVA = 0x40_0000;
const GPA = 0x20_0000;
/** A page whose next page is backed 7 pages away (a page-crossing access touches two frames). */
const SPLIT_GVA = 0x60_0000;
const SPLIT_GPA0 = 0x30_0000;
const SPLIT_GPA1 = 0x30_7000;
/** A read-only page, a no-execute page, and a page whose next page is not mapped. */
const RO_GVA = 0x70_0000;
const NX_GVA = 0x71_0000;
const EDGE_GVA = 0x72_0000;
/** A page mapped to a gpa no memslot covers (an MMIO exit), and one in a read-only slot. */
const MMIO_GVA = 0x73_0000;
const ROM_GVA = 0x74_0000;
const ROM_GPA = 0x800_0000;

function machine(mmu: "none" | "tdp", flags = 0, features: Record<string, unknown> = {}) {
  const vm = createVm({ mmu, features });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags });
  vm.setUserMemoryRegion({
    slot: 1,
    guestPhysAddr: ROM_GPA,
    memorySize: MiB,
    flags: KVM_MEM_READONLY,
  });
  const b = new GuestPageTableBuilder(vm, {
    mode: "4-level",
    poolBase: 16 * MiB,
    poolSize: 4 * MiB,
  });
  b.map(GVA, GPA, 0x4000, { writable: true, user: true });
  b.map(SPLIT_GVA, SPLIT_GPA0, 0x1000, { writable: true, user: true });
  b.map(SPLIT_GVA + 0x1000, SPLIT_GPA1, 0x1000, { writable: true, user: true });
  b.map(RO_GVA, 0x31_0000, 0x1000, { writable: false, user: true });
  b.map(NX_GVA, 0x32_0000, 0x1000, { writable: true, user: true, nx: true });
  b.map(EDGE_GVA, 0x33_0000, 0x1000, { writable: true, user: true });
  b.map(MMIO_GVA, 0x1000_0000, 0x1000, { writable: true, user: true });
  b.map(ROM_GVA, ROM_GPA, 0x1000, { writable: true, user: true });
  const vcpu = vm.createVcpu();
  vcpu.setSregs({ ...b.sregs({ nx: true }), cpl: 3 });
  return { vm, b, vcpu };
}

/** The byte at `gpa`, read by the host. */
function hostByte(vm: ReturnType<typeof createVm>, gpa: number): bigint {
  const word = vm.readPhys64(gpa - (gpa % 8));
  return (word >> BigInt(8 * (gpa % 8))) & 0xffn;
}
/** `size` little-endian bytes at `gpas[i]`, as the host sees them. */
function hostValue(vm: ReturnType<typeof createVm>, gpas: number[]): bigint {
  return gpas.reduce((v, gpa, i) => v | (hostByte(vm, gpa) << BigInt(8 * i)), 0n);
}

for (const mode of ["none", "tdp"] as const) {
  describe(`data instructions, mmu: "${mode}"`, () => {
    it("a store then a load of each size round-trips, little-endian as the host sees it", () => {
      const { vm, vcpu } = machine(mode);
      const value = 0x8877_6655_4433_2211n;
      for (const size of [1, 2, 4, 8] as const) {
        const off = 0x100 * size + 3; // unaligned on purpose
        const v = value & ((1n << BigInt(8 * size)) - 1n);
        const w = vcpu.write(GVA + off, v, { size });
        expect(w).toEqual({ fault: false, gpa: GPA + off });
        const gpas = Array.from({ length: size }, (_, i) => GPA + off + i);
        expect(hostValue(vm, gpas)).toBe(v);
        expect(vcpu.read(GVA + off, { size })).toEqual({ fault: false, gpa: GPA + off, value: v });
      }
    });

    it("a load sees bytes the host stored, at any offset and size", () => {
      const { vm, vcpu } = machine(mode);
      const word = 0x0123_4567_89ab_cdefn;
      vm.guestWrite64(GPA + 0x208, word);
      for (const size of [1, 2, 4] as const) {
        for (let off = 0; off + size <= 8; off++) {
          const want = (word >> BigInt(8 * off)) & ((1n << BigInt(8 * size)) - 1n);
          const r = vcpu.read(GVA + 0x208 + off, { size });
          expect(r).toEqual({ fault: false, gpa: GPA + 0x208 + off, value: want });
        }
      }
    });

    it("an 8-byte store across a page boundary lands in both frames", () => {
      const { vm, vcpu } = machine(mode);
      const value = 0x0807_0605_0403_0201n;
      const gva = SPLIT_GVA + 0xffc;
      expect(vcpu.write(gva, value)).toEqual({ fault: false, gpa: SPLIT_GPA0 + 0xffc });
      const gpas = [0, 1, 2, 3].map((i) => SPLIT_GPA0 + 0xffc + i);
      for (let i = 0; i < 4; i++) gpas.push(SPLIT_GPA1 + i);
      expect(hostValue(vm, gpas)).toBe(value);
      expect(vcpu.read(gva)).toEqual({ fault: false, gpa: SPLIT_GPA0 + 0xffc, value });
    });

    it("a store whose second page is not mapped faults and writes nothing", () => {
      const { vm, vcpu } = machine(mode);
      vm.guestWrite64(0x33_0ff8, 0x5555_5555_5555_5555n);
      const r = vcpu.write(EDGE_GVA + 0xffe, 0xffff_ffffn, { size: 4 });
      // Not present, a user write: P=0, W, U.
      expect(r).toEqual({ fault: true, vector: 14, errorCode: PF.W | PF.U });
      expect(vm.readPhys64(0x33_0ff8)).toBe(0x5555_5555_5555_5555n);
    });

    it("a user store to a read-only page faults (P|W|U) and leaves memory as it was", () => {
      const { vm, vcpu } = machine(mode);
      vm.guestWrite64(0x31_0000, 42n);
      expect(vcpu.write(RO_GVA, 7n)).toEqual({
        fault: true,
        vector: 14,
        errorCode: PF.P | PF.W | PF.U,
      });
      expect(vm.readPhys64(0x31_0000)).toBe(42n);
      expect(vcpu.read(RO_GVA)).toEqual({ fault: false, gpa: 0x31_0000, value: 42n });
    });

    it("a fetch from an NX page faults with I/D; a load from it does not", () => {
      const { vcpu } = machine(mode);
      expect(vcpu.fetch(NX_GVA, { size: 1 })).toEqual({
        fault: true,
        vector: 14,
        errorCode: PF.P | PF.U | PF.ID,
      });
      expect(vcpu.read(NX_GVA, { size: 1 })).toEqual({ fault: false, gpa: 0x32_0000, value: 0n });
      expect(vcpu.fetch(GVA, { size: 4 })).toEqual({ fault: false, gpa: GPA, value: 0n });
    });

    it("no memslot behind the gpa, or a store to a read-only slot: an MMIO exit", () => {
      const { vm, vcpu } = machine(mode);
      const before = vcpu.stat.mmio_exits;
      expect(vcpu.read(MMIO_GVA + 8)).toEqual({ fault: false, gpa: 0x1000_0008, mmio: true });
      expect(vcpu.write(ROM_GVA, 1n)).toEqual({ fault: false, gpa: ROM_GPA, mmio: true });
      expect(vm.readPhys64(ROM_GPA)).toBe(0n);
      expect(vcpu.read(ROM_GVA)).toEqual({ fault: false, gpa: ROM_GPA, value: 0n });
      expect(vcpu.stat.mmio_exits - before).toBe(2);
    });

    it("a store sets A and D in the gptes exactly as access({ write }) does", () => {
      const a = machine(mode);
      const b = machine(mode);
      a.vcpu.write(GVA + 0x1010, 1n, { size: 1 });
      b.vcpu.access(GVA + 0x1010, { write: true });
      a.vcpu.read(GVA + 0x2010, { size: 2 });
      b.vcpu.access(GVA + 0x2010);
      // The page-table pool, word by word, through the host.
      for (let gpa = 16 * MiB; gpa < 16 * MiB + 64 * 4096; gpa += 8)
        if (a.vm.readPhys64(gpa) !== b.vm.readPhys64(gpa))
          expect.fail(`gpte at ${gpa.toString(16)} differs`);
      const leaf = a.vcpu.walk(GVA + 0x1010).levels.find((l) => l.leaf)!;
      expect((leaf.after >> 5n) & 3n).toBe(3n); // A and D
    });

    it("bad options or values throw, naming them, before anything changes", () => {
      const { vcpu } = machine(mode);
      const walks = vcpu.stat.walks;
      const bad: [() => unknown, string][] = [
        [() => vcpu.read(GVA, { size: 3 as 1 }), "read.size"],
        [() => vcpu.write(GVA, 256, { size: 1 }), "value"],
        [() => vcpu.write(GVA, 2n ** 32n, { size: 4 }), "value"],
        [() => vcpu.write(GVA, -1), "value"],
        [() => vcpu.fetch(GVA, { write: true } as never), "fetch option"],
        [() => vcpu.read(GVA, { user: 1 as never }), "read.user"],
        [() => vcpu.write(GVA, 1, { implicit: "yes" as never }), "write.implicit"],
        [() => vcpu.read(GVA, { user: true, implicit: true }), "access"],
      ];
      for (const [f, name] of bad) {
        let err: unknown;
        try {
          f();
        } catch (e) {
          err = e;
        }
        expect(err, name).toBeInstanceOf(InvalidArgumentError);
        expect((err as InvalidArgumentError).argument).toBe(name);
      }
      expect(vcpu.stat.walks).toBe(walks);
    });
  });
}

describe("data instructions: the two modes agree", () => {
  for (const ad of [true, false])
    it(`a seeded mix of loads and stores gives the same results and memory with and without TDP (EPT A/D ${ad ? "on" : "off"})`, () => {
      const none = machine("none");
      const tdp = machine("tdp", 0, { eptAccessDirty: ad });
      let x = 0x1234_5678;
      const rnd = () => {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        return x >>> 0;
      };
      const pages = [GVA, GVA + 0x1000, SPLIT_GVA, RO_GVA, NX_GVA, EDGE_GVA, MMIO_GVA, ROM_GVA];
      for (let i = 0; i < 2000; i++) {
        const gva = pages[rnd() % pages.length]! + (rnd() % 4096);
        const size = ([1, 2, 4, 8] as const)[rnd() % 4]!;
        const op = rnd() % 3;
        const value = BigInt(rnd()) & ((1n << BigInt(8 * size)) - 1n);
        const run = (m: typeof none) =>
          op === 0
            ? m.vcpu.write(gva, value, { size })
            : op === 1
              ? m.vcpu.read(gva, { size })
              : m.vcpu.fetch(gva, { size });
        expect(run(tdp), `step ${i}`).toEqual(run(none));
      }
      for (let gpa = 0; gpa < 4 * MiB; gpa += 8)
        if (none.vm.readPhys64(gpa) !== tdp.vm.readPhys64(gpa)) expect.fail(`gpa ${gpa} differs`);
    });

  it("under TDP with dirty logging, a store marks its page and a load does not", () => {
    const { vm, vcpu } = machine("tdp", KVM_MEM_LOG_DIRTY_PAGES);
    vcpu.read(GVA + 0x3000); // map the data page and the tables first
    vm.getDirtyLog(0); // and start from a clean log
    const gfn = (GPA + 0x3000) / 4096;
    const isSet = (bm: Uint32Array) => ((bm[gfn >>> 5]! >>> (gfn & 31)) & 1) === 1;
    vcpu.read(GVA + 0x3008);
    expect(isSet(vm.getDirtyLog(0))).toBe(false);
    vcpu.write(GVA + 0x3008, 9n, { size: 1 });
    expect(isSet(vm.getDirtyLog(0))).toBe(true);
  });
});

/** A bare machine (no MMU) with 64 MiB of RAM and an empty guest page-table builder. */
function bare(mode: "4-level" | "32-bit") {
  const vm = createVm({ mmu: "none" });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const b = new GuestPageTableBuilder(vm, { mode, poolBase: 16 * MiB, poolSize: 4 * MiB });
  return { vm, b };
}

describe("data instructions at the ends of the linear address space", () => {
  it("long mode: a load running off the lower canonical half takes #GP", () => {
    const { vm, b } = bare("4-level");
    const top = 0x7fff_ffff_f000n; // the last page below the non-canonical hole
    b.map(top, 0x20_0000, 0x1000, { writable: true, user: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs(), cpl: 3 });
    expect(vcpu.read(top + 0xff8n)).toEqual({ fault: false, gpa: 0x20_0ff8, value: 0n });
    expect(vcpu.read(top + 0xffcn)).toEqual({ fault: true, vector: 13, errorCode: 0 });
  });

  it("32-bit paging: a store across 4 GiB wraps to linear address 0", () => {
    const { vm, b } = bare("32-bit");
    b.map(0xffff_f000, 0x20_0000, 0x1000, { writable: true, user: true });
    b.map(0, 0x30_0000, 0x1000, { writable: true, user: true });
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ ...b.sregs(), cpl: 3 });
    const value = 0x1122_3344_5566_7788n;
    expect(vcpu.write(0xffff_fffc, value)).toEqual({ fault: false, gpa: 0x20_0ffc });
    expect(hostValue(vm, [0x20_0ffc, 0x20_0ffd, 0x20_0ffe, 0x20_0fff])).toBe(value & 0xffff_ffffn);
    expect(vm.readPhys32(0x30_0000)).toBe(Number(value >> 32n));
  });
});
