/**
 * The one place where addresses and 64-bit values given as `number | bigint` are parsed.
 *
 * Internally a 64-bit quantity is two uint32 halves (`hi`, `lo`) because JS bit operators
 * keep only 32 bits. Guest-physical addresses and frame numbers stay below 2^52 and are held in
 * plain numbers (exact in a double).
 */
import { InvalidArgumentError } from "../errors";

/** 2^32 as a number. */
export const TWO32 = 4294967296;

/** Scratch output of {@link splitU64}: written in place, never allocated per call. */
export interface U64Parts {
  hi: number;
  lo: number;
}

/**
 * Parse an unsigned 64-bit value. Numbers must be non-negative safe integers; bigints must lie in
 * [0, 2^64). Writes the halves into `out` and returns it.
 */
export function splitU64(name: string, v: unknown, out: U64Parts): U64Parts {
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new InvalidArgumentError(
        name,
        v,
        "a non-negative safe integer (use bigint above 2^53)",
      );
    }
    out.hi = Math.floor(v / TWO32);
    out.lo = v >>> 0;
    return out;
  }
  if (typeof v === "bigint") {
    if (v < 0n || v >= 1n << 64n) throw new InvalidArgumentError(name, v, "0 <= value < 2^64");
    out.hi = Number(v >> 32n);
    out.lo = Number(v & 0xffffffffn);
    return out;
  }
  throw new InvalidArgumentError(name, v, "a number or bigint");
}

/**
 * Like {@link splitU64}, but also accepts a negative int32 number as the 32-bit pattern it
 * denotes (so `X86_CR0_PG | X86_CR0_PE`, which JS evaluates to a negative int32, loads as
 * 0x80000001). Used for registers whose defined bits fit in 32 bits.
 */
export function splitReg(name: string, v: unknown, out: U64Parts): U64Parts {
  if (typeof v === "number" && Number.isInteger(v) && v < 0 && v >= -2147483648) {
    out.hi = 0;
    out.lo = v >>> 0;
    return out;
  }
  return splitU64(name, v, out);
}

/**
 * Parse a value that must fit in `bits` bits (e.g. a gpa below 2^MAXPHYADDR) and return it as a
 * number. `bits` may be at most 53.
 */
export function toUnsigned(name: string, v: unknown, bits: number, what?: string): number {
  const limit = 2 ** bits;
  let n: number;
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new InvalidArgumentError(name, v, what ?? `an integer in [0, 2^${bits})`);
    }
    n = v;
  } else if (typeof v === "bigint") {
    if (v < 0n || v >= BigInt(limit))
      throw new InvalidArgumentError(name, v, what ?? `an integer in [0, 2^${bits})`);
    n = Number(v);
  } else {
    throw new InvalidArgumentError(name, v, "a number or bigint");
  }
  if (n >= limit) throw new InvalidArgumentError(name, v, what ?? `an integer in [0, 2^${bits})`);
  return n;
}

/** Lower-case `0x…` hex of a non-negative number below 2^53. */
export function hexNum(n: number): string {
  return `0x${n.toString(16)}`;
}

/** A 64-bit value from its two 32-bit words (views only: hot paths keep the words). */
export function u64Of(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** The two 32-bit words of a 64-bit bigint (views only). */
export function u64Words(v: bigint): U64Parts {
  return { hi: Number((v >> 32n) & 0xffffffffn), lo: Number(v & 0xffffffffn) };
}
