/**
 * The MMU trace: small scenarios replayed with tracing on, the exact event sequence checked
 * against the order the kernel's code emits its tracepoints (mmu.c direct_map,
 * tdp_mmu.c kvm_tdp_mmu_map, paging_tmpl.h FNAME(page_fault)/FNAME(fetch)), with field values
 * computed from the architecture (EPT bit positions, role bits); the ring's bound; the
 * Chrome/Perfetto JSON checked against the trace-event format with a JSON schema; the
 * `perf script` text; the kvm_stat view and the rmap histogram.
 */
import Ajv from "ajv";
import { describe, expect, it } from "vitest";
import { createVm, FaultHeatmap, InvalidArgumentError, JUPYTER_DISPLAY } from "../src";
import { TRACE_MAX_CAPACITY, TRACE_RECORD_BYTES } from "../src/mmu/mmutrace";

const MIB = 2 ** 20;
const HVA = 4 * 2 ** 30; // slot hva: pfn = hva >> 12 + (gfn - base)
const hex = (n: number | bigint) => `0x${n.toString(16)}`;

/** A direct role word: level | direct | ACC_ALL << 8 | efer_nx | cr0_wp. */
const directRole = (level: number) => level | 0x80 | (7 << 8) | (1 << 12) | (1 << 13);

/** The EPT leaf a read fault installs for a writable 4K slot (spec §3.2 and §3.6). */
function eptLeaf(pfn: number): string {
  const bits = [0, 1, 2, 8, 9, 11, 57, 58]; // R W X, A, D, MMU-present, Host-/MMU-writable
  let v = (BigInt(pfn) << 12n) | (6n << 3n) | (1n << 6n); // memtype WB, ignore PAT
  for (const b of bits) v |= 1n << BigInt(b);
  return hex(v);
}

/** Slot 0: 8 MiB of 4K pages at gpa 0 (or `size` bytes of `backing`), hva {@link HVA}. */
function slot(
  vm: ReturnType<typeof createVm>,
  flags = 0,
  { size = 8 * MIB, backing = "4k" as "4k" | "thp" } = {},
) {
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: size,
    flags,
    backing,
    userspaceAddr: HVA,
  });
}

describe("trace: exact event sequences", () => {
  it("legacy direct MMU: root load, fault, spte_requested before the descent, three get_page, set_spte", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    slot(vm);
    const vcpu = vm.createVcpu();
    vm.startTrace(100);
    vcpu.access(0x5000);
    vm.zapGfnRange(5, 6);
    vcpu.access(0x5000);
    const t = vm.stopTrace();
    const pt = vm.shadowPages().pages.find((p) => p.level === 1)!.id;
    const pfn = HVA / 4096 + 5;
    const getPage = (level: number) => ({
      name: "kvm_mmu_get_page",
      vcpu: 0,
      fields: {
        gfn: "0x0",
        role: hex(directRole(level)),
        root_count: 0,
        unsync: false,
        created: true,
      },
    });
    const fault = [
      {
        name: "kvm_page_fault",
        vcpu: 0,
        fields: { vcpu_id: 0, fault_address: "0x5000", error_code: "0x4" },
      },
      { name: "kvm_mmu_spte_requested", vcpu: 0, fields: { gfn: "0x5", pfn: hex(pfn), level: 1 } },
    ];
    const setSpte = {
      name: "kvm_mmu_set_spte",
      vcpu: 0,
      fields: { gfn: "0x5", spte: eptLeaf(pfn), sptep: hex(pt * 512 + 5), level: 1 },
    };
    const done = {
      name: "mmulab_page_fault_done",
      vcpu: 0,
      fields: { vcpu_id: 0, gfn: "0x5", level: 1, ret: "fixed", retry_reason: "" },
    };
    expect(t.events.map(({ seq: _, ...e }) => e)).toEqual([
      getPage(4), // kvm_mmu_load: the root
      ...fault,
      getPage(3),
      getPage(2),
      getPage(1),
      setSpte,
      done,
      { name: "mmulab_flush_remote_tlbs", vcpu: -1, fields: { reason: "zap_gfn_range" } },
      ...fault, // the path is there: no get_page
      setSpte,
      done,
    ]);
    expect(t.events.map((e) => e.seq)).toEqual(t.events.map((_, i) => i));
  });

  it("TDP MMU: every link and the leaf through kvm_tdp_mmu_spte_changed, in descent order", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    vm.startTrace(100);
    vcpu.access(0x5000, { write: true });
    const names = vm.stopTrace().events.map((e) => [e.name, e.fields.level ?? ""]);
    expect(names).toEqual([
      ["kvm_page_fault", ""],
      ["kvm_mmu_spte_requested", 1],
      ["kvm_tdp_mmu_spte_changed", 4], // L4 entry → new L3 table
      ["kvm_tdp_mmu_spte_changed", 3],
      ["kvm_tdp_mmu_spte_changed", 2],
      ["kvm_tdp_mmu_spte_changed", 1], // the leaf
      ["kvm_mmu_set_spte", 1],
      ["mmulab_page_fault_done", 1],
    ]);
  });

  it("shadow paging: the walker's tracepoints, then indirect pages, then the leaf; an injected #PF is a retry with its reason", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
    vm.guestWrite64(0x100000, 0x101007n);
    vm.guestWrite64(0x101000, 0x102007n);
    vm.guestWrite64(0x102010, 0x103007n);
    vm.guestWrite64(0x103000, 0x200007n);
    const vcpu = vm.createVcpu();
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0x900, cpl: 3 });
    vm.startTrace(100);
    vcpu.access(0x400000);
    vcpu.access(0x401000); // PT entry 1 not present: #PF to the guest
    const ev = vm.stopTrace().events;
    expect(ev.map((e) => e.name)).toEqual([
      "kvm_mmu_get_page", // root (gfn 0x100) at kvm_mmu_load
      "kvm_page_fault",
      "kvm_mmu_pagetable_walk",
      "kvm_mmu_paging_element",
      "kvm_mmu_paging_element",
      "kvm_mmu_paging_element",
      "kvm_mmu_paging_element",
      "kvm_mmu_get_page",
      "kvm_mmu_get_page",
      "kvm_mmu_get_page",
      "kvm_mmu_spte_requested",
      "kvm_mmu_set_spte",
      "mmulab_page_fault_done",
      "kvm_page_fault",
      "kvm_mmu_pagetable_walk",
      "kvm_mmu_paging_element",
      "kvm_mmu_paging_element",
      "kvm_mmu_paging_element",
      "kvm_mmu_paging_element",
      "kvm_mmu_walker_error",
      "mmulab_page_fault_done",
    ]);
    // The elements are the gptes as the loop read them, top level first: A still clear, since
    // FNAME(walk_addr_generic) traces each one before the A/D write-back after the loop.
    expect(ev.slice(3, 7).map((e) => [e.fields.pte, e.fields.level])).toEqual([
      ["0x101007", 4],
      ["0x102007", 3],
      ["0x103007", 2],
      ["0x200007", 1],
    ]);
    // The second walk reads the upper levels with the A bits the first one set.
    expect(ev.slice(-6, -2).map((e) => [e.fields.pte, e.fields.level])).toEqual([
      ["0x101027", 4],
      ["0x102027", 3],
      ["0x103027", 2],
      ["0x0", 1],
    ]);
    expect(ev.at(-2)!.fields).toEqual({ pferr: "0x4" });
    expect(ev.at(-1)!.fields).toMatchObject({ ret: "retry", retry_reason: "guest #PF injected" });
  });

  it("shadow paging, PAE guest: the PDPTE register is traced at level 3 before its present check", () => {
    const vm = createVm({ mmu: "shadow" });
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 0x4000 * 4096, flags: 0 });
    // PDPT at 0x100000: entry 0 → PD 0x102 (PDPTEs have no A bit and no RW/US), entry 1 absent.
    vm.guestWrite64(0x100000, 0x102001n);
    vm.guestWrite64(0x102010, 0x103007n); // PD[2] → PT 0x103 (gva 0x400000)
    vm.guestWrite64(0x103000, 0x200007n);
    const vcpu = vm.createVcpu();
    // CR0 = PE|WP|PG, CR4 = PAE, no long mode: PAE paging, PDPTEs loaded at the CR3 load.
    vcpu.setSregs({ cr0: 0x80010001, cr3: 0x100000, cr4: 0x20, efer: 0, cpl: 3 });
    vm.startTrace(100);
    vcpu.access(0x400000);
    vcpu.access(0x40000000); // PDPTE 1 not present
    const walks = vm
      .stopTrace()
      .events.filter((e) => /^kvm_mmu_(pagetable_walk|paging_element|walker_error)$/.test(e.name))
      .map((e) => [e.name, e.fields.pte ?? e.fields.pferr ?? "", e.fields.level ?? ""]);
    // pferr: a user read is PFERR_USER (0x4); the failed walk's error code adds no P bit.
    expect(walks).toEqual([
      ["kvm_mmu_pagetable_walk", "0x4", ""],
      ["kvm_mmu_paging_element", "0x102001", 3],
      ["kvm_mmu_paging_element", "0x103007", 2],
      ["kvm_mmu_paging_element", "0x200007", 1],
      ["kvm_mmu_pagetable_walk", "0x4", ""],
      ["kvm_mmu_paging_element", "0x0", 3],
      ["kvm_mmu_walker_error", "0x4", ""],
    ]);
  });

  it("TDP eager split: the link's kvm_tdp_mmu_spte_changed, then kvm_mmu_split_huge_page with the huge spte (tdp_mmu_split_huge_page, out:)", () => {
    const vm = createVm();
    const thp = { size: 4 * MIB, backing: "thp" as const };
    slot(vm, 0, thp);
    const vcpu = vm.createVcpu();
    vcpu.access(0x200000); // one 2M leaf for gfn 0x200
    vm.startTrace(10000);
    slot(vm, 1, thp); // KVM_MEM_LOG_DIRTY_PAGES: eager split, then write-protect the 512 pieces
    const ev = vm.stopTrace().events;
    const [link, split] = ev;
    expect(link).toMatchObject({
      name: "kvm_tdp_mmu_spte_changed",
      fields: { gfn: "0x200", level: 2 },
    });
    expect(split).toMatchObject({
      name: "kvm_mmu_split_huge_page",
      fields: { gfn: "0x200", level: 2, errno: 0 },
    });
    // The event carries the huge spte the link replaced: a leaf (bit 7, PS) mapping the 2M frame.
    const huge = BigInt(split!.fields.spte as string);
    expect(huge).toBe(BigInt(link!.fields.old_spte as string));
    expect((huge >> 7n) & 1n).toBe(1n);
    expect((huge >> 21n) & ((1n << 31n) - 1n)).toBe(BigInt(HVA / 2 ** 21 + 1));
    expect((BigInt(link!.fields.new_spte as string) >> 7n) & 1n).toBe(0n); // now a table
    // Then the 512 pieces lose W, each through handle_changed_spte.
    expect(ev.slice(2).map((e) => e.name)).toEqual([
      ...new Array(512).fill("kvm_tdp_mmu_spte_changed"),
      "mmulab_flush_remote_tlbs",
    ]);
  });

  it("mmulab_collapse comes when the collapse is done, with what it changed (v6.12 zap, v6.13 recover)", () => {
    for (const [preset, flushes] of [
      ["v6.12", 2], // zap_collapsible_spte_range: one atomic zap (and flush) per PDE
      ["v6.13", 1], // kvm_mmu_recover_huge_pages: one flush for the slot
    ] as const) {
      const vm = createVm({ preset });
      const thp = { size: 4 * MIB, backing: "thp" as const };
      slot(vm, 0, thp);
      const vcpu = vm.createVcpu();
      vcpu.access(0);
      vcpu.access(0x200000);
      slot(vm, 1, thp); // eager split: both 2M regions become 512 4K leaves
      vm.startTrace(10000, ["mmulab_collapse", "mmulab_flush_remote_tlbs"]);
      slot(vm, 0, thp);
      const ev = vm.stopTrace().events;
      expect(ev.map((e) => e.name)).toEqual([
        ...new Array(flushes).fill("mmulab_flush_remote_tlbs"),
        "mmulab_collapse",
      ]);
      // Two regions of 2 MiB: two PDEs zapped, or two huge sptes made in place.
      expect(ev.at(-1)!.fields).toEqual({
        mode: preset === "v6.12" ? "zap" : "recover",
        start: "0x0",
        end: "0x400",
        changed: 2,
      });
    }
  });

  it("TDP fast page fault: fast_page_fault alone, no kvm_tdp_mmu_spte_changed (fast_pf_fix_direct_spte is a cmpxchg)", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    vcpu.access(0x5000, { write: true });
    slot(vm, 1); // the 4K leaf loses W, keeps MMU-writable
    vm.startTrace(100);
    vcpu.access(0x5000, { write: true });
    const ev = vm.stopTrace().events;
    expect(ev.map((e) => e.name)).toEqual([
      "kvm_page_fault",
      "fast_page_fault",
      "mmulab_page_fault_done",
    ]);
    expect(vm.stats.pf_fast).toBe(1);
    const fast = ev[1]!.fields;
    expect(fast.ret).toBe("fixed");
    // The spte gained W (bit 1): new = old | 2.
    expect(BigInt(fast.new_spte as string)).toBe(BigInt(fast.old_spte as string) | 2n);
    // Still marked dirty, as fast_pf_fix_direct_spte does (W 0 -> 1).
    expect(vm.getDirtyLog(0)[0]).toBe(1 << 5);
  });

  it("fast_page_fault is traced whatever its outcome: a write the fast path cannot fix goes on to the slow path", () => {
    const vm = createVm();
    slot(vm, 2); // KVM_MEM_READONLY
    const vcpu = vm.createVcpu();
    vcpu.access(0x5000);
    vm.startTrace(100);
    // A write to a read-only slot: the spte is present but neither writable nor MMU-writable, so
    // fast_page_fault leaves it (RET_PF_INVALID) and the slow path emulates (an MMIO exit).
    vcpu.access(0x5000, { write: true });
    const ev = vm.stopTrace().events;
    const fast = ev.filter((e) => e.name === "fast_page_fault");
    expect(fast).toHaveLength(1);
    expect(fast[0]!.fields.ret).toBe("invalid");
    expect(fast[0]!.fields.vcpu_id).toBe(0);
    expect(fast[0]!.fields.new_spte).toBe(fast[0]!.fields.old_spte);
    expect(vm.stats.pf_fast).toBe(0);
    expect(ev.map((e) => e.name).slice(0, 2)).toEqual(["kvm_page_fault", "fast_page_fault"]);
  });

  it("without EPT A/D bits a not-present fault tries the fast path too (page_fault_can_be_fast: !kvm_ad_enabled)", () => {
    const names = (eptAccessDirty: boolean) => {
      const vm = createVm({ features: { eptAccessDirty } });
      slot(vm);
      const vcpu = vm.createVcpu();
      vm.startTrace(100);
      vcpu.access(0x5000);
      return vm.stopTrace().events.map((e) => [e.name, e.fields.ret ?? ""].join(" "));
    };
    expect(names(true).filter((n) => n.startsWith("fast_page_fault"))).toEqual([]);
    // Nothing is access-tracked here, so it finds no spte: RET_PF_INVALID, then the slow path.
    expect(names(false).filter((n) => n.startsWith("fast_page_fault"))).toEqual([
      "fast_page_fault invalid",
    ]);
  });

  it("an event list records only those tracepoints (perf record -e); their counts go on past the ring", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    const before = vm.tracepointCounts().kvm_page_fault;
    vm.startTrace(2, ["kvm_page_fault"]);
    for (let g = 0; g < 5; g++) vcpu.access(g * 4096);
    const t = vm.stopTrace();
    expect(t.events.map((e) => [e.seq, e.name, e.fields.fault_address])).toEqual([
      [3, "kvm_page_fault", "0x3000"],
      [4, "kvm_page_fault", "0x4000"],
    ]);
    expect(t.dropped).toBe(3);
    // One per EPT violation, whatever the ring kept; nothing counted while tracing is off.
    expect(vm.tracepointCounts().kvm_page_fault - before).toBe(5);
    vcpu.access(5 * 4096);
    expect(vm.tracepointCounts().kvm_page_fault - before).toBe(5);
    expect(Object.keys(vm.tracepointCounts("kvm"))).toEqual(["kvm_page_fault"]);
    expect(() => vm.tracepointCounts("kvmmu" as never)).toThrow(/system.*kvmmu/);
    expect(() => vm.startTrace(10, ["kvm_page_faults" as never])).toThrow(InvalidArgumentError);
    expect(() => vm.startTrace(10, ["kvm_page_faults" as never])).toThrow(
      /kvm_page_faults.*kvm_page_fault/,
    );
    expect(() => vm.startTrace(10, [])).toThrow(/events/);
    vm.startTrace(10); // no list: everything again
    vcpu.access(6 * 4096);
    expect(new Set(vm.stopTrace().events.map((e) => e.name)).size).toBeGreaterThan(1);
  });

  it("the ring keeps the newest events and counts the overwritten ones", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    vm.startTrace(5);
    for (let g = 0; g < 4; g++) vcpu.access(g * 4096);
    const t = vm.stopTrace();
    expect(t.events).toHaveLength(5);
    expect(t.dropped).toBeGreaterThan(0);
    expect(t.events.at(-1)!.name).toBe("mmulab_page_fault_done");
    expect(t.events.at(-1)!.seq).toBe(t.events.length + t.dropped - 1);
    expect(() => vm.startTrace(0)).toThrow(/capacity.*0/);
  });
});

/** The Chrome trace-event format (the subset Perfetto's JSON importer reads), as a JSON schema. */
const CHROME_SCHEMA = {
  type: "object",
  required: ["traceEvents"],
  properties: {
    displayTimeUnit: { enum: ["ns", "ms"] },
    traceEvents: {
      type: "array",
      items: {
        type: "object",
        required: ["name", "ph", "pid", "tid"],
        properties: {
          name: { type: "string" },
          cat: { type: "string" },
          ph: { enum: ["B", "E", "X", "i", "I", "M", "C"] },
          ts: { type: "number", minimum: 0 },
          pid: { type: "integer" },
          tid: { type: "integer" },
          s: { enum: ["t", "p", "g"] },
          args: { type: "object" },
        },
        // Metadata events carry args; every other event a timestamp.
        anyOf: [
          { properties: { ph: { const: "M" } }, required: ["args"] },
          { properties: { ph: { not: { const: "M" } } }, required: ["ts"] },
        ],
      },
    },
  },
};

describe("trace exports", () => {
  it("Chrome/Perfetto JSON: one track per vCPU and one VM-wide, faults as balanced slices, valid trace-event format", () => {
    const vm = createVm();
    slot(vm);
    const v0 = vm.createVcpu();
    const v1 = vm.createVcpu();
    vm.startTrace(1000);
    v0.access(0x1000);
    v1.access(0x2000, { write: true });
    vm.zapGfnRange(0, 16);
    const j = vm.stopTrace().chrome();
    const validate = new Ajv({ allErrors: true }).compile(CHROME_SCHEMA);
    expect(validate(j), JSON.stringify(validate.errors)).toBe(true);
    const threads = j.traceEvents
      .filter((e) => e.name === "thread_name")
      .map((e) => [e.tid, (e.args as { name: string }).name]);
    expect(threads).toEqual([
      [0, "VM-wide (zaps, flushes, splits)"],
      [1, "vCPU 0"],
      [2, "vCPU 1"],
    ]);
    for (const tid of [1, 2]) {
      const phs = j.traceEvents
        .filter((e) => e.tid === tid && e.name === "page fault")
        .map((e) => e.ph);
      expect(phs).toEqual(["B", "E"]);
    }
    expect(j.traceEvents.some((e) => e.tid === 0 && e.name === "mmulab_flush_remote_tlbs")).toBe(
      true,
    );
    expect(() => JSON.parse(JSON.stringify(j))).not.toThrow();
  });

  it("Chrome JSON stays balanced when the trace lacks the faults' ends; metadata carry ts 0", () => {
    const vm = createVm();
    slot(vm);
    const v0 = vm.createVcpu();
    vm.startTrace(100, ["kvm_page_fault", "mmulab_flush_remote_tlbs"]);
    for (let g = 0; g < 3; g++) v0.access(g * 4096);
    vm.zapGfnRange(0, 16);
    const j = vm.stopTrace().chrome();
    const validate = new Ajv({ allErrors: true }).compile(CHROME_SCHEMA);
    expect(validate(j), JSON.stringify(validate.errors)).toBe(true);
    expect(j.traceEvents.filter((e) => e.ph === "M").map((e) => [e.ts, e.cat])).toEqual([
      [0, "__metadata"],
      [0, "__metadata"],
      [0, "__metadata"],
    ]);
    // Three faults (seq 0, 1, 2) on vCPU 0's track: each ends where the next begins, the last
    // one microsecond after the last event (the flush, seq 3).
    expect(
      j.traceEvents.filter((e) => e.tid === 1 && e.ph !== "M").map((e) => [e.ph, e.ts]),
    ).toEqual([
      ["B", 0],
      ["E", 1],
      ["B", 1],
      ["E", 2],
      ["B", 2],
      ["E", 4],
    ]);
  });

  it("filter by event name, gfn range and vCPU", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    vm.startTrace(1000);
    for (let g = 0; g < 8; g++) vcpu.access(g * 4096);
    vm.zapGfnRange(0, 8);
    const t = vm.stopTrace();
    const leaves = t.filter({ events: ["kvm_mmu_set_spte"], gfns: [2, 5] });
    expect(leaves.events.map((e) => e.fields.gfn)).toEqual(["0x2", "0x3", "0x4"]);
    expect(t.filter({ vcpu: "vm" }).events.every((e) => e.vcpu === -1)).toBe(true);
    expect(t.filter({ vcpu: 0 }).counts().kvm_page_fault).toBe(8);
    expect(t.filter((e) => e.seq < 3).events).toHaveLength(3);
    expect(() => t.filter({ events: ["nope"] })).toThrow(/nope/);
    expect(() => t.filter({ gfns: [5, 2] })).toThrow(InvalidArgumentError);
    expect(() => t.filter({ vcpu: -2 })).toThrow(/vcpu/);
  });

  it("fault heat map: kvm_page_fault per 2 MiB region of guest-physical memory, a row per 1 GiB", () => {
    const vm = createVm();
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 2 * 2 ** 30, flags: 0 });
    const vcpu = vm.createVcpu();
    vm.startTrace(1000, ["kvm_page_fault"]);
    for (let p = 0; p < 3; p++) vcpu.access(p * 4096); // region 0: 3 faults
    vcpu.access(5 * MIB); // region 2
    for (let p = 0; p < 4; p++) vcpu.access(2 ** 30 + 2 * MIB + p * 4096); // row 1, region 1
    const h = vm.stopTrace().faultHeatmap();
    expect([h.rows, h.cols, h.total, h.outside]).toEqual([2, 512, 8, 0]);
    expect([h.counts[0], h.counts[1], h.counts[2], h.counts[512 + 1]]).toEqual([3, 0, 1, 4]);
    expect(h.count(2 ** 30 + 3 * MIB)).toBe(4);
    const fig = h.figure();
    expect(fig.data[0]!.type).toBe("heatmap");
    expect(fig.data[0]!.y).toEqual(["0 GiB", "1 GiB"]);
    expect((fig.data[0]!.customdata as number[][])[1]![1]).toBe(4);
    expect((fig.data[0]!.z as (number | null)[][])[0]!.slice(0, 3)).toEqual([
      Math.log10(3),
      null,
      0,
    ]);
    // A narrower map: one row of 4 MiB from 1 GiB; the rest is outside.
    const n = new FaultHeatmap([0, 2 ** 30, 2 ** 30 + 2 * MIB + 1], {
      base: 2 ** 30,
      rowBytes: 4 * MIB,
      rows: 1,
      scale: "linear",
    });
    expect([Array.from(n.counts), n.outside]).toEqual([[1, 1], 1]);
    expect(() => new FaultHeatmap([], { regionBytes: 3 * MIB })).toThrow(/regionBytes/);
    expect(() => new FaultHeatmap([], { rowBytes: 3 * MIB })).toThrow(/rowBytes/);
    expect(() => new FaultHeatmap([], { base: MIB })).toThrow(/base/);
    expect(() => new FaultHeatmap([], { rows: 0 })).toThrow(/rows/);
    expect(() => new FaultHeatmap([], { scale: "sqrt" as never })).toThrow(/scale/);
  });

  it("perf script text: comm, pid, [cpu], time, system:event, fields", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    vm.startTrace(100);
    vcpu.access(0x3000);
    const lines = vm.stopTrace().perfScript().split("\n");
    expect(lines[0]).toMatch(
      /^ +vcpu0 +1000 \[000\] +0\.000000: kvm:kvm_page_fault: vcpu_id 0 fault_address 0x3000 error_code 0x4$/,
    );
    expect(lines.at(-1)).toMatch(/kvmmmu:mmulab_page_fault_done: .*ret fixed/);
  });

  it("kvm_stat view: per-interval deltas of the counters that moved", () => {
    const vm = createVm();
    slot(vm);
    const vcpu = vm.createVcpu();
    const k = vm.kvmStat();
    for (let g = 0; g < 10; g++) vcpu.access(g * 4096);
    k.sample("touch 10");
    for (let g = 0; g < 10; g++) vcpu.access(g * 4096);
    k.sample("again");
    const pf = k.deltas().find((d) => d.name === "pf_fixed")!;
    expect(pf).toEqual({ name: "pf_fixed", intervals: [10, 0], total: 10 });
  });

  it("kvm_stat view: kvm_stat's orders, -f filter, kvm: tracepoints while tracing, -1 and -l text, a figure", () => {
    const vm = createVm();
    slot(vm); // 8 MiB of 4K pages: one fault per page touched
    const vcpu = vm.createVcpu();
    const k = vm.kvmStat();
    vm.startTrace(10, ["kvm_page_fault"]);
    for (let g = 0; g < 10; g++) vcpu.access(g * 4096);
    k.sample("first");
    for (let g = 0; g < 12; g++) vcpu.access(g * 4096); // 2 new pages
    vm.zapGfnRange(0, 1); // one remote flush, one leaf fewer
    k.sample("second");
    vm.stopTrace();
    vm.zapGfnRange(1, 2);
    k.sample("third");
    const f = "pf_fixed|pages_4k|kvm_page_fault|remote_tlb_flush_requests";
    const rows = k.deltas({ fields: f });
    // -f matches at the start of the name, as re.match does: remote_tlb_flush alone does not.
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(byName).toEqual({
      pf_fixed: { name: "pf_fixed", intervals: [10, 2, 0], total: 12 },
      // One per EPT violation while tracing was on (the ring held 10 events only).
      kvm_page_fault: { name: "kvm_page_fault", intervals: [10, 2, 0], total: 12 },
      pages_4k: { name: "pages_4k", intervals: [10, 1, -1], total: 10 },
      remote_tlb_flush_requests: {
        name: "remote_tlb_flush_requests",
        intervals: [0, 1, 1],
        total: 2,
      },
    });
    // SORT_DEFAULT: the last change, then the total, descending (ties keep the read order).
    expect(rows.map((r) => r.name)).toEqual([
      "remote_tlb_flush_requests",
      "pf_fixed",
      "kvm_page_fault",
      "pages_4k",
    ]);
    expect(k.deltas({ fields: f, sort: "total" }).map((r) => r.name)).toEqual([
      "pf_fixed",
      "kvm_page_fault",
      "pages_4k",
      "remote_tlb_flush_requests",
    ]);
    expect(k.deltas({ fields: f, sort: "name" }).map((r) => r.name)).toEqual([
      "kvm_page_fault",
      "pages_4k",
      "pf_fixed",
      "remote_tlb_flush_requests",
    ]);
    expect(k.deltas({ fields: /^pf_f/ }).map((r) => r.name)).toEqual(["pf_fixed"]);
    expect(k.batchText({ fields: "pf_fixed" })).toBe(
      `${"pf_fixed".padEnd(42)}${"12".padStart(10)}${"0".padStart(10)}`,
    );
    const num = (n: number) => ` ${String(n).padStart(9)}`;
    expect(k.logText({ fields: "pf_fixed|pages_4k" }).split("\n")).toEqual([
      "       pages_4k pf_fixed",
      `first ${num(10)}${num(10)}`,
      `second${num(1)}${num(2)}`,
      `third ${num(-1)}${num(0)}`,
    ]);
    const fig = k.figure({ fields: f, top: 2 });
    expect(fig.layout?.barmode).toBe("group");
    expect(fig.data.map((t) => [t.type, t.name, t.x, t.y])).toEqual([
      ["bar", "pf_fixed", ["first", "second", "third"], [10, 2, 0]],
      ["bar", "kvm_page_fault", ["first", "second", "third"], [10, 2, 0]],
    ]);
    expect(k.labels).toEqual(["first", "second", "third"]);
    // Options given at creation are every view's default (kvm_stat's command line).
    const k2 = vm.kvmStat({ fields: "pf_fixed", sort: "name" });
    vcpu.access(20 * 4096);
    k2.sample("one");
    expect(k2.deltas()).toEqual([{ name: "pf_fixed", intervals: [1], total: 1 }]);
    expect(k2[JUPYTER_DISPLAY]()["text/plain"]).toBe(
      "kvm_stat: change per interval (sorted as kvm_stat sorts: by name)\ncounter   one  total\npf_fixed  1    1",
    );
    expect(() => vm.kvmStat({ sort: "up" as never })).toThrow(/sort/);
    expect(() => vm.kvmStat({ fields: "[" })).toThrow(/fields/);
    expect(() => k.deltas({ sort: "value" as never })).toThrow(/sort/);
    expect(() => k.deltas({ fields: "(" })).toThrow(/fields/);
    expect(() => k.figure({ top: 0 })).toThrow(/top/);
  });

  it("mmu_rmaps_stat histogram: 8 MiB of 4K leaves on the rmap MMU", () => {
    const vm = createVm({ features: { mmuFlavor: "legacy_direct", prefetch: false } });
    slot(vm);
    const vcpu = vm.createVcpu();
    for (let g = 0; g < 2048; g++) vcpu.access(g * 4096);
    const h = vm.rmapHistogram();
    expect(h.buckets.slice(0, 4)).toEqual(["0", "1", "2-3", "4-7"]);
    expect(h.counts[0]![1]).toBe(2048); // one spte per 4K head
    expect(h.counts[1]![0]).toBe(4); // four empty 2M heads
    expect(h.counts[2]![0]).toBe(1);
  });
});

describe("trace ring limit", () => {
  it("TRACE_MAX_CAPACITY is the most events whose Float64Array stays below 2^31 elements", () => {
    // 88-byte records (3 header words + 8 fields, each a float64): 11 elements per event.
    const perEvent = TRACE_RECORD_BYTES / 8;
    expect(perEvent).toBe(11);
    expect(TRACE_MAX_CAPACITY * perEvent).toBeLessThan(2 ** 31);
    expect((TRACE_MAX_CAPACITY + 1) * perEvent).toBeGreaterThanOrEqual(2 ** 31);
  });
});
