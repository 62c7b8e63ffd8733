/**
 * Jupyter displays and one-line summaries of a VM and a vCPU: MMU selection, memslots and the
 * key KVM stats of a VM; paging registers decoded by bit name for a vCPU. Not used on hot paths.
 */
import { hexNum as hex } from "../arch/addr";
import { X86_EFLAGS_AC } from "../arch/constants";
import { CR0_BIT_NAMES, CR4_BIT_NAMES, EFER_BIT_NAMES, setBitNames } from "../arch/reg_names";
import { htmlTableBundle, type MimeBundle, sizeText, type TableRow } from "../display";
import { switchNames } from "../era/features";
import type { KvmVcpu as Vcpu } from "../x86/vcpu";
import type { KvmX86 as Vm } from "../x86/x86";

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? "" : "s"}`;

/** "tdp (tdp_mmu, 4-level EPT)", "shadow (ept=0, rmap MMU)" or "none". */
function mmuText(vm: Vm): string {
  const t = vm.mmu;
  if (t === null) return vm.mmuMode;
  if (t.shadowPaging) return `${vm.mmuMode} (ept=0, rmap MMU)`;
  return `${vm.mmuMode} (${vm.features.mmuFlavor}, ${t.rootLevel}-level EPT)`;
}

function guestFeaturesText(vm: Vm): string {
  const f = vm.features as Readonly<Record<string, unknown>>;
  const names = switchNames("cpuid");
  const on = names.filter((k) => f[k] === true);
  const off = names.filter((k) => f[k] !== true);
  return `${on.join(" ") || "-"}${off.length ? `; off: ${off.join(" ")}` : ""}`;
}

function mmuSwitchesText(vm: Vm): string {
  if (vm.mmu === null) return "-";
  const f = vm.features as Readonly<Record<string, unknown>>;
  return switchNames("kvm")
    .filter((k) => k !== "mmuFlavor" && k !== "tdpLevels" && k !== "guestWalker")
    .map((k) => `${k}=${f[k]}`)
    .join(" ");
}

function slotRows(vm: Vm): TableRow[] {
  // The memslots' own rows (kvm/memslot.ts), without the columns a VM summary can spare.
  return vm.memslots.rows().map(({ slot, gpa, size, flags, backing, hva }) => ({
    slot,
    gpa,
    size,
    flags,
    backing,
    hva,
  }));
}

/** The KVM stats a VM display shows, under their kernel names. */
const KEY_STATS = ["pages_4k", "pages_2m", "pages_1g", "pf_taken", "pf_fixed"] as const;

function statPairs(vm: Vm): [string, number][] {
  const s = vm.stats;
  const out: [string, number][] = KEY_STATS.map((k) => [k, s[k]]);
  out.push(["spt pages", s.spt_pages_live]);
  if (vm.mmu?.shadowPaging === true) {
    for (const k of [
      "pf_guest",
      "pf_emulate",
      "indirect_shadow_pages",
      "mmu_unsync",
      "mmu_pte_write",
      "mmu_flooded",
    ] as const)
      out.push([k, s[k]]);
  }
  return out;
}

/** One line: `Vm(mmu tdp/tdp_mmu, 1 memslot 64 MiB, 1 vCPU, pages_4k 512)`. */
export function vmString(vm: Vm): string {
  const slots = vm.memslots.list();
  const bytes = slots.reduce((a, s) => a + s.npages * 4096, 0);
  const mmu =
    vm.mmu === null || vm.mmu.shadowPaging ? vm.mmuMode : `${vm.mmuMode}/${vm.features.mmuFlavor}`;
  // The VM's own counters: `stats` would also fold the vCPU sums into them, and an error message
  // naming this VM must not change it.
  const s = vm.vmStat;
  return `Vm(mmu ${mmu}, ${plural(slots.length, "memslot")} ${sizeText(bytes)}, ${plural(vm.vcpus.length, "vCPU")}, pages_4k ${s.pages_4k} pages_2m ${s.pages_2m} pages_1g ${s.pages_1g})`;
}

/** Jupyter bundle of a VM: summary, memslots and key stats as HTML tables; a short text form. */
export function vmBundle(vm: Vm): MimeBundle {
  const summary = htmlTableBundle("VM", [
    { field: "mmu", value: mmuText(vm) },
    { field: "MAXPHYADDR", value: vm.maxPhysAddrBits },
    { field: "guest features", value: guestFeaturesText(vm) },
    { field: "MMU switches", value: mmuSwitchesText(vm) },
    { field: "guest walker", value: vm.features.guestWalker },
    { field: "vCPUs", value: vm.vcpus.length },
  ]);
  const rows = slotRows(vm);
  const slots = htmlTableBundle(`Memslots (${rows.length})`, rows);
  const stats = htmlTableBundle(
    "KVM stats",
    statPairs(vm).map(([stat, value]) => ({ stat, value })),
  );
  const html = `<div class="mmulab-vm" style="display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start">${summary["text/html"]}${slots["text/html"]}${stats["text/html"]}</div>`;
  const text = [
    `VM: mmu ${mmuText(vm)}, MAXPHYADDR ${vm.maxPhysAddrBits}, ${plural(vm.vcpus.length, "vCPU")}, ${plural(rows.length, "memslot")}`,
    ...rows.map(
      (r) => `  slot ${r.slot}: gpa ${r.gpa} (${r.size}) flags ${r.flags} backing ${r.backing}`,
    ),
    `  ${statPairs(vm)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
  ];
  return { "text/html": html, "text/plain": text.join("\n") };
}

/** PKRU decoded: the keys whose AD (access disable) or WD (write disable) bit is set. */
function pkruText(pkru: number): string {
  const keys: string[] = [];
  for (let k = 0; k < 16; k++) {
    const bits = (pkru >>> (2 * k)) & 3;
    if (bits === 0) continue;
    keys.push(
      `key ${k}: ${[bits & 1 ? "AD" : "", bits & 2 ? "WD" : ""].filter(Boolean).join("+")}`,
    );
  }
  return keys.join(", ") || "no key restricted";
}

function vcpuRows(v: Vcpu): { register: string; value: string; decoded: string }[] {
  const s = v.getSregs();
  const ac = (v.rflags & X86_EFLAGS_AC) !== 0;
  return [
    { register: "paging mode", value: v.pagingMode, decoded: "" },
    { register: "CR0", value: hex(s.cr0), decoded: setBitNames(s.cr0, CR0_BIT_NAMES).join(" ") },
    { register: "CR3", value: hex(s.cr3), decoded: "" },
    { register: "CR4", value: hex(s.cr4), decoded: setBitNames(s.cr4, CR4_BIT_NAMES).join(" ") },
    {
      register: "EFER",
      value: hex(s.efer),
      decoded: setBitNames(s.efer, EFER_BIT_NAMES).join(" "),
    },
    { register: "CPL", value: String(s.cpl), decoded: s.cpl === 3 ? "user" : "supervisor" },
    { register: "RFLAGS.AC", value: ac ? "1" : "0", decoded: `RFLAGS ${hex(v.rflags)}` },
    { register: "PKRU", value: hex(v.pkru), decoded: pkruText(v.pkru) },
  ];
}

/** One line: `Vcpu 0 (4-level, CPL 0, CR3 0x1000)`. */
export function vcpuString(v: Vcpu): string {
  const s = v.getSregs();
  return `Vcpu ${v.id} (${v.pagingMode}, CPL ${s.cpl}, CR3 ${hex(s.cr3)})`;
}

/** Jupyter bundle of a vCPU: the paging registers with the names of their set bits. */
export function vcpuBundle(v: Vcpu): MimeBundle {
  const rows = vcpuRows(v);
  const b = htmlTableBundle(`vCPU ${v.id}`, rows);
  const text = [
    vcpuString(v),
    ...rows
      .slice(1)
      .map((r) => `  ${r.register.padEnd(9)} ${r.value}${r.decoded ? `  ${r.decoded}` : ""}`),
  ];
  return {
    "text/html": `<div class="mmulab-vcpu">${b["text/html"]}</div>`,
    "text/plain": text.join("\n"),
  };
}
