/**
 * What every classroom lab shares: the result of `check()` (a coloured box in the notebook), the
 * exercise record each lab fills in, the table of its exercises, and the dispatch from an
 * exercise id to its grader. Each lab (page-walk-lab.ts, shadow-paging-lab.ts) owns only its
 * machine, its exercises and their plain-word verdicts.
 */
import { escapeHtml, htmlTableBundle, JUPYTER_DISPLAY, type MimeBundle } from "@mmulab/core";

/** The result of a lab's `check()`: shows itself as a coloured box in a notebook. */
export class CheckResult {
  constructor(
    readonly id: string,
    readonly ok: boolean,
    readonly message: string,
    readonly answered = true,
  ) {}

  toString(): string {
    const head = this.ok ? "Right" : this.answered ? "Not yet" : "No answer yet";
    return `${this.id}: ${head}. ${this.message}`;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const colour = this.ok ? "#2e7d32" : this.answered ? "#c62828" : "#6d6d6d";
    const head = this.ok ? "✔ Right" : this.answered ? "✘ Not yet" : "… No answer yet";
    return {
      "text/html": `<div class="mmulab-check" style="border-left:4px solid ${colour};padding:4px 8px;margin:2px 0"><b style="color:${colour}">${head}</b> <span>(${escapeHtml(this.id)})</span><div>${escapeHtml(this.message)}</div></div>`,
      "text/plain": this.toString(),
    };
  }
}

/** A grader's verdict: right or not, and why in plain words. */
export interface Verdict {
  ok: boolean;
  message: string;
}

/** One exercise of a lab. */
export interface Exercise {
  id: string;
  question: string;
  /** What an answer looks like (shown when there is none yet). */
  form: string;
  /** Grades a given answer (never undefined); never throws for a wrong one. */
  grade(answer: unknown): Verdict;
}

/** A value that shows `bundle` when a notebook displays it. */
export interface Displayable {
  [JUPYTER_DISPLAY](): MimeBundle;
}

/** Wraps a MIME bundle so that a notebook displays it. */
export function displayable(bundle: MimeBundle): Displayable {
  return { [JUPYTER_DISPLAY]: () => bundle };
}

/** The exercises' ids, questions and answer forms, as a table in the notebook. */
export function exerciseTable(exercises: readonly Exercise[]): Displayable {
  return displayable(
    htmlTableBundle(
      "Exercises",
      exercises.map((e) => ({ id: e.id, question: e.question, "answer form": e.form })),
    ),
  );
}

/**
 * Grades `answer` for exercise `id` of `exercises`. A missing answer (undefined) says what to
 * write, without failing the cell; a wrong one says in words what is off. Throws only for an
 * unknown exercise id.
 */
export function gradeExercise(
  exercises: readonly Exercise[],
  id: string,
  answer: unknown,
): CheckResult {
  const ex = exercises.find((e) => e.id === id);
  if (!ex) {
    throw new RangeError(
      `unknown exercise ${JSON.stringify(id)}; the exercises are ${exercises.map((e) => e.id).join(", ")}`,
    );
  }
  if (answer === undefined) {
    return new CheckResult(
      id,
      false,
      `write your answer as ${ex.form}, then run the cell again.`,
      false,
    );
  }
  const g = ex.grade(answer);
  return new CheckResult(id, g.ok, g.message);
}

/** `answer` as a whole number (bigints accepted), or why it is not one. */
export function asInt(answer: unknown, what: string): number | string {
  if (typeof answer === "number" && Number.isInteger(answer)) return answer;
  if (typeof answer === "bigint") return Number(answer);
  return `expected ${what} as a whole number, got ${String(answer)}`;
}
