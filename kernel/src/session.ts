/**
 * The link between notebook helpers (`display`, `plot`, `progress`) and the running kernel.
 *
 * Held on `globalThis` under a registered symbol rather than in a module variable: a notebook may
 * load a different copy of `@mmulab/kernel` than the one running the kernel process (another
 * install, a symlink resolved differently), and both copies must reach the same kernel.
 */
import type { MimeBundle } from "@mmulab/core/display";

/** Options of one display message. */
export interface DisplayOptions {
  /** Jupyter `transient.display_id`; needed to update the display later. */
  displayId?: string;
  /** Send `update_display_data` (replace the display with this id) instead of `display_data`. */
  update?: boolean;
}

/** What the kernel offers to helpers running inside a cell. */
export interface KernelSession {
  /** Publishes one display_data (or update_display_data) carrying every MIME type of `bundle`. */
  publishDisplay(bundle: MimeBundle, options: DisplayOptions): void;
  /** Publishes clear_output (with `wait`, the front end clears when the next output arrives). */
  publishClear(wait: boolean): void;
  /** True from a SIGINT until the next cell starts: long loops calling `progress` stop on it. */
  readonly interruptRequested: boolean;
  /** Displays still open in the current cell; the kernel finalises them when the cell ends. */
  readonly openProgress: Set<{ finish(state: "done" | "interrupted" | "failed"): void }>;
}

const KEY = Symbol.for("mmulab.kernel.session");

/** The session of the kernel running this process, if any. */
export function currentSession(): KernelSession | undefined {
  return (globalThis as Record<symbol, KernelSession | undefined>)[KEY];
}

/** Installs (or with `undefined` removes) the session. Called by the kernel only. */
export function setSession(session: KernelSession | undefined): void {
  (globalThis as Record<symbol, KernelSession | undefined>)[KEY] = session;
}
