/**
 * Every public call fuzzed with bad arguments. The curated API (src/index.ts, the public methods
 * of `Vm` and `Vcpu`, and the views they return) is written out below as a table of entry points
 * with the kind of each parameter; bad values are generated per kind (wrong types, NaN, ±∞, -1,
 * 0.5, 2^53, 2^64, bigints out of range, addresses above MAXPHYADDR, unknown and misspelt option
 * keys, a foreign or frozen VM where a value belongs, a deleted memslot) and substituted one at a
 * time into an otherwise valid call.
 *
 * Each call must either succeed (only allowed for values that may be valid) or throw
 * `InvalidArgumentError` naming the argument and showing the value as `describeValue` renders
 * it; any other exception fails. After every refused call the VM's full state (full-state.ts:
 * everything reachable from it) must equal the state before: KVM's ioctls validate before they
 * change anything (`__kvm_set_memory_region`, `kvm_vm_ioctl_clear_dirty_log`, ...).
 *
 * The VMs: TDP, shadow paging with 4-level and with 32-bit guest paging, the v2.6.23 preset
 * (shadow, PAE guest), and TDP with the dirty ring — each with dirty logging on a slot, a deleted
 * slot, pages faulted in, dirty pages logged and the MMU trace on.
 */
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import * as api from "../src";
import {
  changes,
  createVm,
  dirtyLogPerf,
  dirtyLogPerfSteps,
  FaultHeatmap,
  GuestPageTableBuilder,
  guestRandomU32,
  htmlTableBundle,
  InvalidArgumentError,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  Memstress,
  memstress,
  PagetableView,
  PresetTable,
  pagetableBundle,
  plotlyBundle,
  presetTable,
  sideBySide,
  type Vcpu,
  Vm,
  walk2dBundle,
  walkBundle,
} from "../src";
import { describeValue } from "../src/errors";
import { type FullState, fullState, stateDiff } from "./full-state";

const MiB = 2 ** 20;
const SEED = 0x16a;

// ---- the VMs ---------------------------------------------------------------------------------------

type Mode = "tdp" | "shadow-4level" | "shadow-32bit" | "preset-v2.6.23" | "tdp-ring";
const MODES: readonly Mode[] = [
  "tdp",
  "shadow-4level",
  "shadow-32bit",
  "preset-v2.6.23",
  "tdp-ring",
];

/** A VM in `mode` with its vCPUs and guest tables. */
interface World {
  mode: Mode;
  vm: Vm;
  vcpu: Vcpu;
  b: GuestPageTableBuilder;
}

/** Slot 0: tables and data; 1: dirty-logged data; 2: deleted; 3: read-only. */
const LOGGED_SLOT = 1;
const DELETED_SLOT = 2;
const LOGGED_GPA = 16 * MiB;
const DATA_GVA = 0x400000;

function buildWorld(mode: Mode): World {
  const vm =
    mode === "preset-v2.6.23"
      ? createVm({ preset: "v2.6.23" })
      : createVm({ mmu: mode.startsWith("shadow") ? "shadow" : "tdp" });
  if (mode === "tdp-ring") vm.enableCap("KVM_CAP_DIRTY_LOG_RING", 4096 * 4);
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 0 });
  vm.setUserMemoryRegion({
    slot: LOGGED_SLOT,
    guestPhysAddr: LOGGED_GPA,
    memorySize: 4 * MiB,
    flags: KVM_MEM_LOG_DIRTY_PAGES,
  });
  vm.setUserMemoryRegion({
    slot: DELETED_SLOT,
    guestPhysAddr: 24 * MiB,
    memorySize: MiB,
    flags: 0,
  });
  vm.setUserMemoryRegion({ slot: DELETED_SLOT, guestPhysAddr: 0, memorySize: 0, flags: 0 });
  vm.setUserMemoryRegion({
    slot: 3,
    guestPhysAddr: 32 * MiB,
    memorySize: MiB,
    flags: KVM_MEM_READONLY,
  });
  const paging = mode === "shadow-32bit" ? "32-bit" : mode === "preset-v2.6.23" ? "pae" : "4-level";
  const b = new GuestPageTableBuilder(vm, { mode: paging, poolBase: 0x100000, poolSize: 0x100000 });
  b.map(DATA_GVA, LOGGED_GPA, MiB, {});
  b.map(0x800000, 0x200000, MiB, {});
  const vcpu = vm.createVcpu();
  vcpu.setSregs(b.sregs({ nx: paging !== "32-bit" }));
  const other = vm.createVcpu();
  other.setSregs(b.sregs({ nx: paging !== "32-bit" }));
  vm.startTrace(256);
  for (let i = 0; i < 8; i++) {
    vcpu.write(DATA_GVA + i * 4096, i + 1);
    other.read(0x800000 + i * 4096);
  }
  return { mode, vm, vcpu, b };
}

function stateOf(w: World, copy = true): FullState {
  return fullState({ vm: w.vm, builder: w.b }, copy);
}

// ---- parameter kinds and their bad values ---------------------------------------------------------

/** What a parameter accepts. */
type Kind =
  | { k: "gfn" }
  | { k: "gpa" }
  | { k: "gva" }
  | { k: "u64" }
  | { k: "u32" }
  /** A 32-bit register: a negative int32 is its bit pattern (arch/addr.ts splitReg). */
  | { k: "reg32" }
  | { k: "int"; min: number; max: number; bigint?: boolean }
  | { k: "enum"; values: readonly unknown[] }
  | { k: "bool" }
  | { k: "string" }
  | { k: "opts"; keys: Record<string, Kind> }
  | { k: "callback" }
  | { k: "bitmap" }
  | { k: "source" }
  | { k: "slotId" }
  | { k: "any" };

interface Param {
  name: string;
  kind: Kind;
  /** Omitting it is valid (undefined is then not a bad value). */
  optional?: boolean;
  /** Argument names an error about this parameter may carry (default: `name`). */
  names?: readonly string[];
  /** Values of another type the parameter also takes (a predicate instead of a filter). */
  alsoAccepts?: (v: unknown) => boolean;
  /** The same, per key of an options object. */
  keysAlsoAccept?: Readonly<Record<string, (v: unknown) => boolean>>;
  /** An object the call writes to (guestRandomU32's state): a frozen one is not valid input. */
  mutable?: boolean;
}

/** A generated bad value. */
interface Bad {
  /** Which parameter, and the key inside an options object. */
  where: string;
  /** The full argument for the parameter. */
  arg: unknown;
  /** The value the error must show (the argument, the bad field, or the unknown key). */
  shown: unknown;
  /** Argument names the error may carry. */
  names: readonly string[];
  /** False when the value may be valid (the call may succeed). */
  mustReject: boolean;
  /** The value is valid: the call must succeed. */
  mustAccept?: boolean;
  label: string;
}

const foreign = createVm();
const foreignVcpu = foreign.createVcpu();
const frozenVm = Object.freeze(createVm());

/** Values of the wrong type for every kind (each kind drops what it accepts). */
function wrongTypes(): [string, unknown][] {
  return [
    ["string", "0x1000"],
    ["empty string", ""],
    ["object", {}],
    ["array", [1]],
    ["empty array", []],
    ["function", () => 0],
    ["symbol", Symbol("bad")],
    ["null", null],
    ["undefined", undefined],
    ["boolean", true],
    ["foreign vm", foreign],
    ["frozen vm", frozenVm],
    ["foreign vcpu", foreignVcpu],
  ];
}

const NUMERIC_BAD: [string, unknown][] = [
  ["NaN", Number.NaN],
  ["+Infinity", Number.POSITIVE_INFINITY],
  ["-Infinity", Number.NEGATIVE_INFINITY],
  ["-1", -1],
  ["0.5", 0.5],
  ["2^53", 2 ** 53],
  ["2^64 (number)", 2 ** 64],
  ["-1n", -1n],
  ["2^64n", 2n ** 64n],
];

/** Random extras per kind from fast-check (seeded: the same values on every run). */
function sample<T>(arb: fc.Arbitrary<T>, n: number, salt: number): T[] {
  return fc.sample(arb, { seed: SEED + salt, numRuns: n });
}

/** Bad values of one kind: [label, value, mustReject]. */
function badOfKind(kind: Kind, w: World | null, salt: number): [string, unknown, boolean][] {
  const out: [string, unknown, boolean][] = [];
  const accepts = (v: unknown): boolean => {
    switch (kind.k) {
      case "gpa":
      case "gva":
      case "u64":
      case "u32":
      case "reg32":
        return typeof v === "number" || typeof v === "bigint";
      case "gfn":
      case "slotId":
        return typeof v === "number";
      case "int":
        return typeof v === "number" || (kind.bigint === true && typeof v === "bigint");
      case "string":
        return typeof v === "string";
      case "enum":
        return kind.values.includes(v);
      case "bool":
        return typeof v === "boolean";
      case "callback":
        return typeof v === "function";
      case "any":
        return true;
      default:
        return false;
    }
  };
  for (const [l, v] of wrongTypes())
    if (!accepts(v)) out.push([l, v, !(kind.k === "opts" && l === "object")]);
  const maxPhys = w?.vm.maxPhysAddrBits ?? 46;
  switch (kind.k) {
    case "gpa":
      out.push(...NUMERIC_BAD.map(([l, v]) => [l, v, true] as [string, unknown, boolean]));
      out.push(
        ["2^MAXPHYADDR", 2 ** maxPhys, true],
        ["2^MAXPHYADDR n", 2n ** BigInt(maxPhys), true],
      );
      for (const v of sample(fc.bigInt({ min: 2n ** 64n, max: 2n ** 80n }), 2, salt))
        out.push(["random bigint >= 2^64", v, true]);
      break;
    case "gva":
    case "u64":
      out.push(...NUMERIC_BAD.map(([l, v]) => [l, v, true] as [string, unknown, boolean]));
      for (const v of sample(fc.bigInt({ min: -(2n ** 70n), max: -1n }), 2, salt))
        out.push(["random negative bigint", v, true]);
      break;
    case "u32":
    case "reg32":
      out.push(
        ...NUMERIC_BAD.map(
          ([l, v]) => [l, v, !(kind.k === "reg32" && v === -1)] as [string, unknown, boolean],
        ),
      );
      out.push(["2^32", 2 ** 32, true], ["2^32n", 2n ** 32n, true]);
      break;
    case "gfn":
      out.push(...NUMERIC_BAD.map(([l, v]) => [l, v, true] as [string, unknown, boolean]));
      // 2^(MAXPHYADDR-12) itself is a valid exclusive end.
      out.push(
        ["gfn 2^(MAXPHYADDR-12) + 1", 2 ** (maxPhys - 12) + 1, true],
        ["1n (bigint)", 1n, true],
      );
      break;
    case "slotId":
      out.push(...NUMERIC_BAD.map(([l, v]) => [l, v, true] as [string, unknown, boolean]));
      out.push(["deleted slot", DELETED_SLOT, true], ["slot 1n (bigint)", 1n, true]);
      out.push(["slot 40000", 40000, true]);
      break;
    case "int": {
      const { min, max } = kind;
      out.push(
        ["NaN", Number.NaN, true],
        ["+Infinity", Number.POSITIVE_INFINITY, true],
        ["-Infinity", Number.NEGATIVE_INFINITY, true],
        ["min - 1", min - 1, true],
        ["min + 0.5", min + 0.5, true],
        ["2^64 (number)", 2 ** 64, max < 2 ** 64],
      );
      if (max < 2 ** 53) out.push(["max + 1", max + 1, true], ["2^53", 2 ** 53, true]);
      if (kind.bigint !== true) out.push(["1n (bigint)", 1n, true]);
      const hi = Math.min(max, 2 ** 40);
      if (hi > min)
        for (const v of sample(fc.double({ noInteger: true, min, max: hi }), 2, salt))
          out.push(["random non-integer", v, true]);
      break;
    }
    case "enum": {
      const first = String(kind.values[0]);
      if (first.toUpperCase() !== first) out.push(["upper-cased", first.toUpperCase(), true]);
      out.push(["trailing space", `${first} `, true]);
      for (const v of sample(fc.string({ minLength: 1, maxLength: 8 }), 2, salt))
        if (!kind.values.includes(v)) out.push(["random string", v, true]);
      break;
    }
    case "bool":
      out.push(["1", 1, true], ["0", 0, true], ['"true"', "true", true]);
      break;
    case "bitmap":
      out.push(
        ["number array", [0xffffffff, 0xffffffff], true],
        ["Uint8Array", new Uint8Array(8), true],
        ["Int32Array", new Int32Array(2), true],
        ["empty Uint32Array", new Uint32Array(0), true],
      );
      break;
    case "source":
      out.push(["payload of another kind", { version: 1, kind: "walk" }, true]);
      break;
    default:
      break;
  }
  return out;
}

/** Misspellings of an option key, as a notebook user types them. */
function typos(key: string): string[] {
  const out = new Set([key.toLowerCase(), `${key}s`, `${key.slice(0, -1)}`]);
  out.delete(key);
  return [...out].filter((k) => k.length > 0);
}

/** Every bad value for parameter `p` whose valid argument is `valid`. */
function badsFor(p: Param, valid: unknown, w: World | null, salt: number): Bad[] {
  const names = p.names ?? [p.name];
  const out: Bad[] = [];
  for (const [label, v, must] of badOfKind(p.kind, w, salt)) {
    if (v === undefined && p.optional) continue;
    const may = p.alsoAccepts?.(v) === true;
    out.push({ where: p.name, arg: v, shown: v, names, mustReject: must && !may, label });
  }
  if (p.kind.k !== "opts" || p.mutable === true) return out;
  const keys = p.kind.keys;
  const base = (valid ?? {}) as Record<string, unknown>;
  // Options objects: each key's bad values, misspelt keys, and a frozen copy (valid).
  let i = 0;
  for (const [key, kind] of Object.entries(keys)) {
    const keyNames = [
      ...names,
      key,
      `${p.name}.${key}`,
      ...(p.names ?? []).map((n) => `${n}.${key}`),
    ];
    for (const [label, v, must] of badOfKind(kind, w, salt + ++i)) {
      if (v === undefined) continue; // an absent key is the default
      out.push({
        where: `${p.name}.${key}`,
        arg: { ...base, [key]: v },
        shown: v,
        names: keyNames,
        mustReject: must && p.keysAlsoAccept?.[key]?.(v) !== true,
        label,
      });
    }
    for (const t of typos(key)) {
      if (t in keys) continue;
      out.push({
        where: `${p.name}.${t}`,
        arg: { ...base, [t]: base[key] ?? 1 },
        shown: t,
        names,
        mustReject: true,
        label: `misspelt key ${JSON.stringify(t)}`,
      });
    }
  }
  out.push({
    where: p.name,
    arg: { ...base, bogusKey: 1 },
    shown: "bogusKey",
    names,
    mustReject: true,
    label: "unknown key",
  });
  out.push({
    where: p.name,
    arg: Object.freeze({ ...base }),
    shown: undefined,
    names,
    mustReject: false,
    mustAccept: true,
    label: "frozen valid options",
  });
  return out;
}

// ---- the table of entry points ----------------------------------------------------------------------

/** One public entry point. */
interface Entry {
  /** `Vm#method`, `Vcpu#method`, `View#method` or the export name. */
  name: string;
  params: readonly Param[];
  /** The VMs it runs on (its valid call must succeed there). Absent: it takes no VM. */
  modes?: readonly Mode[];
  /** Valid arguments. */
  valid: (w: World) => unknown[];
  call: (w: World, args: unknown[]) => unknown;
  /**
   * The call reads and builds views only: the VM's state is not compared (making the view may
   * itself read the VM, e.g. stop its trace).
   */
  view?: boolean;
  /**
   * The display layer (src/display, which imports nothing, not even errors.ts) documents a
   * TypeError naming every schema violation as its bad-input error.
   */
  typeError?: boolean;
}

const ALL = MODES;
const WITH_MMU_TDP: readonly Mode[] = ["tdp", "tdp-ring"];
const SHADOW: readonly Mode[] = ["shadow-4level", "shadow-32bit", "preset-v2.6.23"];
const BITMAP_LOG: readonly Mode[] = ["tdp", "shadow-4level", "shadow-32bit", "preset-v2.6.23"];
const RMAP_MMU = SHADOW;

const region = (over: Record<string, unknown> = {}) => ({
  slot: 5,
  guestPhysAddr: 40 * MiB,
  memorySize: MiB,
  flags: 0,
  ...over,
});
const REGION_KEYS: Record<string, Kind> = {
  slot: { k: "int", min: 0, max: 32763 },
  guestPhysAddr: { k: "gpa" },
  memorySize: { k: "int", min: 0, max: 2 ** 43, bigint: true },
  flags: { k: "int", min: 0, max: 3 },
  backing: { k: "enum", values: ["4k", "thp", "hugetlb-2m", "hugetlb-1g"] },
  userspaceAddr: { k: "int", min: 0, max: 2 ** 47 - 4096, bigint: true },
};
const ACCESS_KEYS: Record<string, Kind> = {
  write: { k: "bool" },
  fetch: { k: "bool" },
  user: { k: "bool" },
  implicit: { k: "bool" },
};
const DATA_KEYS: Record<string, Kind> = {
  size: { k: "enum", values: [1, 2, 4, 8] },
  user: { k: "bool" },
  implicit: { k: "bool" },
};
const SREGS_KEYS: Record<string, Kind> = {
  cr0: { k: "u64" },
  cr3: { k: "u64" },
  cr4: { k: "u64" },
  efer: { k: "u64" },
  cpl: { k: "int", min: 0, max: 3 },
};
const MEMSTRESS_KEYS: Record<string, Kind> = {
  vcpus: { k: "int", min: 1, max: 512 },
  bytesPerVcpu: { k: "int", min: 4096, max: 2 ** 40 },
  backing: { k: "enum", values: ["4k", "thp", "hugetlb-2m", "hugetlb-1g"] },
  slots: { k: "int", min: 1, max: 512 },
  writePercent: { k: "int", min: 0, max: 100 },
  randomAccess: { k: "bool" },
  iterations: { k: "int", min: 0, max: 10000 },
  manualProtect: { k: "bool" },
  initiallySet: { k: "bool" },
  clearChunkPages: { k: "int", min: 64, max: 2 ** 40 },
  eagerSplit: { k: "bool" },
  preset: { k: "enum", values: Object.keys(api.PRESETS) },
  seed: { k: "int", min: 0, max: 2 ** 31 - 2 },
};
const SMALL_MEMSTRESS = { bytesPerVcpu: 64 * 4096, iterations: 1 };
const HEATMAP_KEYS: Record<string, Kind> = {
  regionBytes: { k: "int", min: 4096, max: 2 ** 30 },
  rowBytes: { k: "int", min: 4096, max: 2 ** 40 },
  base: { k: "int", min: 0, max: 2 ** 52 },
  rows: { k: "int", min: 1, max: 2 ** 24 },
  scale: { k: "enum", values: ["log", "linear"] },
};
const KVMSTAT_KEYS: Record<string, Kind> = {
  fields: { k: "string" },
  sort: { k: "enum", values: ["current", "total", "name"] },
};
const gpaP = (name = "gpa"): Param => ({ name, kind: { k: "gpa" } });
const gvaP: Param = { name: "gva", kind: { k: "gva" } };
const accessOpts: Param = {
  name: "opts",
  optional: true,
  kind: { k: "opts", keys: ACCESS_KEYS },
  names: ["access"],
};
const dataOpts = (op: string): Param => ({
  name: "opts",
  optional: true,
  kind: { k: "opts", keys: DATA_KEYS },
  names: [op, `${op} option`],
});

/** A trace view with events (the world's trace, stopped). */
const traceOf = (w: World) => w.vm.stopTrace();

const ENTRIES: readonly Entry[] = [
  // ---- createVm and the VM ioctls ----
  {
    name: "createVm",
    params: [
      {
        name: "options",
        optional: true,
        kind: {
          k: "opts",
          keys: {
            maxPhysAddrBits: { k: "int", min: 32, max: 52 },
            mmu: { k: "enum", values: ["tdp", "shadow", "none"] },
            preset: { k: "enum", values: Object.keys(api.PRESETS) },
            features: { k: "opts", keys: { nx: { k: "bool" } } },
            memoryBudget: { k: "int", min: 1, max: 2 ** 53 - 1 },
          },
        },
      },
    ],
    valid: () => [{ maxPhysAddrBits: 40, mmu: "tdp", features: { nx: true } }],
    call: (_w, a) => createVm(a[0] as never),
  },
  {
    name: "Vm#setUserMemoryRegion",
    modes: ALL,
    params: [{ name: "region", kind: { k: "opts", keys: REGION_KEYS } }],
    valid: () => [region()],
    call: (w, a) => w.vm.setUserMemoryRegion(a[0] as never),
  },
  {
    name: "Vm#createVcpu",
    modes: ["tdp", "shadow-4level"],
    params: [],
    valid: () => [],
    call: (w) => w.vm.createVcpu(),
  },
  {
    name: "Vm#getDirtyLog",
    modes: BITMAP_LOG,
    params: [{ name: "slotId", kind: { k: "slotId" }, names: ["slot", "slotId"] }],
    valid: () => [LOGGED_SLOT],
    call: (w, a) => w.vm.getDirtyLog(a[0] as never),
  },
  {
    name: "Vm#clearDirtyLog",
    modes: BITMAP_LOG,
    params: [
      { name: "slotId", kind: { k: "slotId" }, names: ["slot", "slotId"] },
      { name: "firstPage", kind: { k: "int", min: 0, max: 1024 } },
      { name: "numPages", kind: { k: "int", min: 0, max: 1024 } },
      { name: "bitmap", kind: { k: "bitmap" } },
    ],
    valid: () => [LOGGED_SLOT, 0, 64, new Uint32Array(2).fill(0xffffffff)],
    call: (w, a) => w.vm.clearDirtyLog(a[0] as never, a[1] as never, a[2] as never, a[3] as never),
  },
  {
    name: "Vm#enableCap",
    modes: ["tdp", "shadow-4level"],
    params: [
      {
        name: "cap",
        kind: {
          k: "enum",
          values: ["KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", "KVM_CAP_DIRTY_LOG_RING"],
        },
      },
      { name: "args", kind: { k: "int", min: 0, max: 3 } },
    ],
    valid: () => ["KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", 1],
    call: (w, a) => w.vm.enableCap(a[0] as never, a[1] as never),
  },
  {
    name: "Vm#resetDirtyRings",
    modes: ["tdp-ring"],
    params: [],
    valid: () => [],
    call: (w) => w.vm.resetDirtyRings(),
  },
  {
    name: "Vm#setNrMmuPages",
    modes: ALL,
    params: [{ name: "n", kind: { k: "int", min: 64, max: 2 ** 31 }, names: ["nrMmuPages"] }],
    valid: () => [200],
    call: (w, a) => w.vm.setNrMmuPages(a[0] as never),
  },
  ...(["zapGfnRange", "mmuNotifierInvalidate"] as const).map(
    (m): Entry => ({
      name: `Vm#${m}`,
      modes: ALL,
      params: [
        { name: "start", kind: { k: "gfn" } },
        { name: "end", kind: { k: "gfn" } },
      ],
      valid: () => [LOGGED_GPA / 4096, LOGGED_GPA / 4096 + 4],
      call: (w, a) => w.vm[m](a[0] as never, a[1] as never),
    }),
  ),
  ...(["mmuNotifierClearFlushYoung", "mmuNotifierClearYoung", "mmuNotifierTestYoung"] as const).map(
    (m): Entry => ({
      name: `Vm#${m}`,
      modes: ALL,
      params: [
        { name: "hvaStart", kind: { k: "int", min: 0, max: 2 ** 47 } },
        { name: "hvaEnd", kind: { k: "int", min: 0, max: 2 ** 47 } },
      ],
      valid: (w) => {
        const s = w.vm.memslots.get(LOGGED_SLOT)!;
        return [s.userspaceAddr, s.userspaceAddr + 4 * 4096];
      },
      call: (w, a) => w.vm[m](a[0] as never, a[1] as never),
    }),
  ),
  {
    name: "Vm#mmuNotifierInvalidateHva",
    modes: ALL,
    params: [
      { name: "hvaStart", kind: { k: "int", min: 0, max: 2 ** 47 } },
      { name: "hvaEnd", kind: { k: "int", min: 0, max: 2 ** 47 } },
    ],
    valid: (w) => {
      const s = w.vm.memslots.get(LOGGED_SLOT)!;
      return [s.userspaceAddr, s.userspaceAddr + 4 * 4096];
    },
    call: (w, a) => w.vm.mmuNotifierInvalidateHva(a[0] as never, a[1] as never),
  },
  {
    name: "Vm#zapAllFast",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vm.zapAllFast(),
  },
  {
    name: "Vm#zapSpte",
    modes: ALL,
    params: [{ name: "gfn", kind: { k: "gfn" }, names: ["gfn", "start"] }],
    valid: () => [LOGGED_GPA / 4096],
    call: (w, a) => w.vm.zapSpte(a[0] as never),
  },
  {
    name: "Vm#writeProtectAllSps",
    modes: RMAP_MMU,
    params: [
      {
        name: "opts",
        optional: true,
        kind: {
          k: "opts",
          keys: {
            mode: { k: "enum", values: ["scan"] },
            nonLeaf: { k: "bool" },
            clearMmuWritable: { k: "bool" },
          },
        },
      },
    ],
    valid: () => [{ mode: "scan" }],
    call: (w, a) => w.vm.writeProtectAllSps(a[0] as never),
  },
  {
    name: "Vm#fastWriteProtectAll",
    modes: RMAP_MMU,
    params: [],
    valid: () => [],
    call: (w) => w.vm.fastWriteProtectAll(),
  },
  {
    name: "Vm#startTrace",
    modes: ALL,
    params: [
      // Up to the largest ring a Float64Array holds (2^31 - 1 words of 11 per event); a capacity
      // in range may still cross the memory budget (ResourceLimitError).
      {
        name: "capacity",
        optional: true,
        kind: { k: "int", min: 1, max: Math.floor((2 ** 31 - 1) / 11) },
      },
      { name: "events", optional: true, kind: { k: "enum", values: [] }, names: ["events"] },
    ],
    valid: () => [100, ["kvm_page_fault"]],
    call: (w, a) => w.vm.startTrace(a[0] as never, a[1] as never),
  },
  {
    name: "Vm#memoryUsage",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vm.memoryUsage(),
    view: true,
  },
  {
    name: "MemoryUsage#get",
    modes: ["tdp"],
    params: [{ name: "category", kind: { k: "enum", values: ["guestMemory", "mmuPages"] } }],
    valid: () => ["mmuPages"],
    call: (w, a) => w.vm.memoryUsage().get(a[0] as never),
    view: true,
  },
  {
    name: "setHostMemoryInfo",
    // Process-wide: the valid call sets what the machine gives, and the hook is reset after.
    params: [
      {
        name: "info",
        kind: {
          k: "opts",
          keys: {
            totalBytes: { k: "int", min: 1, max: 2 ** 53 - 1 },
            heapLimitBytes: { k: "int", min: 1, max: 2 ** 53 - 1 },
          },
        },
        // null forgets the host's facts; a null heap limit means unknown (both documented).
        alsoAccepts: (v) => v === null,
        keysAlsoAccept: { heapLimitBytes: (v) => v === null },
      },
    ],
    valid: () => [{ totalBytes: 8 * 2 ** 30, heapLimitBytes: 2 ** 31 }],
    call: (_w, a) => {
      try {
        return api.setHostMemoryInfo(a[0] as never);
      } finally {
        api.setHostMemoryInfo(null);
      }
    },
  },
  {
    name: "hostMemoryInfo",
    params: [],
    valid: () => [],
    call: () => api.hostMemoryInfo(),
  },
  {
    name: "Vm#stopTrace",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vm.stopTrace(),
  },
  {
    name: "Vm#tracepointCounts",
    modes: ALL,
    params: [{ name: "system", optional: true, kind: { k: "enum", values: ["kvm", "kvmmmu"] } }],
    valid: () => ["kvmmmu"],
    call: (w, a) => w.vm.tracepointCounts(a[0] as never),
  },
  {
    name: "Vm#guestWrite64",
    modes: ALL,
    params: [gpaP(), { name: "value", kind: { k: "u64" } }],
    valid: () => [LOGGED_GPA + 0x800, 5n],
    call: (w, a) => w.vm.guestWrite64(a[0] as never, a[1] as never),
  },
  {
    name: "Vm#guestWrite32",
    modes: ALL,
    params: [gpaP(), { name: "value", kind: { k: "u32" } }],
    valid: () => [LOGGED_GPA + 0x800, 5],
    call: (w, a) => w.vm.guestWrite32(a[0] as never, a[1] as never),
  },
  {
    name: "Vm#readPhys64",
    modes: ALL,
    params: [gpaP()],
    valid: () => [LOGGED_GPA],
    call: (w, a) => w.vm.readPhys64(a[0] as never),
  },
  {
    name: "Vm#readPhys32",
    modes: ALL,
    params: [gpaP()],
    valid: () => [LOGGED_GPA],
    call: (w, a) => w.vm.readPhys32(a[0] as never),
  },
  { name: "Vm#audit", modes: ALL, params: [], valid: () => [], call: (w) => w.vm.audit() },
  {
    name: "Vm#snapshot",
    modes: ALL,
    params: [
      {
        name: "opts",
        optional: true,
        kind: {
          k: "opts",
          keys: {
            maxEntriesPerTable: { k: "int", min: 1, max: 2 ** 20 },
            maxTables: { k: "int", min: 1, max: 2 ** 20 },
            // Any live root's id is valid: only what cannot be an id must be refused.
            root: { k: "int", min: 0, max: 2 ** 31 },
            title: { k: "string" },
            label: { k: "string" },
          },
        },
      },
    ],
    valid: () => [{ maxTables: 4, title: "t" }],
    call: (w, a) => w.vm.snapshot(a[0] as never),
  },
  {
    name: "Vm#walkGpa",
    modes: WITH_MMU_TDP,
    params: [{ name: "gpa", kind: { k: "int", min: 0, max: 2 ** 46 - 1 } }],
    valid: () => [LOGGED_GPA],
    call: (w, a) => w.vm.walkGpa(a[0] as never),
  },
  {
    name: "Vm#kvmStat",
    modes: ALL,
    params: [{ name: "opts", optional: true, kind: { k: "opts", keys: KVMSTAT_KEYS } }],
    valid: () => [{ fields: "pf_", sort: "total" }],
    call: (w, a) => w.vm.kvmStat(a[0] as never),
  },
  {
    name: "Vm#rmapHistogram",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vm.rmapHistogram(),
  },
  {
    name: "Vm#shadowPages",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vm.shadowPages(),
  },
  { name: "Vm#toString", modes: ALL, params: [], valid: () => [], call: (w) => w.vm.toString() },
  {
    name: "Vm#[Jupyter.display]",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vm[api.JUPYTER_DISPLAY](),
  },
  // ---- the vCPU ----
  {
    name: "Vcpu#access",
    modes: ALL,
    params: [gvaP, accessOpts],
    valid: () => [DATA_GVA + 0x10, { write: true }],
    call: (w, a) => w.vcpu.access(a[0] as never, a[1] as never),
  },
  {
    name: "Vcpu#walk",
    modes: ALL,
    params: [gvaP, accessOpts],
    valid: () => [DATA_GVA + 0x10, { write: true }],
    call: (w, a) => w.vcpu.walk(a[0] as never, a[1] as never),
  },
  {
    name: "Vcpu#walk2d",
    modes: WITH_MMU_TDP,
    params: [gvaP, accessOpts],
    valid: () => [DATA_GVA + 0x10, { write: true }],
    call: (w, a) => w.vcpu.walk2d(a[0] as never, a[1] as never),
  },
  {
    name: "Vcpu#read",
    modes: ALL,
    params: [gvaP, dataOpts("read")],
    valid: () => [DATA_GVA + 0x10, { size: 4 }],
    call: (w, a) => w.vcpu.read(a[0] as never, a[1] as never),
  },
  {
    name: "Vcpu#fetch",
    modes: ALL,
    params: [gvaP, dataOpts("fetch")],
    valid: () => [DATA_GVA + 0x10, { size: 4 }],
    call: (w, a) => w.vcpu.fetch(a[0] as never, a[1] as never),
  },
  {
    name: "Vcpu#write",
    modes: ALL,
    params: [gvaP, { name: "value", kind: { k: "u64" } }, dataOpts("write")],
    valid: () => [DATA_GVA + 0x10, 7, { size: 4 }],
    call: (w, a) => w.vcpu.write(a[0] as never, a[1] as never, a[2] as never),
  },
  {
    name: "Vcpu#invlpg",
    modes: ALL,
    params: [gvaP],
    valid: () => [DATA_GVA],
    call: (w, a) => w.vcpu.invlpg(a[0] as never),
  },
  {
    name: "Vcpu#setSregs",
    modes: ALL,
    params: [{ name: "sregs", kind: { k: "opts", keys: SREGS_KEYS }, names: ["sregs", "s"] }],
    valid: (w) => [{ cr3: w.b.root, cpl: 0 }],
    call: (w, a) => w.vcpu.setSregs(a[0] as never),
  },
  {
    name: "Vcpu#getSregs",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vcpu.getSregs(),
  },
  {
    name: "Vcpu#movCr3",
    modes: ALL,
    params: [{ name: "cr3", kind: { k: "u64" } }],
    valid: (w) => [w.b.root],
    call: (w, a) => w.vcpu.movCr3(a[0] as never),
  },
  {
    name: "Vcpu#setCpl",
    modes: ALL,
    params: [{ name: "cpl", kind: { k: "int", min: 0, max: 3 } }],
    valid: () => [3],
    call: (w, a) => w.vcpu.setCpl(a[0] as never),
  },
  {
    name: "Vcpu#setPkru",
    modes: ALL,
    params: [{ name: "pkru", kind: { k: "reg32" } }],
    valid: () => [4],
    call: (w, a) => w.vcpu.setPkru(a[0] as never),
  },
  {
    name: "Vcpu#setRflags",
    modes: ALL,
    params: [{ name: "rflags", kind: { k: "int", min: 0, max: 0x3fffd7, bigint: true } }],
    valid: () => [0x40002],
    call: (w, a) => w.vcpu.setRflags(a[0] as never),
  },
  { name: "Vcpu#pause", modes: ALL, params: [], valid: () => [], call: (w) => w.vcpu.pause() },
  {
    name: "Vcpu#toString",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vcpu.toString(),
  },
  {
    name: "Vcpu#[Jupyter.display]",
    modes: ALL,
    params: [],
    valid: () => [],
    call: (w) => w.vcpu[api.JUPYTER_DISPLAY](),
  },
  // ---- guest page tables ----
  {
    name: "GuestPageTableBuilder",
    modes: ["tdp"],
    params: [
      {
        name: "vm",
        kind: { k: "source" },
        // Another VM is a valid target; it has no memslot under the pool.
        alsoAccepts: (v) => v instanceof Vm,
        names: ["vm", "poolBase"],
      },
      {
        name: "opts",
        kind: {
          k: "opts",
          keys: {
            mode: { k: "enum", values: ["32-bit", "pae", "4-level", "5-level"] },
            poolBase: { k: "gpa" },
            poolSize: { k: "int", min: 4096, max: 2 ** 46, bigint: true },
          },
        },
        names: ["options", "opts"],
      },
    ],
    valid: (w) => [w.vm, { mode: "4-level", poolBase: 0x300000, poolSize: 0x10000 }],
    call: (_w, a) => new GuestPageTableBuilder(a[0] as never, a[1] as never),
  },
  {
    name: "GuestPageTableBuilder#map",
    modes: ["tdp", "shadow-32bit"],
    params: [
      gvaP,
      gpaP(),
      { name: "size", kind: { k: "int", min: 4096, max: 2 ** 40, bigint: true } },
      {
        name: "opts",
        optional: true,
        kind: {
          k: "opts",
          keys: {
            pageSize: { k: "enum", values: [4096, 2097152] },
            writable: { k: "bool" },
            user: { k: "bool" },
            nx: { k: "bool" },
            global: { k: "bool" },
            accessed: { k: "bool" },
            dirty: { k: "bool" },
            pkey: { k: "int", min: 0, max: 15 },
          },
        },
      },
    ],
    valid: () => [0xc00000, 0x300000, 8192, { writable: false }],
    call: (w, a) => w.b.map(a[0] as never, a[1] as never, a[2] as never, a[3] as never),
  },
  {
    name: "GuestPageTableBuilder#sregs",
    modes: ["tdp"],
    params: [
      {
        name: "opts",
        optional: true,
        kind: {
          k: "opts",
          keys: { wp: { k: "bool" }, nx: { k: "bool" }, pke: { k: "bool" }, pse: { k: "bool" } },
        },
      },
    ],
    valid: () => [{ nx: true }],
    call: (w, a) => w.b.sregs(a[0] as never),
  },
  ...(["entryAddress", "getEntry", "ensureTables"] as const).map(
    (m): Entry => ({
      name: `GuestPageTableBuilder#${m}`,
      modes: ["tdp"],
      params: [gvaP, { name: "level", kind: { k: "int", min: 1, max: 4 } }],
      valid: () => [DATA_GVA, 1],
      call: (w, a) => w.b[m](a[0] as never, a[1] as never),
    }),
  ),
  {
    name: "GuestPageTableBuilder#setEntry",
    modes: ["tdp"],
    params: [
      gvaP,
      { name: "level", kind: { k: "int", min: 1, max: 4 } },
      { name: "value", kind: { k: "u64" } },
    ],
    valid: () => [DATA_GVA + 0x100000 * 0 + 0xff000, 1, 0],
    call: (w, a) => w.b.setEntry(a[0] as never, a[1] as never, a[2] as never),
  },
  {
    name: "GuestPageTableBuilder#index",
    modes: ["tdp"],
    params: [
      { name: "hi", kind: { k: "int", min: 0, max: 2 ** 32 - 1 } },
      { name: "lo", kind: { k: "int", min: 0, max: 2 ** 32 - 1 } },
      { name: "level", kind: { k: "int", min: 1, max: 4 } },
    ],
    valid: () => [0, DATA_GVA, 1],
    call: (w, a) => w.b.index(a[0] as never, a[1] as never, a[2] as never),
  },
  {
    name: "GuestPageTableBuilder#snapshot",
    modes: ["tdp"],
    params: [
      {
        name: "opts",
        optional: true,
        kind: {
          k: "opts",
          keys: {
            maxEntries: { k: "int", min: 1, max: 2 ** 20 },
            title: { k: "string" },
            label: { k: "string" },
          },
        },
      },
    ],
    valid: () => [{ maxEntries: 10 }],
    call: (w, a) => w.b.snapshot(a[0] as never),
  },
  // ---- views ----
  {
    name: "VmConfig#get",
    modes: ["tdp"],
    // An unknown switch name gives undefined (documented); a non-string is refused.
    params: [{ name: "name", kind: { k: "string" } }],
    valid: () => ["nx"],
    call: (w, a) => w.vm.config.get(a[0] as never),
  },
  {
    name: "TraceView#filter",
    modes: ["tdp"],
    params: [
      {
        name: "filter",
        alsoAccepts: (v) => typeof v === "function",
        kind: {
          k: "opts",
          keys: { vcpu: { k: "int", min: 0, max: 2 ** 53 - 1 } },
        },
      },
    ],
    valid: () => [{ vcpu: 0 }],
    call: (w, a) => traceOf(w).filter(a[0] as never),
  },
  {
    name: "TraceView#faultHeatmap",
    modes: ["tdp"],
    params: [{ name: "opts", optional: true, kind: { k: "opts", keys: HEATMAP_KEYS } }],
    valid: () => [{ regionBytes: 4096, rowBytes: 65536 }],
    call: (w, a) => traceOf(w).faultHeatmap(a[0] as never),
  },
  {
    name: "FaultHeatmap",
    params: [
      {
        name: "addresses",
        kind: { k: "source" },
        alsoAccepts: (v) => Array.isArray(v) && v.every((x) => typeof x === "number"),
      },
      { name: "opts", optional: true, kind: { k: "opts", keys: HEATMAP_KEYS } },
    ],
    valid: () => [[0, 4096, 8192], { regionBytes: 4096, rowBytes: 65536 }],
    call: (_w, a) => new FaultHeatmap(a[0] as never, a[1] as never),
  },
  {
    name: "FaultHeatmap#count",
    params: [{ name: "address", kind: { k: "int", min: 0, max: 2 ** 53 - 1 } }],
    valid: () => [4096],
    call: (_w, a) => new FaultHeatmap([0, 4096]).count(a[0] as never),
  },
  {
    name: "FaultHeatmap#figure",
    params: [{ name: "title", optional: true, kind: { k: "string" } }],
    valid: () => ["faults"],
    call: (_w, a) => new FaultHeatmap([0, 4096]).figure(a[0] as never),
  },
  ...(["deltas", "batchText", "logText"] as const).map(
    (m): Entry => ({
      name: `KvmStatView#${m}`,
      modes: ["tdp"],
      params: [
        {
          name: "opts",
          optional: true,
          kind: { k: "opts", keys: m === "deltas" ? KVMSTAT_KEYS : { fields: { k: "string" } } },
        },
      ],
      valid: () => [{ fields: "pf_" }],
      call: (w, a) =>
        w.vm
          .kvmStat()
          .sample("x")
          [m](a[0] as never),
    }),
  ),
  {
    name: "KvmStatView#sample",
    modes: ["tdp"],
    params: [{ name: "label", optional: true, kind: { k: "string" } }],
    valid: () => ["one"],
    call: (w, a) => w.vm.kvmStat().sample(a[0] as never),
  },
  {
    name: "KvmStatView#figure",
    modes: ["tdp"],
    params: [
      {
        name: "opts",
        optional: true,
        kind: {
          k: "opts",
          keys: {
            fields: { k: "string" },
            top: { k: "int", min: 1, max: 2 ** 53 - 1 },
            yAxis: { k: "enum", values: ["log", "linear"] },
          },
        },
      },
    ],
    valid: () => [{ top: 3 }],
    call: (w, a) =>
      w.vm
        .kvmStat()
        .sample("x")
        .figure(a[0] as never),
  },
  {
    name: "KvmDirtyRing#harvest",
    modes: ["tdp-ring"],
    params: [],
    valid: () => [],
    call: (w) => w.vcpu.dirtyRing!.harvest(),
  },
  // ---- views of page tables and display helpers ----
  {
    name: "sideBySide",
    modes: ["tdp"],
    params: [
      { name: "a", kind: { k: "source" }, names: ["sources[0]", "sources"] },
      { name: "b", kind: { k: "source" }, names: ["sources[1]", "sources"] },
    ],
    valid: (w) => [w.vm.snapshot(), w.b.snapshot()],
    call: (_w, a) => sideBySide(a[0] as never, a[1] as never),
  },
  {
    name: "changes",
    modes: ["tdp"],
    params: [
      { name: "before", kind: { k: "source" }, names: ["before", "before[0]"] },
      { name: "after", kind: { k: "source" }, names: ["after", "after[0]"] },
      { name: "title", optional: true, kind: { k: "string" } },
    ],
    valid: (w) => [w.b.snapshot(), w.b.snapshot(), "t"],
    call: (_w, a) => changes(a[0] as never, a[1] as never, a[2] as never),
  },
  {
    name: "PagetableView",
    modes: ["tdp"],
    params: [{ name: "payload", kind: { k: "source" } }],
    valid: (w) => [w.b.snapshot().payload],
    call: (_w, a) => new PagetableView(a[0] as never),
  },
  {
    name: "pagetableBundle",
    typeError: true,
    modes: ["tdp"],
    params: [{ name: "payload", kind: { k: "source" } }],
    valid: (w) => [w.b.snapshot().payload],
    call: (_w, a) => pagetableBundle(a[0] as never),
  },
  {
    name: "walkBundle",
    typeError: true,
    modes: ["tdp"],
    params: [{ name: "payload", kind: { k: "source" } }],
    valid: (w) => [w.vcpu.walk(DATA_GVA).toPayload()],
    call: (_w, a) => walkBundle(a[0] as never),
  },
  {
    name: "walk2dBundle",
    typeError: true,
    modes: ["tdp"],
    params: [{ name: "payload", kind: { k: "source" } }],
    valid: (w) => [w.vcpu.walk2d(DATA_GVA).toPayload()],
    call: (_w, a) => walk2dBundle(a[0] as never),
  },
  {
    name: "plotlyBundle",
    typeError: true,
    params: [{ name: "figure", kind: { k: "source" } }],
    valid: () => [{ data: [{ type: "bar", x: [1], y: [2] }], layout: {} }],
    call: (_w, a) => plotlyBundle(a[0] as never),
  },
  {
    name: "htmlTableBundle",
    typeError: true,
    params: [
      { name: "title", kind: { k: "string" } },
      {
        name: "rows",
        kind: { k: "source" },
        alsoAccepts: (v) => Array.isArray(v) && v.length === 0,
      },
    ],
    valid: () => ["t", [{ a: 1 }]],
    call: (_w, a) => htmlTableBundle(a[0] as never, a[1] as never),
  },
  {
    name: "escapeHtml",
    params: [{ name: "text", kind: { k: "any" } }],
    valid: () => ["<b>"],
    call: (_w, a) => api.escapeHtml(a[0]),
  },
  { name: "presetTable", params: [], valid: () => [], call: () => presetTable() },
  { name: "PresetTable", params: [], valid: () => [], call: () => new PresetTable() },
  // ---- memstress ----
  ...(["memstress", "Memstress"] as const).map(
    (m): Entry => ({
      name: m,
      params: [
        {
          name: "opts",
          optional: true,
          kind: { k: "opts", keys: MEMSTRESS_KEYS },
          names: ["options"],
        },
      ],
      valid: () => [SMALL_MEMSTRESS],
      call: (_w, a) =>
        m === "memstress" ? memstress(a[0] as never) : new Memstress(a[0] as never),
    }),
  ),
  {
    name: "Memstress#passRows",
    params: [
      { name: "from", kind: { k: "int", min: 0, max: 64 } },
      { name: "to", kind: { k: "int", min: 0, max: 64 } },
    ],
    valid: () => [0, 8],
    call: (_w, a) => memstress(SMALL_MEMSTRESS).passRows(a[0] as never, a[1] as never),
  },
  {
    name: "dirtyLogPerf",
    params: [
      {
        name: "opts",
        optional: true,
        kind: { k: "opts", keys: MEMSTRESS_KEYS },
        names: ["options"],
      },
      { name: "onPhase", optional: true, kind: { k: "callback" } },
    ],
    valid: () => [SMALL_MEMSTRESS, () => {}],
    call: (_w, a) => dirtyLogPerf(a[0] as never, a[1] as never),
  },
  {
    name: "dirtyLogPerfSteps",
    params: [
      {
        name: "opts",
        optional: true,
        kind: { k: "opts", keys: MEMSTRESS_KEYS },
        names: ["options"],
      },
    ],
    valid: () => [SMALL_MEMSTRESS],
    call: (_w, a) => dirtyLogPerfSteps(a[0] as never).next(),
  },
  {
    name: "DirtyLogPerfResult#phase",
    params: [{ name: "name", kind: { k: "string" } }],
    valid: () => ["populate memory"],
    call: (_w, a) => dirtyLogPerf(SMALL_MEMSTRESS).phase(a[0] as never),
  },
  {
    name: "guestRandomU32",
    params: [
      {
        name: "state",
        mutable: true,
        kind: { k: "opts", keys: { seed: { k: "int", min: 1, max: 2 ** 31 - 2 } } },
      },
    ],
    valid: () => [{ seed: 1 }],
    call: (_w, a) => guestRandomU32(a[0] as never),
  },
];

// ---- the runner -------------------------------------------------------------------------------------

interface Tally {
  calls: number;
  refused: number;
  accepted: number;
  failures: string[];
}

const isOpts = (p: Param): boolean => p.kind.k === "opts";

function isAllowedError(e: unknown): e is InvalidArgumentError {
  // ResourceLimitError (a budget, not a bad value) is allowed once it exists; it is not ours.
  return (
    e instanceof InvalidArgumentError || (e instanceof Error && e.name === "ResourceLimitError")
  );
}

/**
 * Run the bad values of `e` on a fresh VM of its `m`-th mode; failures go to `t`. Every value runs
 * on the entry's first mode, and each on one of the others in turn (value j on mode
 * 1 + j mod (modes - 1)): every mode sees a share of every parameter's values, and the test stays
 * within its time.
 */
function fuzzEntry(e: Entry, m: number, t: Tally, salt: number): void {
  const modes = e.modes ?? ["tdp"];
  const mode = modes[m]!;
  const view = e.view === true || !/^(Vm#|Vcpu#|GuestPageTableBuilder)/.test(e.name);
  const tag = e.modes === undefined ? e.name : `${e.name} [${mode}]`;
  let w = buildWorld(mode);
  let validArgs = e.valid(w);
  let before = view ? null : stateOf(w);
  const fresh = () => {
    w = buildWorld(mode);
    validArgs = e.valid(w);
    before = view ? null : stateOf(w);
  };
  const runsHere = (j: number) => m === 0 || j % (modes.length - 1) === m - 1;
  e.params.forEach((p, i) => {
    const bads = badsFor(p, validArgs[i], w, salt + i * 97);
    for (const [j, bad] of bads.entries()) {
      if (!runsHere(j)) continue;
      const args = validArgs.slice();
      args[i] = bad.arg;
      const what = `${tag} ${bad.where} = ${bad.label}`;
      t.calls++;
      let err: unknown;
      let threw = false;
      try {
        e.call(w, args);
      } catch (x) {
        threw = true;
        err = x;
      }
      if (!threw) {
        t.accepted++;
        if (bad.mustReject) t.failures.push(`${what}: accepted (should be refused)`);
        fresh();
        continue;
      }
      t.refused++;
      if (bad.mustAccept) {
        t.failures.push(`${what}: refused a valid value: ${String(err)}`);
        fresh();
        continue;
      }
      if (!isAllowedError(err) && !(e.typeError === true && err instanceof TypeError)) {
        t.failures.push(
          `${what}: threw ${(err as Error)?.name ?? typeof err}: ${String((err as Error)?.message ?? err)}`,
        );
        fresh();
        continue;
      }
      if (!isAllowedError(err)) continue; // the display layer's documented TypeError
      const message = err.message;
      if (err.name === "ResourceLimitError") {
        // A value within the argument's range whose cost crosses the VM's budget: the error
        // names the budget and the estimate, not an argument.
        if (!/budget of \d+ bytes/.test(message) || !/needs an estimated \d+ bytes/.test(message))
          t.failures.push(`${what}: ResourceLimitError without estimate and budget: ${message}`);
      } else {
        const shown = describeValue(bad.shown);
        // An object argument may be refused by one of its keys or fields (an unknown key, a
        // missing required field shown as undefined).
        const parts =
          bad.shown !== null && typeof bad.shown === "object"
            ? [
                ...Object.keys(bad.shown),
                ...Object.values(bad.shown),
                ...(isOpts(e.params[i]!) ? [undefined] : []),
              ].map(describeValue)
            : [];
        if (!message.includes(shown) && !parts.some((s) => message.includes(s)))
          t.failures.push(`${what}: message does not show ${shown}: ${message}`);
        const names = isOpts(e.params[i]!)
          ? [...bad.names, ...Object.keys((e.params[i]!.kind as { keys: object }).keys)]
          : bad.names;
        if (!names.includes(err.argument))
          t.failures.push(
            `${what}: names argument ${JSON.stringify(err.argument)}, expected one of ${bad.names.join(", ")}`,
          );
      }
      if (before !== null) {
        const diff = stateDiff(before, stateOf(w, false));
        if (diff.length > 0) {
          t.failures.push(`${what}: state changed before the error:\n${diff.join("\n")}`);
          fresh();
        }
      }
    }
  });
  // The table's own check, on the VM every refused call left as it was: the valid call succeeds.
  try {
    e.call(w, e.valid(w));
  } catch (err) {
    t.failures.push(`${tag}: the valid call threw ${String(err)}`);
  }
}

describe("every public call, fuzzed: it succeeds as documented or throws InvalidArgumentError naming the value, and a refused call leaves the VM unchanged", () => {
  const t: Tally = { calls: 0, refused: 0, accepted: 0, failures: [] };
  afterAll(() => {
    console.log(
      `api-fuzz: ${ENTRIES.length} entry points, ${t.calls} calls (${t.refused} refused, ${t.accepted} accepted)`,
    );
  });
  ENTRIES.forEach((e, k) => {
    it(e.name, () => {
      const failures = t.failures.length;
      for (let m = 0; m < (e.modes ?? ["tdp"]).length; m++) fuzzEntry(e, m, t, k * 1009);
      expect(t.failures.slice(failures)).toEqual([]);
    }, 60_000);
  });
});

// ---- a frozen VM or vCPU as the receiver -------------------------------------------------------

/**
 * `Object.freeze` is shallow, and the VM's state lives in nested typed arrays: a frozen VM or
 * vCPU must either run a call that changes nothing, or refuse it with InvalidArgumentError naming
 * the vm or vcpu before anything changed (never a TypeError halfway through, at the first own
 * field the method assigns). Checked for every Vm/Vcpu entry's valid call, in every mode, with
 * the VM frozen, and with only the vCPU frozen, against the full-state snapshot.
 */
describe("a frozen VM or vCPU as the receiver: the call changes nothing, or is refused naming it before anything changed", () => {
  const methods = ENTRIES.filter((e) => /^(Vm|Vcpu)#/.test(e.name));
  let refused = 0;
  let ran = 0;
  afterAll(() => {
    console.log(`frozen receivers: ${ran} calls ran and changed nothing, ${refused} refused`);
  });
  for (const target of ["vm", "vcpu"] as const) {
    it(`frozen ${target}`, () => {
      const failures: string[] = [];
      for (const e of methods) {
        if (target === "vcpu" && !e.name.startsWith("Vcpu#")) continue;
        for (const mode of e.modes ?? ["tdp"]) {
          const w = buildWorld(mode as Mode);
          const args = e.valid(w);
          Object.freeze(target === "vm" ? w.vm : w.vcpu);
          // `vm.stats` folds the vCPU counters into the VM's (the views read it): fold first.
          void w.vm.stats;
          const before = stateOf(w);
          const tag = `${e.name} [${mode}] on a frozen ${target}`;
          try {
            e.call(w, args);
            ran++;
          } catch (err) {
            if (!(err instanceof InvalidArgumentError) || err.argument !== target) {
              failures.push(`${tag}: threw ${String(err)}`);
              continue;
            }
            refused++;
          }
          const diff = stateDiff(before, stateOf(w, false));
          if (diff.length > 0)
            failures.push(`${tag}: state changed:\n${diff.slice(0, 5).join("\n")}`);
        }
      }
      expect(failures).toEqual([]);
    }, 120_000);
  }
});

// ---- the table covers the curated surface -------------------------------------------------------

/**
 * Exports of src/index.ts that are data, not calls: constants, tables, the display symbol and
 * the error classes (constructed by the library, caught by users).
 */
const DATA_EXPORTS = (name: string, value: unknown): boolean =>
  typeof value !== "function" || /Error$/.test(name);

/**
 * Exported classes whose constructors are not entry points: the library builds them from its
 * internal objects (a `VmMmu`, a walker, trace events) and returns them from the calls in the
 * table; they are exported for `instanceof` and their types. Their methods with parameters are
 * in the table.
 */
const VIEW_CLASSES: Record<string, string> = {
  Vm: "made by createVm (in the table)",
  Vcpu: "made by vm.createVcpu() (in the table)",
  VmConfig: "vm.config",
  MemoryUsage: "vm.memoryUsage()",
  ShadowPageList: "vm.shadowPages()",
  TdpTreeView: "vm.snapshot()",
  TdpWalk: "vm.walkGpa()",
  RmapHistogram: "vm.rmapHistogram()",
  TraceView: "vm.stopTrace()",
  KvmStatView: "vm.kvmStat()",
  WalkResult: "vcpu.walk()",
  TwoDimWalk: "vcpu.walk2d()",
  KvmDirtyRing: "vcpu.dirtyRing (KVM_CAP_DIRTY_LOG_RING)",
  KvmStats: "vm.stats",
  VcpuStat: "vcpu.stat",
};

/**
 * Members of the classes' prototypes that are not public entry points, each with why: TypeScript
 * `private`/`protected` members (not callable from a notebook's TypeScript), getters (views of
 * fields), methods marked `@internal` (the model's own paths, used by the builder, the views and
 * the benchmarks with arguments already parsed), and the generic KVM functions the MMU calls
 * (`kvm_make_all_cpus_request` and friends), which are not ioctls.
 */
const NOT_ENTRY_POINTS: Record<string, string> = {
  // Vm (x86/x86.ts, kvm/kvm_main.ts, vm.ts)
  "Vm#archCreateVcpu": "protected hook",
  "Vm#views": "private",
  "Vm#config": "getter",
  "Vm#stats": "getter",
  "Vm#stat": "getter",
  "Vm#memslotGeneration": "getter",
  "Vm#dirtyLogInitiallySet": "getter",
  "Vm#archFlushShadowMemslot": "protected hook",
  "Vm#archPrepareMemoryRegion": "protected hook",
  "Vm#archMemslotsUpdated": "protected hook",
  "Vm#archCommitMemoryRegion": "protected hook",
  "Vm#archMmuEnableLogDirtyPtMasked": "protected hook",
  "Vm#archUnmapGfnRange": "protected hook",
  "Vm#archMemoryRegionBytes": "protected hook (memory budget estimate)",
  "Vm#archClearDirtyLogBytes": "protected hook (memory budget estimate)",
  "Vm#archVcpuPmlBytes": "protected hook (memory budget estimate)",
  "Vm#newDirtyBitmapBytes": "private (memory budget estimate)",
  "Vm#archAgeGfnRange": "protected hook",
  "Vm#ageHva": "private (the three aging notifiers are the entries)",
  "Vm#forEachHvaRange": "private (validates for the notifier entries)",
  "Vm#archSyncDirtyLog": "protected hook",
  "Vm#traceFlush": "protected hook",
  "Vm#requireMmu": "private",
  "Vm#gfnRangeArgs": "private",
  "Vm#requireRmapMmu": "private",
  "Vm#wpCounts": "private",
  "Vm#stopTraceEvents": "protected",
  "Vm#pickHva": "private",
  "Vm#reserveHva": "private",
  "Vm#enableDirtyRing": "private (enableCap is the entry)",
  "Vm#loggedSlot": "private",
  "Vm#gpaArg": "private",
  "Vm#hvfnOf": "private",
  "Vm#writeGuest": "@internal: guestWrite64 parsed (the builder's path)",
  "Vm#makeAllCpusRequest": "kvm_make_all_cpus_request, called by the MMU",
  "Vm#flushRemoteTlbs": "kvm_flush_remote_tlbs, called by the MMU",
  "Vm#markPageDirtyInSlot": "mark_page_dirty_in_slot, called by the MMU",
  "Vm#markPageDirty": "mark_page_dirty, called by the MMU",
  // Vcpu (x86/vcpu.ts, vcpu.ts)
  "Vcpu#pagingMode": "getter",
  "Vcpu#rebuildMmu": "private",
  "Vcpu#accessBits": "@internal: access options to PFERR bits",
  "Vcpu#badAccess": "private",
  "Vcpu#gvaOk": "@internal",
  "Vcpu#notLinear": "private",
  "Vcpu#enterGuest": "@internal: vcpu_enter_guest",
  "Vcpu#serviceRequests": "private",
  "Vcpu#dataAccess": "private (read/write/fetch are the entries)",
  "Vcpu#stage2Final": "@internal",
  "Vcpu#dataSize": "private",
  "Vcpu#translateGva": "hot path on pre-split gva halves (benchmarks); access() is the entry",
  "Vcpu#walkGva": "@internal",
  "Vcpu#shadowWalk": "private",
  "Vcpu#emulate": "private",
  "Vcpu#trackEmulatedWrite": "private",
  "Vcpu#ringFull": "private",
  "Vcpu#gpFault": "@internal",
  "Vcpu#pageFault": "@internal",
  "Vcpu#finish": "@internal",
  // Views: no parameters, or private
  "GuestPageTableBuilder#tablesAllocated": "getter",
  "GuestPageTableBuilder#allocTable": "private",
  "GuestPageTableBuilder#readEntry": "private",
  "GuestPageTableBuilder#writeEntry": "private",
  "GuestPageTableBuilder#isLargeLeaf": "private",
  "GuestPageTableBuilder#entryGpaIn": "private",
  "GuestPageTableBuilder#parseGva": "private",
  "GuestPageTableBuilder#tableFor": "private",
  "GuestPageTableBuilder#countMissingTables": "private",
  "FaultHeatmap#[Jupyter.display]": "no parameters",
  "PagetableView#[Jupyter.display]": "no parameters",
  "PresetTable#[Jupyter.display]": "no parameters",
  "Memstress#pass": "no parameters (passRows is in the table)",
  "WalkResult#[Jupyter.display]": "no parameters",
  "KvmDirtyRing#push": "kvm_dirty_ring_push, called by mark_page_dirty_in_slot",
  "KvmDirtyRing#reset": "kvm_dirty_ring_reset, called by vm.resetDirtyRings() (in the table)",
};

/** Every own member of the prototype chain below Object: `Class#member`, and how it is defined. */
function membersOf(
  name: string,
  cls: { prototype: object },
): { id: string; getter: boolean; parameterless: boolean }[] {
  const out = new Map<string, { id: string; getter: boolean; parameterless: boolean }>();
  for (let p = cls.prototype; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p))
    for (const k of Reflect.ownKeys(p)) {
      if (k === "constructor") continue;
      const id = `${name}#${typeof k === "symbol" ? `[${k.description}]` : k}`;
      if (out.has(id)) continue;
      const d = Object.getOwnPropertyDescriptor(p, k)!;
      const src = typeof d.value === "function" ? Function.prototype.toString.call(d.value) : "";
      // No parameters at all (not even defaulted ones): nothing to pass a bad value to.
      out.set(id, { id, getter: d.get !== undefined, parameterless: /^[^(]*\(\s*\)/.test(src) });
    }
  return [...out.values()];
}

describe("the table covers the curated API", () => {
  const inTable = new Set(ENTRIES.map((e) => e.name));
  it("every function and class exported by src/index.ts is an entry, a view class or data", () => {
    const missing = Object.entries(api)
      .filter(([n, v]) => !DATA_EXPORTS(n, v))
      .map(([n]) => n)
      .filter((n) => !inTable.has(n) && !(n in VIEW_CLASSES));
    expect(missing).toEqual([]);
  });
  it("every public method of Vm, Vcpu and the exported classes is an entry or a reasoned exclusion", () => {
    const missing: string[] = [];
    for (const [n, v] of Object.entries(api)) {
      if (typeof v !== "function" || DATA_EXPORTS(n, v) || !/^[A-Z]/.test(n)) continue;
      for (const m of membersOf(n, v as { prototype: object })) {
        if (inTable.has(m.id) || m.id in NOT_ENTRY_POINTS || m.getter) continue;
        // A view's parameterless methods (toString, toJSON, payload(), its display) take no
        // argument to fuzz; Vm's and Vcpu's are all listed.
        if (m.parameterless && n !== "Vm" && n !== "Vcpu") continue;
        missing.push(m.id);
      }
    }
    expect(missing).toEqual([]);
  });
  it("the exclusions name real members (a renamed method cannot hide in the list)", () => {
    const all = new Set(
      Object.entries(api)
        .filter(([n, v]) => typeof v === "function" && /^[A-Z]/.test(n))
        .flatMap(([n, v]) => membersOf(n, v as { prototype: object }).map((m) => m.id)),
    );
    expect(Object.keys(NOT_ENTRY_POINTS).filter((m) => !all.has(m))).toEqual([]);
  });
});

describe("the full-state snapshot sees every part of the VM", () => {
  // Each change is one a buggy entry point could make before throwing; each must show.
  const changes: [string, Mode, (w: World) => void][] = [
    ["a dirty bit (GET_DIRTY_LOG clears it)", "tdp", (w) => w.vm.getDirtyLog(LOGGED_SLOT)],
    ["guest memory, one word", "tdp", (w) => w.vm.guestWrite32(0x800, 1)],
    ["an spte (one zapped leaf)", "tdp", (w) => w.vm.zapSpte(LOGGED_GPA / 4096)],
    ["the shadow pages (all zapped)", "shadow-4level", (w) => w.vm.zapAllFast()],
    ["a register (CPL)", "shadow-32bit", (w) => w.vcpu.setCpl(3)],
    ["PKRU", "tdp", (w) => w.vcpu.setPkru(4)],
    ["n_max_mmu_pages", "preset-v2.6.23", (w) => w.vm.setNrMmuPages(100)],
    ["the dirty ring (harvested)", "tdp-ring", (w) => w.vcpu.dirtyRing!.harvest()],
    ["the trace ring (stopped)", "tdp", (w) => w.vm.stopTrace()],
    [
      "a memslot's flags",
      "tdp",
      (w) =>
        w.vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 16 * MiB, flags: 1 }),
    ],
    ["the builder's pool", "tdp", (w) => w.b.ensureTables(0x40000000, 1)],
  ];
  for (const [what, mode, change] of changes)
    it(`${what} [${mode}]`, () => {
      const w = buildWorld(mode);
      const before = stateOf(w);
      change(w);
      expect(stateDiff(before, stateOf(w, false)).length).toBeGreaterThan(0);
    });
  it("read-only calls leave it equal (the caches they fill are not state)", () => {
    const w = buildWorld("shadow-4level");
    const before = stateOf(w);
    w.vm.readPhys64(LOGGED_GPA);
    w.vm.readPhys32(0x100000);
    w.vm.audit();
    w.b.getEntry(DATA_GVA, 1);
    expect(stateDiff(before, stateOf(w, false))).toEqual([]);
  });
});
