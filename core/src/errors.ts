/**
 * Errors raised by mmulab. Every public entry point validates its input completely before it
 * changes any state, so a thrown error always leaves the simulator as it was.
 */

/** Base class of every error thrown by mmulab. */
export class MmuLabError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A long run stopped because the user asked (a kernel interrupt, an aborted signal): not a fault
 * of the run. One class for the notebook helpers, the sweep pool and the sweep queue, named
 * "Interrupted" as Jupyter names an interrupted cell.
 */
export class InterruptedError extends MmuLabError {
  constructor(message: string) {
    super(message);
    this.name = "Interrupted";
  }
}

/** Longest rendering of an object in an error message. */
const MAX_OBJECT_TEXT = 200;

/**
 * Render a value for an error message: hex for addresses, JSON-ish for plain objects and arrays,
 * and a short name for everything else. A class instance (a VM passed where a number belongs, a
 * typed array) is named by its class and, when it has one, its own one-line `toString()`: its
 * JSON would be megabytes of guest memory.
 */
export function describeValue(value: unknown): string {
  if (typeof value === "bigint")
    return `${value < 0n ? "-" : ""}0x${(value < 0n ? -value : value).toString(16)} (bigint)`;
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 16) return `${value} (0x${value.toString(16)})`;
    return String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "undefined";
  if (typeof value === "symbol") return value.toString();
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (value === null || typeof value !== "object") return String(value);
  if (!isPlain(value)) return instanceText(value);
  let text: string;
  try {
    // Nested class instances (a VM inside an options object) are named, not serialized.
    text =
      JSON.stringify(value, (k, v) =>
        typeof v === "bigint"
          ? `${v}n`
          : k !== "" && v !== null && typeof v === "object" && !isPlain(v)
            ? instanceText(v)
            : v,
      ) ?? String(value);
  } catch {
    text = Array.isArray(value) ? `[array of ${value.length}]` : "[object]";
  }
  return text.length > MAX_OBJECT_TEXT ? `${text.slice(0, MAX_OBJECT_TEXT)}…` : text;
}

/** A plain object or array (rendered as JSON); anything else is a class instance. */
function isPlain(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === Array.prototype || proto === null;
}

/** A class instance: its class and length, or its own one-line `toString()`, or its class. */
function instanceText(value: object): string {
  const name = (value as { constructor?: { name?: string } }).constructor?.name ?? "object";
  if (ArrayBuffer.isView(value))
    return `${name}(${(value as { length?: number }).length ?? value.byteLength})`;
  const own = (value as { toString?: unknown }).toString;
  if (typeof own === "function" && own !== Object.prototype.toString) {
    const text = String(value);
    return text.length > MAX_OBJECT_TEXT ? `${text.slice(0, MAX_OBJECT_TEXT)}…` : text;
  }
  return `[${name}]`;
}

/**
 * Bad input: names the argument, shows the value and says what is allowed.
 * Mirrors the -EINVAL / -EEXIST returns of the KVM ioctls it models.
 */
export class InvalidArgumentError extends MmuLabError {
  /** Name of the offending argument or field, e.g. `"memorySize"`. */
  readonly argument: string;
  /** The rejected value as given. */
  readonly value: unknown;
  /** What would have been accepted. */
  readonly allowed: string;
  /** The errno KVM would return for the same request, when there is one. */
  readonly errno?: "EINVAL" | "EEXIST" | "ENOENT" | "E2BIG" | "ENXIO";

  constructor(
    argument: string,
    value: unknown,
    allowed: string,
    errno?: "EINVAL" | "EEXIST" | "ENOENT" | "E2BIG" | "ENXIO",
  ) {
    super(
      `invalid ${argument}: ${describeValue(value)}; allowed: ${allowed}${errno ? ` (KVM: -${errno})` : ""}`,
    );
    this.argument = argument;
    this.value = value;
    this.allowed = allowed;
    this.errno = errno;
  }
}

/**
 * Refuses a frozen, sealed or non-extensible VM or vCPU before a method changes anything.
 * `Object.freeze` is shallow: the state lives in nested typed arrays, so without this a frozen
 * VM would run some methods and fail others with a TypeError halfway through, at the first own
 * field they assign.
 */
export function refuseFrozen(receiver: object, what: "vm" | "vcpu"): void {
  if (!Object.isExtensible(receiver))
    throw new InvalidArgumentError(
      what,
      receiver,
      `a ${what} that is not frozen, sealed or made non-extensible: such a ${what} can be read (views, stats, audit) but not changed`,
    );
}

/**
 * The guest CPU would raise #GP(0) for this operation (e.g. MOV to CR3 in PAE mode with a
 * reserved bit set in a PDPTE, or enabling paging without protection). Thrown by register
 * loads; the vCPU state is left unchanged, as the faulting instruction does not retire.
 */
export class GeneralProtectionError extends InvalidArgumentError {
  /** Always 13 (#GP). */
  readonly vector = 13;
}

/**
 * A broken MMU invariant: the simulator's counterpart of KVM's `WARN_ON` / `KVM_BUG_ON` (which
 * mark the VM dead). Never caused by bad input; it means the simulator (or a test that corrupted
 * its state on purpose) left KVM's rules. `where` names the kernel function whose rule broke.
 */
export class MmuBugError extends MmuLabError {
  /** Kernel function (or check) where the invariant broke, e.g. `"handle_changed_spte"`. */
  readonly where: string;
  /** What broke, in words. */
  readonly what: string;

  constructor(where: string, what: string) {
    super(`KVM_BUG_ON in ${where}: ${what}`);
    this.where = where;
    this.what = what;
  }
}

/**
 * Check an options argument: `undefined` (when `optional`) or a plain object, not an array, whose
 * own keys are all in `keys` (a misspelt key is refused, not ignored). Returns the object, or an
 * empty one for `undefined`.
 * @throws InvalidArgumentError naming `argument` and the value, or the unknown key.
 */
export function checkOptionKeys(
  argument: string,
  opts: unknown,
  keys: readonly string[],
  optional = true,
): Record<string, unknown> {
  if (opts === undefined && optional) return {};
  if (opts === null || typeof opts !== "object" || Array.isArray(opts))
    throw new InvalidArgumentError(
      argument,
      opts,
      `an object { ${keys.map((k) => `${k}?`).join(", ")} }`,
    );
  for (const k of Object.keys(opts))
    if (!keys.includes(k)) throw new InvalidArgumentError(argument, k, `keys ${keys.join(", ")}`);
  return opts as Record<string, unknown>;
}

/**
 * Check a boolean option: `undefined` (the default) or true or false; 1, "true" or null are
 * refused rather than read as truthy.
 */
export function checkFlag(argument: string, value: unknown): boolean | undefined {
  if (value !== undefined && typeof value !== "boolean")
    throw new InvalidArgumentError(argument, value, "true, false or undefined");
  return value;
}

/** `n` bytes as "n bytes (x GiB)" or "(x MiB)": exact for the record, rounded for the reader. */
export function bytesText(n: number): string {
  const unit = n >= 2 ** 30 ? ([2 ** 30, "GiB"] as const) : ([2 ** 20, "MiB"] as const);
  const v = n / unit[0];
  return `${n} bytes (${v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(2)} ${unit[1]})`;
}

/**
 * An operation would take the VM past its memory budget (`createVm({ memoryBudget })`), so it
 * was refused before it allocated anything: the simulator's `-ENOMEM`. KVM charges what it
 * allocates for a VM to the VM process's memory cgroup (`GFP_KERNEL_ACCOUNT`), and an allocation
 * past the cgroup's `memory.max` fails; the budget is that limit. `what` names the operation,
 * `estimateBytes` what it would have allocated, `budgetBytes` the limit it would have crossed
 * (the VM's memory budget, or for JS-heap objects the heap budget, see {@link ResourceLimitError.heap}),
 * `usedBytes` what the VM already holds against that limit.
 */
export class ResourceLimitError extends MmuLabError {
  /** The refused operation, e.g. `"KVM_SET_USER_MEMORY_REGION slot 0 (dirty bitmap, eager split)"`. */
  readonly what: string;
  /** Bytes the operation would have allocated (an estimate from its sizes, made before allocating). */
  readonly estimateBytes: number;
  /** The limit: the VM's memory budget, or the JS-heap budget when {@link heap} is true. */
  readonly budgetBytes: number;
  /** Bytes already accounted against that limit. */
  readonly usedBytes: number;
  /** True when the limit is the JS-heap budget (objects on V8's heap) rather than the memory budget. */
  readonly heap: boolean;

  constructor(
    what: string,
    estimateBytes: number,
    budgetBytes: number,
    usedBytes: number,
    heap = false,
  ) {
    const limit = heap ? "JS-heap budget" : "memory budget";
    const fix = heap
      ? "shrink the request, or give Node a larger heap (node --max-old-space-size=<MiB>) and tell mmulab (setHostMemoryInfo)"
      : "shrink the request, or raise the budget: createVm({ memoryBudget: <bytes> })";
    super(
      `${what} needs an estimated ${bytesText(estimateBytes)}; with ${bytesText(usedBytes)} already in use that exceeds the VM's ${limit} of ${bytesText(budgetBytes)}. Nothing was allocated or changed; ${fix}`,
    );
    this.what = what;
    this.estimateBytes = estimateBytes;
    this.budgetBytes = budgetBytes;
    this.usedBytes = usedBytes;
    this.heap = heap;
  }
}
