/**
 * Composing page-table views for notebooks: several trees side by side (a guest tree beside its
 * TDP tree) and "what changed" between two snapshots of the same trees. The renderer and the
 * static HTML fallback draw the `before` trees as a diff.
 */
import { pagetableBundle } from "../display/bundle";
import {
  JUPYTER_DISPLAY,
  type MimeBundle,
  type PagetablePayload,
  type Tree,
} from "../display/types";
import { InvalidArgumentError } from "../errors";
import { foldChanges } from "./change_fold";

/** Anything that carries a pagetable payload: a guest snapshot, a TDP view, or a payload. */
export type PagetableSource =
  | PagetablePayload
  | { readonly payload: PagetablePayload }
  | { payload(): PagetablePayload };

function payloadOf(src: PagetableSource, name: string): PagetablePayload {
  if (src === null || typeof src !== "object")
    throw new InvalidArgumentError(
      name,
      src,
      "a page-table snapshot (builder.snapshot(), vm.snapshot()) or a pagetable payload",
    );
  const p =
    typeof (src as { payload?: unknown }).payload === "function"
      ? (src as { payload(): PagetablePayload }).payload()
      : ((src as { payload?: PagetablePayload }).payload ?? src);
  if (p === null || typeof p !== "object" || (p as PagetablePayload).kind !== "pagetable") {
    throw new InvalidArgumentError(
      name,
      src,
      "a page-table snapshot (builder.snapshot(), vm.snapshot()) or a pagetable payload",
    );
  }
  return p as PagetablePayload;
}

function treesOf(sources: readonly PagetableSource[], name: string): Tree[] {
  const trees = sources.flatMap((s, i) => payloadOf(s, `${name}[${i}]`).trees);
  if (trees.length === 0 || trees.length > 4) {
    throw new InvalidArgumentError(
      `${name}`,
      sources,
      `snapshots of 1 to 4 trees in all (these have ${trees.length})`,
    );
  }
  return trees;
}

/** A displayable page-table view: one or more trees, optionally with the trees they were before. */
export class PagetableView {
  readonly payload: PagetablePayload;
  constructor(payload: PagetablePayload) {
    if (payload === null || typeof payload !== "object" || payload.kind !== "pagetable")
      throw new InvalidArgumentError(
        "payload",
        payload,
        'a pagetable payload ({ kind: "pagetable", trees })',
      );
    this.payload = payload;
  }
  [JUPYTER_DISPLAY](): MimeBundle {
    return pagetableBundle(this.payload);
  }
}

/**
 * Shows the trees of `sources` side by side, e.g. `sideBySide(tables.snapshot(), vm.snapshot())`.
 * @throws InvalidArgumentError for a value that is not a snapshot, or more than 4 trees.
 */
export function sideBySide(...sources: PagetableSource[]): PagetableView {
  const trees = treesOf(sources, "sources");
  // One title per source or none: a title borrowed from one tree would mislabel the others.
  const titles = sources.map((s) => payloadOf(s, "sources").title);
  const truncated = sources.some((s) => payloadOf(s, "sources").truncated === true);
  const payload: PagetablePayload = { version: 1, kind: "pagetable", trees };
  if (titles.every((t) => t !== undefined)) payload.title = titles.join(" | ");
  if (truncated) payload.truncated = true;
  return new PagetableView(payload);
}

/**
 * What changed from `before` to `after` (snapshots of the same trees, in the same order): the
 * view shows `after` and marks the entries that differ from `before`, and lists the differences
 * folded (`payload.changes`: counts per level, and runs of alike changes at consecutive addresses
 * as one line each, see change_fold.ts).
 * @throws InvalidArgumentError when the two do not hold the same kinds of trees.
 */
export function changes(
  before: PagetableSource | PagetableSource[],
  after: PagetableSource | PagetableSource[],
  title?: string,
): PagetableView {
  if (title !== undefined && typeof title !== "string")
    throw new InvalidArgumentError("title", title, "a string or undefined");
  const b = treesOf(Array.isArray(before) ? before : [before], "before");
  const a = treesOf(Array.isArray(after) ? after : [after], "after");
  const shape = (ts: Tree[]) => ts.map((t) => `${t.kind}/${t.format}`).join(", ");
  if (shape(a) !== shape(b)) {
    throw new InvalidArgumentError(
      "before",
      shape(b),
      `snapshots of the same trees as after (${shape(a)})`,
    );
  }
  const payload: PagetablePayload = {
    version: 1,
    kind: "pagetable",
    trees: a,
    before: b,
    changes: foldChanges(b, a),
  };
  if (title !== undefined) payload.title = title;
  return new PagetableView(payload);
}
