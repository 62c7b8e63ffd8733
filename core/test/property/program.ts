/**
 * Programs for the MMU property suite: fast-check arbitraries of the world's commands
 * (world.ts), a program arbitrary of exactly N commands that shrinks, one seed's run, and the
 * printer that turns a shrunk failure into a vitest test ready to paste.
 *
 * The model-based part: every command runs on the system under test and, when the guest can see
 * it, on the model — the bare walker machine plus the dirty-log bookkeeping of world.ts — and the
 * checks after each command compare the two. fast-check generates the command lists and shrinks
 * a failing one (fewer commands, simpler fields); commands are data, so a list prints as code.
 */
import fc, { Arbitrary, type Random, Stream, Value } from "fast-check";
import {
  type Cmd,
  type CrBit,
  configForSeed,
  configName,
  type PropConfig,
  type RunStats,
  Violation,
  World,
} from "./world";

// ---- arbitraries --------------------------------------------------------------------------------

const nat = (max: number) => fc.integer({ min: 0, max });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bool = fc.boolean();
/** `a` three times out of four. */
const mostly = <A, B>(a: A, b: B) =>
  fc.oneof({ weight: 3, arbitrary: fc.constant(a) }, { weight: 1, arbitrary: fc.constant(b) });
/**
 * Test page numbers: 0..3 three times out of four, so that edits, accesses and INVLPGs meet the
 * same few entries often (a stale translation shows only to an access after the edit).
 */
const testPage = fc.oneof({ weight: 3, arbitrary: nat(3) }, { weight: 1, arbitrary: nat(15) });
/** Test pds: the two 4 KiB-page pds and the large page (0..2) three times out of four. */
const testPd = fc.oneof({ weight: 3, arbitrary: nat(2) }, { weight: 1, arbitrary: nat(5) });

function access(op: "access" | "read" | "write" | "fetch") {
  return fc.record({
    op: fc.constant(op),
    vcpu: nat(1),
    region: fc.oneof(
      { weight: 6, arbitrary: fc.constant("test" as const) },
      { weight: 2, arbitrary: fc.constant("ident" as const) },
      { weight: 2, arbitrary: fc.constant("wide" as const) },
    ),
    pd: testPd,
    page: testPage,
    off: nat(7),
    size: fc.constantFrom(8 as const, 4 as const, 2 as const, 1 as const),
    user: bool,
    kind: fc.constantFrom(0 as const, 1 as const, 2 as const),
    value: u32,
  });
}

/** The rights and bits of an edited entry (PTE or PDE). */
const entryBits = {
  rw: mostly(true, false),
  us: mostly(true, false),
  a: bool,
  d: bool,
  nx: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, fc.constant(true)),
  rsvd: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, fc.constant(true)),
};

const pte = fc.record({
  op: fc.constant("pte" as const),
  pd: testPd,
  page: testPage,
  frame: nat(127),
  p: mostly(true, false),
  ...entryBits,
  age: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, fc.constant(true)),
  inval: mostly("invlpg" as const, "cr3" as const),
});

const pde = fc.record({
  op: fc.constant("pde" as const),
  pd: nat(3),
  kind: fc.constantFrom("table" as const, "large" as const, "none" as const),
  target: nat(3),
  ...entryBits,
});

const BITS: CrBit[] = ["wp", "smep", "smap", "pg", "ac", "cpl"];
const SLOT_ACTIONS = ["delete", "create", "createRo", "createLog", "move"] as const;

/**
 * The command arbitrary of a configuration: only the dirty-log commands of its mode. Weights (of
 * about 190): guest accesses 90, page-table edits 32, register loads and INVLPG 14, dirty log
 * 9-12; the commands that throw state away (zaps, notifier, memslot and flag changes, MMU page
 * limits) stay rare, so that stale state lives long enough to be seen.
 */
export function commandArbitrary(cfg: PropConfig): Arbitrary<Cmd> {
  const ring = cfg.dirty === "ring";
  const manual = cfg.dirty === "manual" || cfg.dirty === "initially-set";
  const w = (weight: number, arbitrary: Arbitrary<Cmd>) => ({ weight, arbitrary });
  const op = <T extends string>(name: T) => fc.constant(name);
  const arbs = [
    w(24, access("read")),
    w(24, access("write")),
    w(10, access("fetch")),
    w(32, access("access")),
    w(28, pte),
    w(4, pde),
    w(4, fc.record({ op: op("cr"), vcpu: nat(1), bit: fc.constantFrom(...BITS) })),
    w(6, fc.record({ op: op("cr3"), vcpu: nat(1), root: nat(1) })),
    w(4, fc.record({ op: op("invlpg"), vcpu: nat(1), pd: testPd, page: testPage })),
    w(1, fc.record({ op: op("slot"), action: fc.constantFrom(...SLOT_ACTIONS) })),
    w(3, fc.record({ op: op("log"), slot: nat(2), on: mostly(true, false) })),
    w(2, fc.record({ op: op("pause"), vcpu: nat(1) })),
    w(1, fc.record({ op: op("zapAll") })),
    w(3, fc.record({ op: op("zap"), frame: nat(127), n: nat(63), one: bool })),
    w(2, fc.record({ op: op("notifier"), slot: nat(2), page: nat(1023), n: nat(600) })),
    w(2, fc.record({ op: op("age"), slot: nat(2), page: nat(1023), n: nat(600), kind: nat(2) })),
    w(1, fc.record({ op: op("nrPages"), n: fc.integer({ min: 64, max: 160 }) })),
  ];
  if (ring) arbs.push(w(8, fc.record({ op: op("harvest"), reset: mostly(true, false) })));
  else arbs.push(w(6, fc.record({ op: op("get"), slot: nat(2) })));
  if (manual) {
    const clear = fc.record({
      op: op("clear"),
      slot: nat(2),
      first: nat(7),
      chunks: nat(7),
      pattern: nat(3),
      value: u32,
    });
    arbs.push(w(3, clear));
  }
  if (cfg.preset === "rfc-fast-wp") arbs.push(w(2, fc.record({ op: op("wpAll"), fast: bool })));
  return fc.oneof(...arbs);
}

/** The context fast-check's array arbitrary keeps with a value (only what we rebuild). */
interface ArrayContext {
  itemsContexts?: unknown[];
}

/**
 * Exactly `n` commands when generated (the run length the suite promises), shrunk as fast-check
 * shrinks any array (shorter lists, simpler commands) — except that when a run broke at command
 * k, the first candidate is the list cut after k: what follows the failure cannot matter, and
 * fast-check's own length shrinking drops commands from the front.
 */
class ProgramArbitrary extends Arbitrary<Cmd[]> {
  private readonly fixed: Arbitrary<Cmd[]>;
  private readonly free: Arbitrary<Cmd[]>;

  constructor(
    cmd: Arbitrary<Cmd>,
    n: number,
    /** The index of the failing command of each program that failed (by identity). */
    private readonly failedAt: WeakMap<object, number>,
    /** Commands the shrinker may still run: at 0 it offers no more candidates. */
    private readonly budget: { left: number },
  ) {
    super();
    this.fixed = fc.array(cmd, { minLength: n, maxLength: n });
    this.free = fc.array(cmd, { maxLength: n });
  }

  generate(mrng: Random, biasFactor: number | undefined): Value<Cmd[]> {
    return this.fixed.generate(mrng, biasFactor);
  }

  canShrinkWithoutContext(value: unknown): value is Cmd[] {
    return this.free.canShrinkWithoutContext(value);
  }

  shrink(value: Cmd[], context: unknown): Stream<Value<Cmd[]>> {
    // The budget ends the stream itself: candidates that merely passed would still have to be
    // enumerated, and an array's shrinks grow with the square of its length.
    const budget = this.budget;
    const within = () => budget.left > 0;
    const items = (context as ArrayContext | undefined)?.itemsContexts ?? [];
    const at = this.failedAt.get(value);
    if (at !== undefined && at < value.length - 1) {
      const cut = this.value(value.slice(0, at + 1), items.slice(0, at + 1));
      return Stream.of(cut).join(this.free.shrink(value, context)).takeWhile(within);
    }
    return new Stream(this.chunkRemovals(value, items))
      .join(this.free.shrink(value, context))
      .takeWhile(within);
  }

  /** A program with its items' fast-check contexts (so that they shrink further). */
  private value(cmds: Cmd[], itemsContexts: unknown[]): Value<Cmd[]> {
    return new Value(cmds, {
      shrunkOnce: false,
      lengthContext: undefined,
      itemsContexts,
      startIndex: 0,
    });
  }

  /**
   * The program without one run of commands before the failing last one: halves first, then
   * quarters, and so on down to single commands (delta debugging's complement step). fast-check
   * alone drops commands only from the front or one at a time, which for a failure deep in a
   * long program costs a full run per command.
   */
  private *chunkRemovals(value: Cmd[], items: unknown[]): IterableIterator<Value<Cmd[]>> {
    const n = value.length - 1;
    for (let size = n >> 1; size >= 1; size >>= 1) {
      for (let start = 0; start + size <= n; start += size) {
        const keep = (a: readonly unknown[]) => [...a.slice(0, start), ...a.slice(start + size)];
        yield this.value(keep(value) as Cmd[], keep(items));
      }
    }
  }
}

// ---- running ------------------------------------------------------------------------------------

/** Run one program from scratch: a fresh world, every command, the final memory comparison. */
export function runProgram(cfg: PropConfig, cmds: readonly Cmd[], world?: World): RunStats {
  const w = world ?? new World(cfg);
  const stats = w.run(cmds);
  w.finish();
  return stats;
}

/**
 * Replay a printed failure (the tests the suite prints call this): throws the violation while the
 * bug is there.
 */
export function replay(cfg: PropConfig, cmds: readonly Cmd[]): void {
  runProgram(cfg, cmds);
}

/** Options of {@link runSeed}. */
export interface SeedOptions {
  /** Commands in the generated program (default 10,000). */
  ops?: number;
  /**
   * Commands the shrinker may run in all, over every candidate it tries (default 500,000, a
   * few minutes at most): a deterministic budget, so a seed shrinks to the same list on any
   * machine.
   */
  shrinkBudget?: number;
  /** Told of the generated program's violation before shrinking starts. */
  onFailure?: (message: string) => void;
  /** Progress of the generated program's run (the soak's). */
  onProgress?: (done: number) => void;
  progressEvery?: number;
  /** The configuration (default: {@link configForSeed}). */
  config?: PropConfig;
}

/** What one seed did. */
export type SeedResult =
  | { ok: true; seed: number; config: PropConfig; stats: RunStats }
  | {
      ok: false;
      seed: number;
      config: PropConfig;
      /** The violation of the shrunk program. */
      message: string;
      /** Commands of the generated program, and of the shrunk one. */
      generated: number;
      shrunk: Cmd[];
      /** The shrunk program as a vitest test. */
      test: string;
    };

/**
 * One seed: fast-check generates a program of `ops` commands from the seed, runs it on the
 * seed's world (a violation stops the run) and, on a failure, shrinks it.
 */
export function runSeed(seed: number, opts: SeedOptions = {}): SeedResult {
  const n = opts.ops ?? 10_000;
  const config = opts.config ?? configForSeed(seed);
  const failedAt = new WeakMap<object, number>();
  const budget = { left: opts.shrinkBudget ?? 500_000 };
  let first = true;
  let generated = n;
  let stats: RunStats | undefined;
  const property = fc.property(
    new ProgramArbitrary(commandArbitrary(config), n, failedAt, budget),
    (cmds) => {
      const isFirst = first;
      first = false;
      if (isFirst) generated = cmds.length;
      else budget.left -= cmds.length;
      try {
        const w = new World(config);
        const s = w.run(cmds, {
          onProgress: isFirst ? opts.onProgress : undefined,
          progressEvery: opts.progressEvery,
        });
        w.finish();
        if (isFirst) stats = s;
        return true;
      } catch (e) {
        if (e instanceof Violation) failedAt.set(cmds, e.index);
        if (isFirst) opts.onFailure?.((e as Error).message);
        throw e;
      }
    },
  );
  const details = fc.check(property, { seed, numRuns: 1, verbose: 0 });
  if (!details.failed) return { ok: true, seed, config, stats: stats! };
  const shrunk = details.counterexample?.[0] ?? [];
  const err = details.errorInstance;
  const message = err instanceof Error ? err.message : String(err);
  return {
    ok: false,
    seed,
    config,
    message,
    generated,
    shrunk,
    test: printTest(seed, config, shrunk, message),
  };
}

/** A failure as a vitest test to paste into core/test/property/ (it calls {@link replay}). */
export function printTest(
  seed: number,
  cfg: PropConfig,
  cmds: readonly Cmd[],
  msg: string,
): string {
  const title = `property seed ${seed} (${configName(cfg)}): ${msg.split("\n")[0]!.slice(0, 120)}`;
  const lines = cmds.map((c) => `    ${JSON.stringify(c)},`);
  return [
    'import { it } from "vitest";',
    'import { replay } from "./program";',
    "",
    `it(${JSON.stringify(title)}, () => {`,
    "  replay(",
    `    ${JSON.stringify(cfg)},`,
    "    [",
    ...lines.map((l) => `  ${l}`),
    "    ],",
    "  );",
    "});",
  ].join("\n");
}

/** A failed seed as the report the suite and the soak print. */
export function failureReport(r: Extract<SeedResult, { ok: false }>): string {
  return [
    `MMU property violated — seed ${r.seed} (${configName(r.config)})`,
    `generated ${r.generated} commands, shrunk to ${r.shrunk.length}`,
    r.message,
    "",
    "Ready-to-paste test (core/test/property/):",
    r.test,
  ].join("\n");
}
