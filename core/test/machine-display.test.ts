/**
 * Jupyter displays and toString() of Vm and Vcpu. Expected values come from the state the test
 * sets up (register values, memslot geometry, and KVM's accounting of the faults taken), with bit
 * positions of the x86 architecture written out here rather than taken from the code under test.
 */
import { describe, expect, it } from "vitest";
import { createVm, GuestPageTableBuilder, type Vcpu, type Vm } from "../src";

const DISPLAY = Symbol.for("Jupyter.display");
const MiB = 2 ** 20;
type Bundle = Record<string, string>;
const bundleOf = (x: Vm | Vcpu): Bundle =>
  (x as unknown as Record<symbol, () => Bundle>)[DISPLAY]!();

/** Text of the HTML with tags removed and the five entities decoded. */
function htmlText(html: string): string {
  return html
    .replace(/<[^>]*>/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");
}

/** Only the table markup htmlTableBundle writes; no raw < > outside tags; & only in entities. */
function expectSafeHtml(html: string): void {
  const tags = new Set([...html.matchAll(/<\/?([a-zA-Z]+)/g)].map((m) => m[1]!.toLowerCase()));
  for (const t of tags)
    expect(["div", "b", "table", "thead", "tbody", "tr", "th", "td"]).toContain(t);
  const between = html.replace(/<[^>]*>/g, "");
  expect(between).not.toMatch(/[<>]/);
  expect(between.replace(/&(lt|gt|amp|quot|#39);/g, "")).not.toContain("&");
}

function setup() {
  const vm = createVm({ features: { la57: false } });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  // flags 1 | 2: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY
  vm.setUserMemoryRegion({
    slot: 5,
    guestPhysAddr: 2 ** 32,
    memorySize: 2 * MiB,
    flags: 3,
    backing: "thp",
  });
  const b = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: 32 * MiB, poolSize: MiB });
  const pages = 3;
  b.map(0x400000, 0x100000, pages * 4096);
  const vcpu = vm.createVcpu();
  vm.createVcpu();
  // CR0 = PE (0) | WP (16) | PG (31); CR4 = PAE (5) | PKE (22); EFER = LME (8) | NXE (11) -> LMA (10).
  const cr0 = 2 ** 31 + 2 ** 16 + 1;
  const cr4 = 2 ** 22 + 2 ** 5;
  const efer = 2 ** 11 + 2 ** 8;
  vcpu.setSregs({ cr0, cr3: b.root, cr4, efer, cpl: 3 });
  vcpu.setRflags(2 ** 18 + 2); // AC, fixed bit 1
  const pkru = 0b10_01 << 2; // key 1 AD, key 2 WD
  vcpu.setPkru(pkru);
  for (let i = 0; i < pages; i++) vcpu.access(0x400000 + i * 4096);
  return { vm, vcpu, b, pages, cr0, cr4, efer, pkru };
}

describe("Vm display and toString", () => {
  it("shows the MMU, memslots with decoded flags, vCPU count and key stats", () => {
    const { vm, b, pages } = setup();
    const bundle = bundleOf(vm);
    expect(Object.keys(bundle).sort()).toEqual(["text/html", "text/plain"]);
    const html = bundle["text/html"]!;
    expectSafeHtml(html);
    const text = htmlText(html);
    expect(text).toContain("tdp_mmu");
    expect(text).toContain("4-level EPT"); // MAXPHYADDR 46 <= 48: 4-level EPT
    expect(text).toMatch(/MAXPHYADDR\s+46/);
    expect(text).toMatch(/off: la57/);
    // Slot 0: 64 MiB at 0; slot 5: 2 MiB at 4 GiB, both flags named.
    expect(text).toContain(`0x0-0x${(64 * MiB - 1).toString(16)}`);
    expect(text).toContain(`0x${(2 ** 32).toString(16)}-0x${(2 ** 32 + 2 * MiB - 1).toString(16)}`);
    expect(text).toContain("64 MiB");
    expect(text).toContain("KVM_MEM_LOG_DIRTY_PAGES|KVM_MEM_READONLY");
    expect(text).toContain("thp");
    expect(text).toMatch(/vCPUs\s+2/);
    // KVM accounting: every guest frame touched (data pages and the walker's table pages) was
    // one EPT violation fixed with a 4K leaf (4k backing); EPT tables: root, PDPT, PD and one PT
    // per distinct 2 MiB region touched (the data at 1 MiB and the tables at 32 MiB).
    const frames = pages + b.tablesAllocated;
    const regions = new Set([0x100000 >> 21, (32 * MiB) >> 21]).size;
    expect(text).toMatch(new RegExp(`pages_4k\\s+${frames}\\b`));
    expect(text).toMatch(/pages_2m\s+0\b/);
    expect(text).toMatch(/pages_1g\s+0\b/);
    expect(text).toMatch(new RegExp(`pf_fixed\\s+${frames}\\b`));
    expect(text).toMatch(new RegExp(`spt pages\\s+${3 + regions}\\b`));
    const plain = bundle["text/plain"]!;
    expect(plain.split("\n").length).toBeLessThanOrEqual(6);
    expect(plain).not.toMatch(/Vm \{|memory:|\[class/); // not util.inspect of the object
    expect(plain).toContain("slot 5: gpa 0x100000000-0x1001fffff (2 MiB)");
    expect(plain).toContain(`pages_4k ${frames}`);
    expect(String(vm)).toBe(
      `Vm(mmu tdp/tdp_mmu, 2 memslots 66 MiB, 2 vCPUs, pages_4k ${frames} pages_2m 0 pages_1g 0)`,
    );
  });

  it("mmu none: no flavour, zero stats", () => {
    const vm = createVm({ mmu: "none" });
    const text = htmlText(bundleOf(vm)["text/html"]!);
    expect(text).toMatch(/mmu\s+none/);
    expect(text).toContain("Memslots (0)");
    expect(String(vm)).toBe(
      "Vm(mmu none, 0 memslots 0 B, 0 vCPUs, pages_4k 0 pages_2m 0 pages_1g 0)",
    );
  });

  it("names the guest walker flavour it was created with (seed 2007 switch)", () => {
    for (const flavour of ["modern", "w07b", "w07a"] as const) {
      const vm = createVm({ mmu: "none", features: { guestWalker: flavour } });
      expect(htmlText(bundleOf(vm)["text/html"]!)).toMatch(
        new RegExp(`guest walker\\s+${flavour}`),
      );
    }
  });

  it("escapes every string it shows", () => {
    const { vm } = setup();
    (vm as unknown as { mmuMode: string }).mmuMode = `<img src=x onerror="alert('&')">`;
    const html = bundleOf(vm)["text/html"]!;
    expectSafeHtml(html);
    expect(htmlText(html)).toContain(`<img src=x onerror="alert('&')">`);
  });
});

describe("Vcpu display and toString", () => {
  it("decodes CR0/CR4/EFER by set-bit names, CPL, RFLAGS.AC and PKRU", () => {
    const { vcpu, b, cr0, cr4, efer, pkru } = setup();
    const bundle = bundleOf(vcpu);
    const html = bundle["text/html"]!;
    expectSafeHtml(html);
    const text = htmlText(html);
    const row = (name: string) => {
      const m = new RegExp(`\\b${name.replace(".", "\\.")}\\s+(\\S+)\\s+([^\\n]*?)\\s{2,}`).exec(
        `${text}  `,
      );
      return m === null ? undefined : [m[1], m[2]!.trim()];
    };
    expect(text).toMatch(/paging mode\s+4-level/);
    expect(row("CR0")).toEqual([`0x${cr0.toString(16)}`, "PE WP PG"]);
    expect(text).toContain(`0x${b.root.toString(16)}`);
    expect(row("CR4")).toEqual([`0x${cr4.toString(16)}`, "PAE PKE"]);
    // EFER.LMA (bit 10) is set by the CPU when LME and PG are set.
    expect(row("EFER")).toEqual([`0x${(efer + 2 ** 10).toString(16)}`, "LME LMA NXE"]);
    expect(row("CPL")).toEqual(["3", "user"]);
    expect(row("RFLAGS.AC")![0]).toBe("1");
    expect(row("PKRU")![0]).toBe(`0x${pkru.toString(16)}`);
    expect(text).toContain("key 1: AD, key 2: WD");
    const plain = bundle["text/plain"]!;
    expect(plain.split("\n")[0]).toBe(`Vcpu 0 (4-level, CPL 3, CR3 0x${b.root.toString(16)})`);
    expect(plain).toContain("PE WP PG");
    expect(String(vcpu)).toBe(`Vcpu 0 (4-level, CPL 3, CR3 0x${b.root.toString(16)})`);
  });

  it("reset state: paging off, CR0.ET only, AC clear, no key restricted", () => {
    const vm = createVm({ mmu: "none" });
    const v = vm.createVcpu();
    const text = htmlText(bundleOf(v)["text/html"]!);
    expect(text).toMatch(/paging mode\s+none/);
    expect(text).toMatch(/CR0\s+0x10\s+ET/); // reset CR0 = 0x10 (ET, bit 4)
    expect(text).toMatch(/RFLAGS\.AC\s+0/);
    expect(text).toContain("no key restricted");
  });

  it("escapes every string it shows", () => {
    const vm = createVm({ mmu: "none" });
    const v = vm.createVcpu();
    Object.defineProperty(v, "pagingMode", { get: () => "<script>&</script>" });
    const html = bundleOf(v)["text/html"]!;
    expectSafeHtml(html);
    expect(htmlText(html)).toContain("<script>&</script>");
  });
});
