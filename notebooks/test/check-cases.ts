// The shape every lab's check() test shares: per exercise, right answers that must be accepted
// and plausible wrong ones that must be refused with a hint naming what is off.
import { describe, expect, it } from "vitest";
import type { CheckResult } from "../lib/check";

/** id → [right answers], [[wrong answer, words the explanation must contain]]. */
export type CheckCases = Record<string, { right: unknown[]; wrong: Array<[unknown, RegExp]> }>;

const show = (a: unknown): string =>
  JSON.stringify(a, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(a);

/** One describe block per exercise: each right answer accepted, each wrong one explained. */
export function describeCheckCases(
  check: (id: string, answer: unknown) => CheckResult,
  cases: CheckCases,
): void {
  for (const [id, c] of Object.entries(cases)) {
    describe(id, () => {
      it.each(c.right.map((a) => [show(a), a]))("accepts the right answer %s", (_s, a) => {
        const r = check(id, a);
        expect(r.ok, r.message).toBe(true);
        expect(r.message).toMatch(/\w/);
        // A grader that finds the simulator disagreeing with KVM's rules refuses to grade.
        expect(r.message).not.toMatch(/please report this/);
      });
      it.each(c.wrong.map(([a, re]) => [show(a), a, re]))(
        "explains the wrong answer %s",
        (_s, a, re) => {
          const r = check(id, a);
          expect(r.ok).toBe(false);
          expect(r.message).toMatch(re as RegExp);
          expect(r.message).not.toMatch(/please report this/);
          expect(String(r)).not.toMatch(/^(false|False)$/);
        },
      );
    });
  }
}
