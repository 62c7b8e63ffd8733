/**
 * The page-walk classroom lab (notebooks/01-page-walk-lab.ipynb): a fixed lab machine, its
 * exercises, and `check(id, answer)`, which grades an answer by running the simulator on a fresh
 * copy of the lab machine and explains in plain words what is right or wrong.
 */
import {
  createVm,
  GuestPageTableBuilder,
  htmlTableBundle,
  type Vcpu,
  type Vm,
  type WalkResult,
  X86_CR4_SMAP,
  X86_CR4_SMEP,
} from "@mmulab/core";
import {
  asInt,
  type CheckResult,
  type Displayable,
  displayable,
  type Exercise,
  exerciseTable,
  gradeExercise,
} from "./check";
import { describeErrorCode, hex } from "./words";

export { CheckResult, type Displayable } from "./check";

const MiB = 2 ** 20;

/** The regions of the lab machine: every exercise refers to these addresses. */
export const REGIONS = {
  userRo: { gva: 0x400000, gpa: 0x2000000, what: "user page, read-only" },
  userRw: { gva: 0x401000, gpa: 0x2001000, what: "user page, read/write" },
  userNx: { gva: 0x402000, gpa: 0x2002000, what: "user page, read/write, execute-disable (XD)" },
  userKey5: { gva: 0x403000, gpa: 0x2003000, what: "user page, read/write, protection key 5" },
  hole: { gva: 0x404000, gpa: null, what: "nothing: its PT entry is not present" },
  kernelRw: { gva: 0x600000, gpa: 0x2010000, what: "supervisor page, read/write" },
  kernelRo: { gva: 0x601000, gpa: 0x2011000, what: "supervisor page, read-only" },
  huge: { gva: 0x800000, gpa: 0x2400000, what: "user 2 MiB page, read/write" },
} as const;

/** The lab machine: a 64 MiB guest with 4-level paging, CR0.WP, EFER.NXE, SMEP, SMAP and PKE on. */
export interface LabMachine {
  vm: Vm;
  vcpu: Vcpu;
  tables: GuestPageTableBuilder;
}

/** Options for {@link createLab}: the registers an exercise may vary. */
export interface LabOptions {
  /** CR0.WP (default true). */
  wp?: boolean;
  /** PKRU (default 0: every key may read and write). */
  pkru?: number;
}

/** Builds a fresh lab machine. */
export function createLab(opts: LabOptions = {}): LabMachine {
  const vm = createVm({ features: { smep: true, smap: true, pku: true, nx: true } });
  vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0, memorySize: 64 * MiB, flags: 0 });
  const tables = new GuestPageTableBuilder(vm, { mode: "4-level", poolBase: MiB, poolSize: MiB });
  const r = REGIONS;
  tables.map(r.userRo.gva, r.userRo.gpa, 4096, { user: true, writable: false });
  tables.map(r.userRw.gva, r.userRw.gpa, 4096, { user: true, writable: true });
  tables.map(r.userNx.gva, r.userNx.gpa, 4096, { user: true, writable: true, nx: true });
  tables.map(r.userKey5.gva, r.userKey5.gpa, 4096, { user: true, writable: true, pkey: 5 });
  tables.map(r.kernelRw.gva, r.kernelRw.gpa, 4096, { user: false, writable: true });
  tables.map(r.kernelRo.gva, r.kernelRo.gpa, 4096, { user: false, writable: false });
  tables.map(r.huge.gva, r.huge.gpa, 2 * MiB, { user: true, writable: true, pageSize: 2 * MiB });
  const vcpu = vm.createVcpu();
  const s = tables.sregs({ wp: opts.wp ?? true, nx: true, pke: true });
  vcpu.setSregs({ ...s, cr4: Number(s.cr4) | X86_CR4_SMEP | X86_CR4_SMAP, cpl: 0 });
  vcpu.setPkru(opts.pkru ?? 0);
  return { vm, vcpu, tables };
}

/** An access as students write it. */
export interface LabAccess {
  gva: number;
  write?: boolean;
  user?: boolean;
  fetch?: boolean;
}

function describeAccess(a: LabAccess): string {
  const kind = a.fetch ? "instruction fetch" : a.write ? "write" : "read";
  return `a ${a.user ? "user-mode" : "supervisor-mode"} ${kind} at ${hex(a.gva)}`;
}

function parseAccess(answer: unknown): LabAccess | string {
  if (answer === null || typeof answer !== "object") {
    return `expected an access object like { gva: 0x400000, user: true, write: true }, got ${String(answer)}`;
  }
  const a = answer as Record<string, unknown>;
  if (typeof a.gva !== "number" || !Number.isInteger(a.gva) || a.gva < 0) {
    return `gva must be a non-negative integer address, got ${String(a.gva)}`;
  }
  for (const k of Object.keys(a)) {
    if (!["gva", "write", "user", "fetch"].includes(k)) {
      return `unknown field "${k}"; an access has gva, write, user, fetch`;
    }
  }
  if (a.write && a.fetch) return "an access is a write or a fetch, not both";
  return { gva: a.gva, write: !!a.write, user: !!a.user, fetch: !!a.fetch };
}

function run(a: LabAccess, opts: LabOptions = {}): WalkResult {
  const lab = createLab(opts);
  return lab.vcpu.walk(a.gva, { write: a.write, user: a.user, fetch: a.fetch });
}

function outcome(w: WalkResult): string {
  if (!w.fault) return `it succeeds (gpa ${hex(w.gpa ?? 0)})`;
  if (w.vector === 13) return "it raises #GP (the address is not canonical)";
  return `it faults with error code ${describeErrorCode(w.errorCode ?? 0)}`;
}

const GVA3 = 0x7f1234567abcn;

/** Exercise letters with what each one means, for multiple choice. */
const EX5_CHOICES: Record<string, { ok: boolean; why: string }> = {
  a: {
    ok: true,
    why: "D (bit 6) only means 'dirty' in the entry that maps the page: the walk sets A in every entry it uses, and D only in the leaf, here the PTE.",
  },
  b: {
    ok: false,
    why: "the PDE's R/W bit is set (the write succeeded), and R/W never stops the CPU from setting A or D anyway.",
  },
  c: {
    ok: false,
    why: "D is set on the first write, together with A, in the leaf entry; a second write would not change the PDE either.",
  },
  d: {
    ok: false,
    why: "CR0.WP only decides whether supervisor writes honour R/W; it has nothing to do with which entries get D.",
  },
};

const EXERCISES: Exercise[] = [
  {
    id: "ex1",
    question: "Make an access fault with error code 0x7.",
    form: "{ gva: number, user?: boolean, write?: boolean, fetch?: boolean }",
    grade(answer) {
      const a = parseAccess(answer);
      if (typeof a === "string") return { ok: false, message: a };
      const w = run(a);
      if (w.fault && w.vector === 14 && w.errorCode === 0x7) {
        return {
          ok: true,
          message: `${describeAccess(a)} faults with 0x7 = P|W|U: the page is present, but a user-mode write is not allowed by the accumulated R/W and U/S bits.`,
        };
      }
      return {
        ok: false,
        message: `${describeAccess(a)}: ${outcome(w)}. 0x7 means P|W|U: a user-mode write to a page that is present but not writable for user mode.`,
      };
    },
  },
  {
    id: "ex2",
    question: `Which error code does a user-mode read of ${hex(REGIONS.hole.gva)} produce?`,
    form: "a number, e.g. 0x5",
    grade(answer) {
      const n = asInt(answer, "an error code");
      if (typeof n === "string") return { ok: false, message: n };
      const w = run({ gva: REGIONS.hole.gva, user: true });
      const want = w.errorCode ?? -1;
      if (n === want) {
        return {
          ok: true,
          message: `${describeErrorCode(n)}: P is clear because the PT entry is not present; U says the access came from user mode.`,
        };
      }
      return {
        ok: false,
        message: `${describeErrorCode(n)} is not what the CPU reports here. The PT entry for ${hex(REGIONS.hole.gva)} has P=0, so P must be clear; the access is a user-mode read, so W and I are clear and U is set.`,
      };
    },
  },
  {
    id: "ex3",
    question: `Split the 4-level gva ${hex(GVA3)} into its indices and page offset.`,
    form: "{ pml4, pdpt, pd, pt, offset }",
    grade(answer) {
      if (answer === null || typeof answer !== "object") {
        return {
          ok: false,
          message: `expected { pml4, pdpt, pd, pt, offset }, got ${String(answer)}`,
        };
      }
      const a = answer as Record<string, unknown>;
      const fields: Array<[string, number, number]> = [
        ["pml4", 39, 9],
        ["pdpt", 30, 9],
        ["pd", 21, 9],
        ["pt", 12, 9],
        ["offset", 0, 12],
      ];
      const wrong: string[] = [];
      for (const [name, lo, width] of fields) {
        const want = Number((GVA3 >> BigInt(lo)) & ((1n << BigInt(width)) - 1n));
        if (a[name] !== want) {
          wrong.push(
            `${name} is bits ${lo + width - 1}..${lo} of the address (${width} bits), not ${String(a[name])}`,
          );
        }
      }
      if (wrong.length === 0) {
        return {
          ok: true,
          message:
            "each level takes the next 9 bits down from bit 47; the last 12 bits are the offset in the 4 KiB page.",
        };
      }
      return { ok: false, message: `${wrong.join("; ")}.` };
    },
  },
  {
    id: "ex4",
    question: `SMEP is on. Which single bit of the leaf PTE of ${hex(REGIONS.userRw.gva)}, when cleared, lets a supervisor instruction fetch from it succeed?`,
    form: "a bit number 0..63",
    grade(answer) {
      const bit = asInt(answer, "a bit number");
      if (typeof bit === "string") return { ok: false, message: bit };
      if (bit < 0 || bit > 63)
        return { ok: false, message: `bit ${bit} is not a bit of a 64-bit PTE (0..63)` };
      const lab = createLab();
      const gva = REGIONS.userRw.gva;
      const pte = lab.tables.getEntry(gva, 1) ?? 0n;
      lab.tables.setEntry(gva, 1, pte & ~(1n << BigInt(bit)));
      const w = lab.vcpu.walk(gva, { fetch: true, user: false });
      if (!w.fault) {
        return {
          ok: true,
          message: `bit ${bit} is U/S: with it clear the page belongs to the supervisor, and SMEP only forbids supervisor fetches from user pages.`,
        };
      }
      const was = (pte >> BigInt(bit)) & 1n ? "set" : "already clear";
      return {
        ok: false,
        message: `with bit ${bit} (${was} before) cleared, the fetch still ${outcome(w).replace(/^it /, "")}. SMEP fires because the page is a user page; find the bit that says so.`,
      };
    },
  },
  {
    id: "ex5",
    question: `After a user-mode write to ${hex(REGIONS.userRw.gva)} on fresh tables, why did the PDE get A but not D?  (a) D only exists in the entry that maps the page  (b) the PDE's R/W bit is clear  (c) D is set on the second write  (d) CR0.WP keeps D out of upper levels`,
    form: 'a letter: "a", "b", "c" or "d"',
    grade(answer) {
      const letter = typeof answer === "string" ? answer.trim().toLowerCase() : "";
      const choice = EX5_CHOICES[letter];
      if (!choice)
        return { ok: false, message: `expected one of "a", "b", "c", "d", got ${String(answer)}` };
      // The premise, from the simulator: the PDE gets A and not D, the PTE gets both.
      const w = run({ gva: REGIONS.userRw.gva, user: true, write: true });
      const pde = w.levels.find((l) => l.level === 2);
      const pte = w.levels.find((l) => l.level === 1);
      if (!pde?.aSet || pde.dSet || !pte?.dSet) {
        return {
          ok: false,
          message:
            "the lab machine no longer shows the premise (PDE: A set, D not): please report this",
        };
      }
      return { ok: choice.ok, message: choice.ok ? choice.why : `not (${letter}): ${choice.why}` };
    },
  },
  {
    id: "ex6",
    question: `Which value of CR0.WP (0 or 1) lets a supervisor write to the read-only supervisor page ${hex(REGIONS.kernelRo.gva)} succeed?`,
    form: "0 or 1",
    grade(answer) {
      const v = asInt(answer, "0 or 1");
      if (typeof v === "string") return { ok: false, message: v };
      if (v !== 0 && v !== 1) return { ok: false, message: `CR0.WP is one bit: 0 or 1, not ${v}` };
      const w = run({ gva: REGIONS.kernelRo.gva, write: true }, { wp: v === 1 });
      if (!w.fault) {
        return {
          ok: true,
          message:
            "with CR0.WP=0 supervisor writes ignore R/W (the 'write protect' of CR0 is off), so the write succeeds.",
        };
      }
      return {
        ok: false,
        message: `with CR0.WP=${v} the supervisor write ${outcome(w).replace(/^it /, "")}: WP=1 makes supervisor writes honour R/W.`,
      };
    },
  },
  {
    id: "ex7",
    question:
      "Make an instruction fetch fault whose error code has the I (instruction fetch) bit set.",
    form: "{ gva: number, user?: boolean, fetch: true }",
    grade(answer) {
      const a = parseAccess(answer);
      if (typeof a === "string") return { ok: false, message: a };
      if (!a.fetch)
        return {
          ok: false,
          message: `${describeAccess(a)} is not an instruction fetch: set fetch: true.`,
        };
      const w = run(a);
      if (w.fault && w.vector === 14 && ((w.errorCode ?? 0) & 0x10) !== 0) {
        return {
          ok: true,
          message: `${describeAccess(a)} faults with ${describeErrorCode(w.errorCode ?? 0)}; I is reported because EFER.NXE (and SMEP) is on.`,
        };
      }
      return {
        ok: false,
        message: `${describeAccess(a)}: ${outcome(w)}. Try a page with XD set, or a supervisor fetch from a user page (SMEP).`,
      };
    },
  },
  {
    id: "ex8",
    question: `The PTE of ${hex(REGIONS.userRo.gva)} gets bit 51 set (MAXPHYADDR is 46). Which error code does a user-mode read produce?`,
    form: "a number",
    grade(answer) {
      const n = asInt(answer, "an error code");
      if (typeof n === "string") return { ok: false, message: n };
      const lab = createLab();
      const gva = REGIONS.userRo.gva;
      lab.tables.setEntry(gva, 1, (lab.tables.getEntry(gva, 1) ?? 0n) | (1n << 51n));
      const w = lab.vcpu.walk(gva, { user: true });
      if (n === w.errorCode) {
        return {
          ok: true,
          message: `${describeErrorCode(n)}: a reserved bit set in a present entry is reported with P and RSVD.`,
        };
      }
      return {
        ok: false,
        message: `${describeErrorCode(n)} is not it. Bit 51 is above MAXPHYADDR, so it is reserved: the entry is present (P) and malformed (RSVD), and the access was a user-mode read.`,
      };
    },
  },
  {
    id: "ex9",
    question: `Choose a PKRU value so that a user-mode read of ${hex(REGIONS.userKey5.gva)} (protection key 5) succeeds but a user-mode write to it faults.`,
    form: "a 32-bit number",
    grade(answer) {
      const pkru = asInt(answer, "a PKRU value");
      if (typeof pkru === "string") return { ok: false, message: pkru };
      if (pkru < 0 || pkru > 0xffffffff)
        return { ok: false, message: `PKRU is 32 bits: 0..0xffffffff, not ${pkru}` };
      const gva = REGIONS.userKey5.gva;
      const r = run({ gva, user: true }, { pkru });
      const w = run({ gva, user: true, write: true }, { pkru });
      if (!r.fault && w.fault && ((w.errorCode ?? 0) & 0x20) !== 0) {
        return {
          ok: true,
          message: `PKRU ${hex(pkru)}: WD5 (bit 11) is set and AD5 (bit 10) clear, so key 5 may be read but not written; the write faults with ${describeErrorCode(w.errorCode ?? 0)}.`,
        };
      }
      return {
        ok: false,
        message: `with PKRU ${hex(pkru)} the read ${outcome(r).replace(/^it /, "")} and the write ${outcome(w).replace(/^it /, "")}. Key k has AD at bit 2k and WD at bit 2k+1.`,
      };
    },
  },
  {
    id: "ex10",
    question: `A first user-mode write to the 2 MiB page at ${hex(REGIONS.huge.gva)} on fresh tables: how many paging-structure entries does the walk read, and how many does it write back (A/D updates)?`,
    form: "{ reads: number, writes: number }",
    grade(answer) {
      if (answer === null || typeof answer !== "object")
        return { ok: false, message: `expected { reads, writes }, got ${String(answer)}` };
      const a = answer as Record<string, unknown>;
      const w = run({ gva: REGIONS.huge.gva, user: true, write: true });
      const reads = w.levels.length;
      const writes = w.levels.filter((l) => l.after !== l.before).length;
      const msgs: string[] = [];
      if (a.reads !== reads)
        msgs.push(
          `reads: a 2 MiB page ends the 4-level walk at the PD (PS=1), so it reads PML4, PDPT and PD, not ${String(a.reads)}`,
        );
      if (a.writes !== writes)
        msgs.push(
          `writes: each entry used gets A, and the leaf gets D in the same write-back, so one write per entry, not ${String(a.writes)}`,
        );
      if (msgs.length === 0)
        return {
          ok: true,
          message: `${reads} reads and ${writes} write-backs: A on PML4E and PDPTE, A and D together on the PDE (the leaf).`,
        };
      return { ok: false, message: `${msgs.join("; ")}.` };
    },
  },
];

/** The exercises: id and question, as a table in the notebook. */
export function exercises(): Displayable {
  return exerciseTable(EXERCISES);
}

/** The lab machine's regions, as a table in the notebook. */
export function regions(): Displayable {
  return displayable(
    htmlTableBundle(
      "The lab machine (4-level paging; CR0.WP, EFER.NXE, CR4.SMEP/SMAP/PKE on; CPL 0 unless user)",
      Object.entries(REGIONS).map(([name, r]) => ({
        name,
        gva: hex(r.gva),
        gpa: r.gpa === null ? "—" : hex(r.gpa),
        what: r.what,
      })),
    ),
  );
}

/**
 * Grades `answer` for exercise `id`. Never throws for a wrong or missing answer: the result says
 * in words what is right or wrong. Throws only for an unknown exercise id.
 */
export function check(id: string, answer: unknown): CheckResult {
  return gradeExercise(EXERCISES, id, answer);
}
