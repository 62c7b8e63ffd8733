/**
 * Where shadow paging is not architecturally invisible, as in KVM: CR0.WP=0 with CR4.SMAP=1.
 * KVM lets a supervisor write reach a read-only guest page when CR0.WP=0 by turning the page into
 * a kernel page (spte W=1, U=0; paging_tmpl.h, FNAME(page_fault), "cr0.wp=0" in
 * Documentation/virt/kvm/x86/mmu.rst). When SMAP allowed that write (an explicit access with
 * RFLAGS.AC=1), the hardware later sees a supervisor page, so supervisor accesses that SMAP
 * should stop (implicit ones at CPL 3; explicit ones with AC=0) no longer fault. The bare machine
 * and TDP follow the SDM (Vol. 3A 4.6: with SMAP, an implicit supervisor access or one with AC=0
 * may not write, nor read, a user-mode address). The property suite keeps out of this state.
 */
import { describe, expect, it } from "vitest";
import { createVm, type MmuMode } from "../src";

const MiB = 1024 * 1024;
const P = 1n;
const RW = 2n;
const US = 4n;
const A = 0x20n;
const PML4 = 1 * MiB;
const PDPT = PML4 + 0x1000;
const PD = PML4 + 0x2000;
const PT = PML4 + 0x3000;
const DATA = 4 * MiB;
/** The user page under test: read-only in the guest. */
const GVA = 0x40000000;
const CR0_PE = 1;
const CR0_PG = 0x80000000;
const CR4_PAE = 1 << 5;
const CR4_SMAP = 1 << 21;
const EFER_LME_LMA = (1 << 8) | (1 << 10);
const RFLAGS_AC = 1 << 18;
/** #PF error code bits (SDM Vol. 3A 4.7). */
const PF_P = 1;
const PF_W = 2;

function machine(mmu: MmuMode) {
  const vm = createVm({ mmu, maxPhysAddrBits: 46 });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 8 * MiB, flags: 0 });
  vm.guestWrite64(PML4, BigInt(PDPT) | P | RW | US | A);
  vm.guestWrite64(PDPT + 1 * 8, BigInt(PD) | P | RW | US | A);
  vm.guestWrite64(PD, BigInt(PT) | P | RW | US | A);
  // User, read-only, accessed.
  vm.guestWrite64(PT, BigInt(DATA) | P | US | A);
  const vcpu = vm.createVcpu();
  const sregs = (cpl: number) =>
    vcpu.setSregs({
      // CR0.WP clear: supervisor writes ignore R/W.
      cr0: (CR0_PE | CR0_PG) >>> 0,
      cr3: PML4,
      cr4: CR4_PAE | CR4_SMAP,
      efer: EFER_LME_LMA,
      cpl,
    });
  sregs(0);
  return { vm, vcpu, sregs };
}

describe("CR0.WP=0 and CR4.SMAP=1 under shadow paging (a KVM deviation the simulator keeps)", () => {
  for (const mmu of ["none", "tdp", "shadow"] as const) {
    it(`${mmu}: a supervisor write SMAP allows, then accesses SMAP should stop`, () => {
      const { vcpu, sregs } = machine(mmu);
      // Explicit supervisor write with AC=1: SMAP allows it, and CR0.WP=0 ignores R/W.
      vcpu.setRflags(RFLAGS_AC | 2);
      expect(vcpu.write(GVA, 1n, { size: 8, user: false }).fault).toBe(false);
      // An implicit supervisor write at CPL 3 (SMAP applies whatever AC is).
      sregs(3);
      const implicitWrite = vcpu.write(GVA + 8, 2n, { size: 8, user: false });
      // An explicit supervisor read at CPL 0 with AC=0.
      sregs(0);
      vcpu.setRflags(2);
      const readAc0 = vcpu.read(GVA, { size: 8, user: false });
      if (mmu === "shadow") {
        // KVM made the page a kernel page at the first write: the hardware sees no user page.
        expect(implicitWrite.fault).toBe(false);
        expect(readAc0.fault).toBe(false);
      } else {
        expect([implicitWrite.fault, implicitWrite.vector, implicitWrite.errorCode]).toEqual([
          true,
          14,
          PF_P | PF_W,
        ]);
        expect([readAc0.fault, readAc0.vector, readAc0.errorCode]).toEqual([true, 14, PF_P]);
      }
    });
  }
});
