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
import { createVm } from "../src";

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

function slot(vm: ReturnType<typeof createVm>) {
  vm.setUserMemoryRegion({
    slot: 0,
    guestPhysAddr: 0,
    memorySize: 8 * MIB,
    flags: 0,
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
    // The elements are the gptes as the walk left them (A set), top level first.
    expect(ev.slice(3, 7).map((e) => [e.fields.pte, e.fields.level])).toEqual([
      ["0x101027", 4],
      ["0x102027", 3],
      ["0x103027", 2],
      ["0x200027", 1],
    ]);
    expect(ev.at(-2)!.fields).toEqual({ pferr: "0x4" });
    expect(ev.at(-1)!.fields).toMatchObject({ ret: "retry", retry_reason: "guest #PF injected" });
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
