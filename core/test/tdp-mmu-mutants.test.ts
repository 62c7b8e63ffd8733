/**
 * TDP MMU behaviours one-line mutations of tdp_mmu.ts slipped through (issue 16). Expected values
 * come from the EPT entry format (kvm-values.ts), KVM's accounting in tdp_mmu.c
 * (handle_changed_spte, handle_removed_pt, tdp_mmu_split_huge_page, kvm_tdp_mmu_map) and the
 * geometry of a 4-level table (512 entries per level), never from the model's own output.
 */
import { describe, expect, it } from "vitest";
import { MmuBugError } from "../src/errors";
import { createVm } from "../src/vm";
import { EPT_A, EPT_D, EPT_R, EPT_W, EPT_X } from "./kvm-values";
import { lastSpte } from "./tdp-helpers";

const PAGE = 4096;
const MIB = 2 ** 20;
const GIB = 2 ** 30;
const LOG = 1; // KVM_MEM_LOG_DIRTY_PAGES

/** A non-paging guest over one slot of `backing` at gpa 0, hva 8 GiB. */
function guest(
  size: number,
  backing: "4k" | "thp" | "hugetlb-1g" = "4k",
  flags = 0,
  features = {},
) {
  const vm = createVm({ features: { selfCheckGfns: true, ...features } });
  /** (Re-)register slot 0 with `f` (KVM_MEM_LOG_DIRTY_PAGES on or off). */
  const region = (f: number) =>
    vm.setUserMemoryRegion({
      slot: 0,
      guestPhysAddr: 0,
      memorySize: size,
      flags: f,
      backing,
      userspaceAddr: 8 * GIB,
    });
  region(flags);
  const vcpu = vm.createVcpu();
  return { vm, vcpu, region, s: vm.stats, tdp: vm.mmu!.tdp! };
}

describe("handle_changed_spte", () => {
  it("a present leaf replaced by a present leaf of another pfn is a KVM bug; a change of bits is not", () => {
    const { vm, vcpu, s, tdp } = guest(2 * MIB);
    vcpu.access(3 * PAGE, {});
    const leaf = lastSpte(vm, vcpu, 3);
    // Same pfn, W cleared (what dirty logging does): allowed, no stat moves.
    tdp.setSpte(leaf.sp, leaf.idx, 1, 3, (leaf.lo & ~EPT_W) >>> 0, leaf.hi);
    expect(s.pages_4k).toBe(1);
    // The next 4 KiB frame (pfn + 1, bit 12 of the entry): tdp_mmu.c BUG()s on this.
    const err = (() => {
      try {
        tdp.setSpte(leaf.sp, leaf.idx, 1, 3, (leaf.lo + PAGE) >>> 0, leaf.hi);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(MmuBugError);
    expect((err as MmuBugError).where).toBe("handle_changed_spte");
    expect((err as MmuBugError).what).toMatch(/gfn 0x3 at level 1/);
  });

  it("an MMIO spte (EPT misconfig W|X) replaced by a writable leaf in a logged slot marks the page dirty", () => {
    // No slot at gpa 1 GiB yet: the access installs an MMIO spte (W|X without R).
    const { vm, vcpu } = guest(2 * MIB);
    expect(vcpu.access(GIB, {})).toMatchObject({ mmio: true });
    const mmio = lastSpte(vm, vcpu, GIB / PAGE);
    expect(mmio.level).toBe(1);
    expect(mmio.lo & (EPT_R | EPT_W | EPT_X)).toBe(EPT_W | EPT_X);
    // A logged slot appears there; the stale MMIO spte faults and a write maps a writable leaf.
    // handle_changed_spte_dirty_log: old not a writable leaf (its W is the misconfig's), new
    // writable → mark_page_dirty_in_slot.
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: GIB, memorySize: 2 * MIB, flags: LOG });
    expect(vcpu.access(GIB, { write: true })).toEqual({ fault: false, gpa: GIB });
    expect(lastSpte(vm, vcpu, GIB / PAGE).lo & EPT_W).toBe(EPT_W);
    expect(vm.memslots.get(1)!.testDirty(GIB / PAGE)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("handle_changed_spte on a non-leaf entry (was_present && !was_leaf)", () => {
  /** One 4K leaf at gfn 3 and the PD entry pointing at its page table. */
  const pde = () => {
    const g = guest(2 * MIB);
    g.vcpu.access(3 * PAGE, {});
    const leaf = lastSpte(g.vm, g.vcpu, 3);
    const pt = leaf.sp;
    const pd = g.tdp.store.parentSp[pt]!;
    const idx = g.tdp.store.parentIdx[pt]!;
    const spt = g.tdp.store.spt[pd]!;
    return { ...g, pt, pd, idx, lo: spt[idx * 2]!, hi: spt[idx * 2 + 1]! };
  };

  it("the same table with other bits (A cleared): the table and its leaf stay", () => {
    const { tdp, s, pt, pd, idx, lo, hi } = pde();
    tdp.setSpte(pd, idx, 2, 0, (lo & ~EPT_A) >>> 0, hi);
    expect(tdp.store.isLive(pt)).toBe(true);
    expect([s.pages_4k, s.tdp_mmu_pages]).toEqual([1, 3]);
  });

  it("pointed at another table (pfn changed): the old table is torn down with its leaf", () => {
    const { tdp, s, pt, pd, idx, lo, hi } = pde();
    // A second, empty page table; the entry's frame bits (12 and up) now name it.
    const other = tdp.core.allocDirectSp(tdp.store.role[pt]!, 0, true);
    const delta = tdp.store.spPfn(other) - tdp.store.spPfn(pt);
    tdp.setSpte(pd, idx, 2, 0, (lo + delta * PAGE) >>> 0, hi);
    expect(tdp.store.isLive(pt)).toBe(false);
    // handle_removed_pt: the leaf uncounted, the table's tdp_mmu_pages dropped (the new one was
    // not linked through tdp_mmu_link_sp, so it is not counted).
    expect([s.pages_4k, s.tdp_mmu_pages]).toEqual([0, 2]);
  });
});

/** The spte changes a trace recorded, as "level:gfn" (gfn in hex), sorted. */
function changed(events: readonly { name: string; fields: Record<string, unknown> }[]): string[] {
  return events
    .filter((e) => e.name === "kvm_tdp_mmu_spte_changed")
    .map((e) => `${e.fields.level}:${e.fields.gfn}`)
    .sort();
}

describe("tdp_mmu_zap_root / handle_removed_pt", () => {
  it("the fast zap reports each removed entry with the gfn its position maps (gfn = base + i * 512^(level-1))", () => {
    const vm = createVm({ features: { selfCheckGfns: true } });
    // PML4 entry 1 starts at gfn 2^27 (512 GiB): a slot there and one at gfn 0.
    const far = 2 ** 27;
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * MIB, flags: 0 });
    vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: far * PAGE, memorySize: 4 * MIB, flags: 0 });
    const vcpu = vm.createVcpu();
    vcpu.enterGuest();
    // Non-paging guests reach only 4 GiB: map through the stage 2 directly.
    expect(vcpu.cpu.stage2(5, 0, true)).toBeGreaterThan(0);
    expect(vcpu.cpu.stage2(far + 512 + 3, 0, true)).toBeGreaterThan(0);
    const s = vm.stats;
    // Two paths of PDPT + PD + PT below the root.
    expect([s.pages_4k, s.tdp_mmu_pages]).toEqual([2, 6]);
    vm.startTrace(1000);
    vm.zapAllFast();
    const hex = (n: number) => `0x${n.toString(16)}`;
    expect(changed(vm.stopTrace().events)).toEqual(
      [
        "4:0x0", // PML4[0]
        "3:0x0",
        "2:0x0",
        "1:0x5",
        `4:${hex(far)}`, // PML4[1]
        `3:${hex(far)}`, // PDPT[0] below it
        `2:${hex(far + 512)}`, // PD[1]: the second 2 MiB
        `1:${hex(far + 512 + 3)}`,
      ].sort(),
    );
    expect([s.pages_4k, s.pages_2m, s.pages_1g, s.tdp_mmu_pages]).toEqual([0, 0, 0, 0]);
    expect(vm.audit()).toEqual([]);
  });

  it("zapping a PDE that holds a page table removes each of its leaves once", () => {
    const { vm, vcpu, s } = guest(4 * MIB);
    // 300 leaves in the first 2 MiB, 7 in the second.
    for (let g = 0; g < 300; g++) vcpu.access(g * PAGE, {});
    for (let g = 512; g < 519; g++) vcpu.access(g * PAGE, {});
    expect([s.pages_4k, s.tdp_mmu_pages]).toEqual([307, 4]); // PDPT, PD, two PTs
    const checks = s.gfn_self_checks;
    vm.startTrace(1000);
    vm.zapAllFast();
    // selfCheckGfns: each leaf that goes away has its stored gfn checked, once.
    expect(s.gfn_self_checks - checks).toBe(307);
    const ev = changed(vm.stopTrace().events);
    const leaves = ev.filter((e) => e.startsWith("1:"));
    expect(leaves.length).toBe(307);
    expect(new Set(leaves).size).toBe(307);
    expect(ev.filter((e) => e.startsWith("2:"))).toEqual(["2:0x0", "2:0x200"]);
    expect([s.pages_4k, s.tdp_mmu_pages]).toEqual([0, 0]);
  });
});

describe("tdp_mmu_zap_spte_atomic (zapSpte)", () => {
  it("a gfn inside a 2M leaf zaps that leaf (entry gfn aligned down), one flush", () => {
    const { vm, vcpu, s } = guest(4 * MIB, "thp");
    vcpu.access(0, {});
    vcpu.access(2 * MIB, {});
    expect(s.pages_2m).toBe(2);
    vm.startTrace(100);
    // gfn 0x205 lies in the second 2M leaf, whose entry maps gfn 0x200.
    expect(vm.zapSpte(0x205)).toBe(1);
    const ev = vm.stopTrace().events;
    expect(changed(ev)).toEqual(["2:0x200"]);
    expect(ev.filter((e) => e.name === "mmulab_flush_remote_tlbs").length).toBe(1);
    expect([s.pages_2m, s.remote_tlb_flush_requests]).toEqual([1, 1]);
    expect(vm.zapSpte(0x205)).toBe(0);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_tdp_mmu_map: a write below a huge leaf while logging", () => {
  /** A 2 MiB THP slot, one write mapping it with a 2M leaf, then logging on without eager split. */
  const logged = (hugeOnDirtyWrite: "split" | "zap") => {
    const g = guest(2 * MIB, "thp", 0, { eagerPageSplit: false, hugeOnDirtyWrite });
    g.vcpu.access(0, { write: true });
    g.region(LOG);
    // The huge leaf lost W: one flush, still one 2M leaf, root + PDPT + PD.
    expect([g.s.pages_2m, g.s.remote_tlb_flush_requests, g.s.tdp_mmu_pages]).toEqual([1, 1, 2]);
    return g;
  };

  it("v5.10-5.19 (zap): the huge leaf is zapped with its own flush, an empty table linked, one 4K leaf", () => {
    const { vm, vcpu, s } = logged("zap");
    vm.startTrace(100, ["mmulab_flush_remote_tlbs"]);
    vcpu.access(5 * PAGE, { write: true });
    const flushes = vm.stopTrace().events.map((e) => e.fields.reason);
    expect(flushes).toEqual(["zap_huge_spte"]);
    // Only the written page is mapped again; nothing was split.
    expect([s.pages_2m, s.pages_4k, s.huge_splits]).toEqual([0, 1, 0]);
    expect([s.tdp_mmu_pages, s.remote_tlb_flush_requests]).toEqual([3, 2]);
    expect(vm.memslots.get(0)!.testDirty(5)).toBe(true);
    expect(vcpu.access(6 * PAGE, {})).toEqual({ fault: false, gpa: 6 * PAGE });
    expect(s.pages_4k).toBe(2);
    expect(vm.audit()).toEqual([]);
  });

  it("~v6.0+ (split): 512 pieces in a new table, no flush, the written piece writable", () => {
    const { vm, vcpu, s } = logged("split");
    vm.startTrace(2000);
    vcpu.access(5 * PAGE, { write: true });
    const ev = vm.stopTrace().events;
    expect(ev.filter((e) => e.name === "mmulab_flush_remote_tlbs")).toEqual([]);
    const split = ev.filter((e) => e.name === "kvm_mmu_split_huge_page");
    expect(split.map((e) => [e.fields.gfn, e.fields.level, e.fields.errno])).toEqual([
      ["0x0", 2, 0],
    ]);
    expect([s.pages_2m, s.pages_4k, s.huge_splits]).toEqual([0, 512, 1]);
    expect([s.tdp_mmu_pages, s.remote_tlb_flush_requests]).toEqual([3, 1]);
    // The pieces map consecutive frames of the 2M page (make_huge_page_split_spte).
    const p0 = lastSpte(vm, vcpu, 0);
    const p511 = lastSpte(vm, vcpu, 511);
    expect(p511.lo - p0.lo).toBe(511 * PAGE);
    expect([p0.level, p511.level]).toEqual([1, 1]);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_tdp_mmu_map: a 1G leaf split on the way down (tdp_mmu_split_huge_page)", () => {
  it("a write below a write-protected 1G leaf splits it into 512 2M pieces, then the one on the path into 512 4K", () => {
    const { vm, vcpu, region, s } = guest(GIB, "hugetlb-1g", 0, { eagerPageSplit: false });
    vcpu.access(0, { write: true });
    expect(s.pages_1g).toBe(1);
    region(LOG);
    const tables = s.tdp_mmu_pages;
    const gfn = 0x12345;
    vcpu.access(gfn * PAGE, { write: true });
    // selfCheckGfns: each piece's gfn (base + i * 512^(level-1)) is checked against the formula.
    expect([s.pages_1g, s.pages_2m, s.pages_4k, s.huge_splits]).toEqual([0, 511, 512, 2]);
    expect(s.tdp_mmu_pages).toBe(tables + 2);
    expect(vm.memslots.get(0)!.testDirty(gfn)).toBe(true);
    expect(vm.audit()).toEqual([]);
  });
});

describe("kvm_mmu_set_spte for a TDP fault", () => {
  it("carries the leaf as installed (A set: not a prefetch) and its sptep (table id * 512 + index)", () => {
    const { vm, vcpu } = guest(2 * MIB);
    vm.startTrace(100, ["kvm_mmu_set_spte"]);
    vcpu.access(0x1f * PAGE, {});
    const [ev] = vm.stopTrace().events;
    const leaf = lastSpte(vm, vcpu, 0x1f);
    expect(ev!.fields.sptep).toBe(`0x${(leaf.sp * 512 + leaf.idx).toString(16)}`);
    expect(leaf.idx).toBe(0x1f);
    expect((BigInt(ev!.fields.spte as string) & BigInt(EPT_A)) !== 0n).toBe(true);
  });
});

describe("kvm_mmu_do_page_fault's statistics with a TDP MMU fault", () => {
  it("v4-style statistics count pf_fixed for each fault that installed a leaf", () => {
    const { vcpu, s } = guest(2 * MIB, "4k", 0, { statsStyle: "legacy" });
    for (let g = 0; g < 3; g++) vcpu.access(g * PAGE, {});
    expect(s.pf_fixed).toBe(3);
  });
});

describe("tracepoints fire only while tracing (kvm_stat counts what perf enabled)", () => {
  it("faults, splits, zaps and the fast path before startTrace count nothing; after it, each counts", () => {
    const { vm, vcpu, region } = guest(4 * MIB, "thp", 0, { eagerPageSplit: true });
    const run = () => {
      vcpu.access(0, { write: true }); // 2M leaf
      vcpu.access(2 * MIB, {}); // 2M leaf
      // Logging on: eager split of both, then write-protect the pieces.
      region(LOG);
      vcpu.access(3 * PAGE, { write: true }); // fast path: W back on a 4K piece
      vm.zapSpte(7);
      vcpu.access(7 * PAGE, {}); // refault through kvm_tdp_mmu_map
      vm.zapGfnRange(0, 1024);
      vm.zapAllFast();
    };
    run();
    const zero = (c: Record<string, number>) => Object.values(c).every((n) => n === 0);
    expect(zero(vm.tracepointCounts("kvmmmu"))).toBe(true);
    expect(zero(vm.tracepointCounts("kvm"))).toBe(true);
    // The same work while tracing: the TDP MMU's tracepoints fire.
    region(0);
    vm.startTrace(100_000);
    run();
    vm.stopTrace();
    const c = vm.tracepointCounts("kvmmmu");
    expect(c.kvm_mmu_split_huge_page).toBe(2);
    expect(c.kvm_mmu_spte_requested).toBeGreaterThan(0);
    expect(c.kvm_mmu_set_spte).toBeGreaterThan(0);
    expect(c.kvm_tdp_mmu_spte_changed).toBeGreaterThan(0);
  });
});

describe("TDP roots: kvm_tdp_mmu_get_vcpu_root_hpa, kvm_tdp_mmu_put_root, the fast zap", () => {
  /** Two vCPUs on one 2 MiB slot, both having entered the guest once (one shared root). */
  const twoVcpus = () => {
    const { vm, vcpu, s, tdp } = guest(2 * MIB);
    const other = vm.createVcpu();
    vcpu.access(0, {});
    other.access(PAGE, {});
    return { vm, a: vcpu, b: other, s, tdp };
  };

  it("vCPUs share the valid root; its count is one per vCPU plus the MMU's own", () => {
    const { a, b, tdp, s } = twoVcpus();
    expect(a.mmu.root).toBe(b.mmu.root);
    expect(tdp.roots).toEqual([a.mmu.root]);
    expect(tdp.store.rootCount[a.mmu.root]).toBe(3);
    expect(s.tdp_mmu_pages).toBe(3); // PDPT, PD, PT (the root is not counted)
  });

  it("after the fast zap a reloading vCPU gets a new valid root, never the invalid one a vCPU still holds", () => {
    const { vm, a, b, tdp, s } = twoVcpus();
    const old = a.mmu.root;
    vm.zapAllFast();
    // The MMU's reference is gone; both vCPUs still pin the invalid root.
    expect(tdp.isInvalidRoot(old)).toBe(true);
    expect(tdp.store.rootCount[old]).toBe(2);
    expect(s.tdp_mmu_pages).toBe(0);
    a.access(0, {});
    expect(a.mmu.root).not.toBe(old);
    expect(tdp.isInvalidRoot(a.mmu.root)).toBe(false);
    expect(tdp.roots.length).toBe(2);
    expect(tdp.store.rootCount[old]).toBe(1); // b's
    expect(tdp.store.rootCount[a.mmu.root]).toBe(2); // a's + the MMU's
    // The last holder drops it: freed, out of the list; b joins a's root.
    b.access(PAGE, {});
    expect(b.mmu.root).toBe(a.mmu.root);
    expect(tdp.roots).toEqual([a.mmu.root]);
    expect(tdp.store.rootCount[a.mmu.root]).toBe(3);
    // New root + PDPT + PD + PT.
    expect(s.spt_pages_live).toBe(4);
    expect(vm.audit()).toEqual([]);
  });

  it("a second fast zap before the vCPUs reload drops the MMU's reference only once", () => {
    const { vm, a, b, tdp, s } = twoVcpus();
    const old = a.mmu.root;
    vm.zapAllFast();
    vm.zapAllFast(); // the old root is already invalid and zapped: nothing to drop
    expect(tdp.store.rootCount[old]).toBe(2);
    a.access(0, {});
    b.access(0, {});
    expect(tdp.roots).toEqual([a.mmu.root]);
    expect(s.spt_pages_live).toBe(4);
    expect(vm.audit()).toEqual([]);
  });
});

describe("handle_changed_spte_dirty_log: only a 4K leaf that becomes writable dirties its page", () => {
  it("a fault maps a writable leaf and dirties its page (make_spte); the tables it links dirty nothing", () => {
    const { vm, vcpu } = guest(4 * MIB, "4k", LOG);
    // A read fault in a logged slot still maps the page writable (ACC_WRITE_MASK), so KVM
    // marks it dirty at once; the PD entries linked on the way map gfns 0 and 0x200.
    vcpu.access(5 * PAGE, {});
    vcpu.access(600 * PAGE, {}); // a second page table (PD entry 1)
    const log = vm.getDirtyLog(0);
    expect(log[0]).toBe(1 << 5);
    expect(log[600 >>> 5]).toBe(1 << (600 & 31));
    expect(log.filter((w) => w !== 0).length).toBe(2);
  });

  it("a read-only slot's leaves are not writable: faulting them in dirties nothing", () => {
    const { vm, vcpu } = guest(2 * MIB, "4k", LOG | 2 /* KVM_MEM_READONLY */);
    for (const g of [0, 5, 300]) vcpu.access(g * PAGE, {});
    expect(lastSpte(vm, vcpu, 5).lo & EPT_W).toBe(0);
    expect(vm.stats.pages_4k).toBe(3);
    expect([...vm.getDirtyLog(0)].every((w) => w === 0)).toBe(true);
  });

  it("PML: enabling logging clears D on writable leaves (W kept) and dirties nothing; a later write does", () => {
    const { vm, vcpu, region } = guest(2 * MIB, "4k", 0, { pml: true });
    vcpu.access(7 * PAGE, { write: true }); // writable, dirty leaf before logging
    region(LOG);
    const leaf = lastSpte(vm, vcpu, 7);
    expect(leaf.lo & (EPT_W | EPT_D)).toBe(EPT_W); // kvm_mmu_slot_leaf_clear_dirty
    expect([...vm.getDirtyLog(0)].every((w) => w === 0)).toBe(true);
    vcpu.access(7 * PAGE, { write: true }); // the CPU sets D, PML logs the gpa
    expect(vm.getDirtyLog(0)[0]).toBe(1 << 7);
  });
});

describe("seed 2017's possible-writable bitmap through splits and zaps", () => {
  it("eager split logs the 512 pieces once each; zapping them clears their bits (audit recount)", () => {
    const { vm, vcpu, region, s } = guest(2 * MIB, "thp", 0, { possibleWritableBitmap: true });
    vcpu.access(0, { write: true });
    region(LOG);
    expect([s.huge_splits, s.pages_4k]).toEqual([1, 512]);
    expect(vm.audit()).toEqual([]);
    vm.zapGfnRange(0, 512);
    expect(s.pages_4k).toBe(0);
    expect(vm.audit()).toEqual([]);
  });
});

describe("pages the TDP MMU allocates are TDP MMU pages (sp->tdp_mmu_page)", () => {
  it("after faults, a split and a zap-mode refault every live page is marked tdp", () => {
    for (const hugeOnDirtyWrite of ["split", "zap"] as const) {
      const { vm, vcpu, region } = guest(4 * MIB, "thp", 0, {
        eagerPageSplit: false,
        hugeOnDirtyWrite,
      });
      vcpu.access(0, { write: true });
      vcpu.access(3 * MIB, {});
      region(LOG);
      vcpu.access(5 * PAGE, { write: true });
      const pages = vm.shadowPages().pages;
      // root, PDPT, PD and the new page table
      expect(pages.length).toBe(4);
      expect(pages.every((p) => p.tdp)).toBe(true);
    }
  });
});

describe("a huge leaf replacing a page table", () => {
  it("is attributed to that flush in the trace (kvm_flush_remote_tlbs_gfn in tdp_mmu_map_handle_target_level)", () => {
    const { vm, vcpu, region } = guest(2 * MIB, "thp", LOG, { collapseOnLogDisable: "none" });
    vcpu.access(0, {}); // 4K while logging: a page table under PD entry 0
    region(0);
    vm.startTrace(100, ["mmulab_flush_remote_tlbs"]);
    vcpu.access(MIB, {}); // unmapped: the 2M leaf goes over the table
    const reasons = vm.stopTrace().events.map((e) => e.fields.reason);
    expect(reasons.at(-1)).toBe("huge_leaf_over_table");
    expect(vm.stats.pages_2m).toBe(1);
  });
});
