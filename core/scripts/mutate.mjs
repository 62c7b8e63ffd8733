#!/usr/bin/env node
// `npm run mutate`: StrykerJS mutation testing (stryker.config.mjs) of the MMU's hot, subtle
// modules, one Stryker run per module (smallest first), each with its own JSON/HTML report and
// incremental file under test-artifacts/mutate/<module>/, then one line per module:
// killed / survived / no coverage / timeout and the mutation score.
//
//   npm run mutate                         every module below
//   npm run mutate -- --files spte,tdp_mmu  some of them (names below, or paths as Stryker takes
//                                          them: src/mmu/spte.ts or src/mmu/spte.ts:10-40; a
//                                          path to a module's file runs that module's tests,
//                                          a range reports to <module>_<from>-<to>/)
//   MUTATE_FILES=spte npm run mutate        the same through the environment
//   npm run mutate -- --sample             CI's sample: the lines of these modules changed since
//                                          the merge base with main (MUTATE_BASE, default
//                                          origin/main, else main); with none changed, a fixed
//                                          seeded set of 6-line windows (SAMPLE_SEED, default 1;
//                                          SAMPLE_WINDOWS per module, default 1); one Stryker run
//                                          with the union of the modules' test files
//   --sample --modules a,b                 the sample of those modules only
//   --force                                ignore the incremental results (re-test every mutant)
//   --concurrency N                        Stryker's worker count (default 1: 2-core machines)
//
// Exits 1 if a module's score is under its break threshold (--break N, default none) or Stryker
// failed. core's `npm test` runs the --sample of the modules at >= 85 % after the unit tests (about 60-100 s on a 2-core
// machine), reporting its score without a threshold.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { xorshift32 } from "./access-space-lib.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const core = path.resolve(here, "..");
const repo = path.resolve(core, "..");
const out = path.join(repo, "test-artifacts", "mutate");

/**
 * The modules, smallest first. kvm_main.ts is only its dirty-log section (mark_page_dirty,
 * KVM_ENABLE_CAP, the dirty ring and the GET/CLEAR_DIRTY_LOG ioctls; the rest of it is the
 * memslot ioctl and host accesses); tdp_mmu_dirty_log is tdp_mmu.ts's write-protect and
 * clear-dirty walks (a part of tdp_mmu, which mutates the whole file). Line ranges are found
 * from markers in the source so they follow edits.
 */
function modules() {
  /** `file`'s lines from the one holding `from` up to the one before the line holding `to`. */
  const section = (file, from, to) => {
    const lines = readFileSync(path.join(core, file), "utf8").split("\n");
    const a = lines.findIndex((l) => l.includes(from)) + 1;
    const b = lines.findIndex((l, i) => i >= a && l.includes(to));
    if (a <= 0 || b < a) throw new Error(`${file}: section markers ${from} / ${to} moved`);
    return `${file}:${a}-${b}`;
  };
  // Each module with the unit test files that exercise it (the tests Stryker runs per mutant).
  const t = (...names) => names.map((n) => `test/${n}.test.ts`);
  const gaps = "mutation-gaps";
  return {
    page_track: {
      mutate: ["src/mmu/page_track.ts"],
      tests: t(
        "page-track",
        "shadow-paging",
        "rmap-walk",
        "property-findings",
        "property/regressions",
        gaps,
      ),
    },
    dirty_ring: { mutate: ["src/kvm/dirty_ring.ts"], tests: t("dirty-ring") },
    tdp_iter: {
      mutate: ["src/mmu/tdp_iter.ts"],
      tests: t("tdp-iter", gaps),
    },
    kvm_main_dirty_log: {
      mutate: [section("src/kvm/kvm_main.ts", "// ---- dirty logging", "// ---- MMU notifier")],
      // memory-budget.test.ts also covers the CLEAR budget check, but its child-process test
      // rebuilds the package and cannot run in Stryker's sandbox (test/mutation/equivalent.md).
      tests: t("kvm-dirty-log", "dirty-log-fidelity", "kvm-main-mutants", gaps),
    },
    spte: {
      mutate: ["src/mmu/spte.ts"],
      tests: t("spte", "ept-ad", "s8-possible-writable", gaps),
    },
    tdp_mmu_dirty_log: {
      mutate: [
        section(
          "src/mmu/tdp_mmu.ts",
          "`wrprot_gfn_range` over every valid root",
          "`zap_collapsible_spte_range`",
        ),
      ],
      tests: t("tdp-mmu-dirty-log", "dirty-log-fidelity", gaps),
    },
    tdp_mmu: {
      mutate: ["src/mmu/tdp_mmu.ts"],
      tests: t(
        "tdp-zap",
        "tdp-hugepage",
        "tdp-dirty-log",
        "tdp-introspect",
        "s1-fault-in",
        "tdp-mmu-mutants",
        "mmu-trace",
        "mmu-notifier-age",
        gaps,
      ),
    },
    paging_tmpl: {
      mutate: ["src/mmu/paging_tmpl.ts"],
      // The walker's directed tests, then FNAME(page_fault/fetch/pte_prefetch/sync_spte)'s: the
      // shadow MMU's tests (unsync and sync, the legacy prefetch switches, the walker's
      // tracepoints) and the property suite (MMU_PROPERTY_OPS from vitest.stryker.config.mts), whose
      // oracle is the bare walker machine.
      tests: t(
        "walker-directed",
        "walker-s5",
        "walker-seed2007",
        "walker-mutants",
        "access-directed",
        "data-access",
        "shadow-paging",
        "shadow-coherence",
        "shadow-cr0-wp-smap",
        "s1-legacy",
        "s8-possible-writable",
        "fidelity",
        "era-switches",
        "mmu-trace",
        "rmap-walk",
        "shadow-fetch-mutants",
        "property-findings",
        "property/regressions",
        "property/mmu-property",
        gaps,
      ),
    },
    mmu: {
      mutate: ["src/mmu/mmu.ts"],
      tests: t(
        "shadow-paging",
        "rmap-walk",
        "rmap-pte-list",
        "s8-possible-writable",
        "tdp-hugepage",
        "dirty-log-fidelity",
        "property-findings",
        "property/regressions",
        "property/mmu-property",
        "shadow-coherence",
        "shadow-cr0-wp-smap",
        "shadow-fetch-mutants",
        "mmu-mutants",
        "mmu-trace",
        "era-switches",
        "s1-legacy",
        "mmu-notifier-age",
        "tdp-zap",
        "fidelity",
        "shadow-mmu-mutants",
        "dirty-log-modes",
        "tdp-dirty-log",
        "tdp-mmu-mutants",
        gaps,
      ),
    },
  };
}

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name) => process.argv.includes(`--${name}`);

/** Lines of `file` changed since the merge base with `base`, as Stryker ranges, or []. */
function changedRanges(file, base) {
  const mb = spawnSync("git", ["merge-base", base, "HEAD"], { cwd: repo, encoding: "utf8" });
  if (mb.status !== 0) return [];
  const d = spawnSync("git", ["diff", "-U0", mb.stdout.trim(), "--", `core/${file}`], {
    cwd: repo,
    encoding: "utf8",
  });
  const ranges = [];
  for (const m of d.stdout.matchAll(/^@@ -\S+ \+(\d+)(?:,(\d+))? @@/gm)) {
    const start = Number(m[1]);
    const n = m[2] === undefined ? 1 : Number(m[2]);
    if (n > 0) ranges.push(`${file}:${start}-${start + n - 1}`);
  }
  return ranges;
}

/**
 * CI's sample: what changed since the merge base, else `windows` fixed 6-line windows per module
 * drawn with the tests' xorshift32(seed) (the same windows on every run while the files keep their length).
 */
function sample(mods, seed, windows) {
  const bases = [process.env.MUTATE_BASE, "origin/main", "main"].filter(Boolean);
  const base = bases.find(
    (b) => spawnSync("git", ["rev-parse", "--verify", "-q", b], { cwd: repo }).status === 0,
  );
  const picked = {};
  for (const [name, { mutate: specs }] of Object.entries(mods)) {
    const file = specs[0].split(":")[0];
    const restrict = specs[0].includes(":") ? specs[0].split(":")[1].split("-").map(Number) : null;
    const ranges = base ? changedRanges(file, base) : [];
    const inside = ranges.filter((r) => {
      if (!restrict) return true;
      const [a, b] = r.split(":")[1].split("-").map(Number);
      return b >= restrict[0] && a <= restrict[1];
    });
    if (inside.length > 0) picked[name] = { mutate: inside, tests: mods[name].tests };
  }
  if (Object.keys(picked).length > 0) return { picked, how: `lines changed since ${base}` };
  const rnd = xorshift32(seed);
  for (const [name, { mutate: specs, tests }] of Object.entries(mods)) {
    const [file, range] = specs[0].split(":");
    const n = readFileSync(path.join(core, file), "utf8").split("\n").length;
    const [lo, hi] = range ? range.split("-").map(Number) : [1, n];
    picked[name] = { mutate: [], tests };
    for (let k = 0; k < windows; k++) {
      const start = lo + (rnd() % Math.max(1, hi - lo - 5));
      picked[name].mutate.push(`${file}:${start}-${start + 5}`);
    }
  }
  return { picked, how: `fixed sample (seed ${seed}, ${windows} windows of 6 lines per module)` };
}

function summarize(name, json) {
  const r = JSON.parse(readFileSync(json, "utf8"));
  const c = { Killed: 0, Survived: 0, NoCoverage: 0, Timeout: 0, CompileError: 0, Ignored: 0 };
  const survivors = [];
  for (const [file, f] of Object.entries(r.files)) {
    for (const m of f.mutants) {
      c[m.status] = (c[m.status] ?? 0) + 1;
      if (m.status === "Survived" || m.status === "NoCoverage")
        survivors.push(
          `  ${m.status === "Survived" ? "survived" : "no cover"} ${file}:${m.location.start.line} ${m.mutatorName}: ${JSON.stringify(m.replacement ?? "")}`,
        );
    }
  }
  const detected = c.Killed + c.Timeout;
  const valid = detected + c.Survived + c.NoCoverage;
  const score = valid === 0 ? 100 : (100 * detected) / valid;
  return { name, ...c, valid, score, survivors };
}

const all = modules();
let selected;
const files = arg("files") ?? process.env.MUTATE_FILES;
if (flag("sample")) {
  // --modules restricts the sample (npm test samples the modules already brought to >= 85 %,
  // whose unit tests are fast; the walker's and mmu.ts's lists are the slow integration tests).
  const only = arg("modules")
    ?.split(",")
    .filter((x) => x !== "");
  for (const m of only ?? [])
    if (!all[m]) {
      console.error(
        `[mutate] --modules: ${JSON.stringify(m)} is not one of ${Object.keys(all).join(", ")}`,
      );
      process.exit(2);
    }
  const pool = only ? Object.fromEntries(only.map((m) => [m, all[m]])) : all;
  const s = sample(
    pool,
    Number(process.env.SAMPLE_SEED ?? 1),
    Number(process.env.SAMPLE_WINDOWS ?? 1),
  );
  console.log(`[mutate] sample: ${s.how}`);
  // One Stryker run for the whole sample (one dry run instead of one per module).
  const picked = Object.values(s.picked);
  selected = {
    sample: {
      mutate: [...new Set(picked.flatMap((p) => p.mutate))],
      tests: [...new Set(picked.flatMap((p) => p.tests))],
    },
  };
} else if (files) {
  selected = {};
  for (const f of files.split(",").filter((x) => x !== "")) {
    if (all[f]) selected[f] = all[f];
    else if (existsSync(path.join(core, f.split(":")[0]))) {
      // A part of a module's file (src/mmu/tdp_mmu.ts:148-252) runs that module's tests, not
      // the whole fast suite; its report goes to <basename>_<from>-<to>/ so chunks do not
      // overwrite each other.
      const [file, range] = f.split(":");
      const owner = Object.values(all).find((m) => m.mutate.length === 1 && m.mutate[0] === file);
      const base = path.basename(file, ".ts");
      selected[range ? `${base}_${range}` : base] = { mutate: [f], tests: owner?.tests ?? null };
    } else {
      console.error(
        `[mutate] --files: ${JSON.stringify(f)} is neither a module (${Object.keys(all).join(", ")}) nor a file under core/`,
      );
      process.exit(2);
    }
  }
} else selected = all;

const concurrency = arg("concurrency") ?? "1";
const breakAt = arg("break") === undefined ? null : Number(arg("break"));
const stryker = path.join(repo, "node_modules", ".bin", "stryker");
const results = [];
let failed = false;
for (const [name, { mutate: specs, tests }] of Object.entries(selected)) {
  const dir = path.join(out, name);
  mkdirSync(dir, { recursive: true });
  const t0 = Date.now();
  const args = [
    "run",
    "stryker.config.mjs",
    "--mutate",
    specs.join(","),
    "--concurrency",
    concurrency,
  ];
  if (!flag("sample")) args.push("--incremental");
  if (flag("force")) args.push("--force");
  console.log(`\n[mutate] ${name}: ${specs.join(", ")}`);
  const r = spawnSync(stryker, args, {
    cwd: core,
    stdio: "inherit",
    env: { ...process.env, MUTATE_REPORT_DIR: dir, MUTATE_TESTS: tests?.join(",") ?? "" },
  });
  const s = (Date.now() - t0) / 1000;
  if (r.status !== 0 || !existsSync(path.join(dir, "mutation.json"))) {
    console.error(`[mutate] ${name}: stryker exited ${r.status}`);
    failed = true;
    continue;
  }
  results.push({ ...summarize(name, path.join(dir, "mutation.json")), s });
}

console.log("\n[mutate] module              killed timeout survived nocover  score  time");
for (const r of results) {
  console.log(
    `[mutate] ${r.name.padEnd(20)} ${String(r.Killed).padStart(6)} ${String(r.Timeout).padStart(7)} ${String(r.Survived).padStart(8)} ${String(r.NoCoverage).padStart(7)} ${r.score.toFixed(1).padStart(5)}% ${r.s.toFixed(0).padStart(4)}s`,
  );
  if (breakAt !== null && r.score < breakAt) failed = true;
}
for (const r of results)
  if (r.survivors.length > 0)
    console.log(`[mutate] ${r.name} survivors:\n${r.survivors.join("\n")}`);
process.exit(failed ? 1 : 0);
