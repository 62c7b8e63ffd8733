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

/** Render a value for an error message: hex for addresses, JSON-ish for the rest. */
export function describeValue(value: unknown): string {
  if (typeof value === "bigint")
    return `${value < 0n ? "-" : ""}0x${(value < 0n ? -value : value).toString(16)} (bigint)`;
  if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 16) return `${value} (0x${value.toString(16)})`;
    return String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (value === undefined) return "undefined";
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
  } catch {
    return String(value);
  }
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
