/**
 * The only way this extension builds DOM. Payload strings reach the page exclusively as
 * `textContent` (never `innerHTML`, never an attribute that can run or load anything), so an
 * untrusted notebook cannot inject markup, script or links through a payload.
 */

/** Attributes a payload-derived value may be written to: inert ones only (no on*, href, src, style). */
const SAFE_ATTRIBUTES = new Set([
  "title",
  "role",
  "tabindex",
  "aria-expanded",
  "aria-selected",
  "aria-label",
  "aria-level",
  "aria-live",
  "type",
  "placeholder",
  "spellcheck",
]);

/** Options of {@link h}. */
export interface ElementOptions {
  /** Space-separated class names (constants of this extension, never payload text). */
  cls?: string;
  /** Text content; set with `textContent`, so markup in it stays text. */
  text?: string;
  /** Inert attributes (see SAFE_ATTRIBUTES) and `data-*` attributes. */
  attrs?: Record<string, string>;
}

/**
 * Creates an element. Attribute names outside the inert set throw: a programming error here
 * must never silently become an injection point.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: ElementOptions = {},
  children: ReadonlyArray<Node | null> = [],
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (options.cls) el.className = options.cls;
  if (options.text !== undefined) el.textContent = options.text;
  if (options.attrs) {
    for (const [name, value] of Object.entries(options.attrs)) {
      if (!SAFE_ATTRIBUTES.has(name) && !/^data-[a-z0-9-]+$/.test(name)) {
        throw new Error(`mmulab renderer: attribute ${JSON.stringify(name)} is not allowed`);
      }
      el.setAttribute(name, value);
    }
  }
  for (const child of children) if (child) el.appendChild(child);
  return el;
}

/** A text node (payload text is always wrapped in one of these or set as textContent). */
export function text(value: string): Text {
  return document.createTextNode(value);
}

/** Short single-line preview of an arbitrary value for error messages (bounded length). */
export function preview(value: unknown, max = 120): string {
  let s: string;
  try {
    s =
      typeof value === "string" ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  } catch {
    s = String(value);
  }
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/**
 * The readable error box drawn instead of a payload that failed validation or a renderer that
 * threw. `details` are shown as a list (each item as text).
 */
export function errorBox(
  title: string,
  message: string,
  details: ReadonlyArray<string> = [],
): HTMLElement {
  const box = h("div", { cls: "mmulab-error", attrs: { role: "alert" } }, [
    h("div", { cls: "mmulab-error-title", text: title }),
    h("div", { cls: "mmulab-error-message", text: message }),
  ]);
  const shown = details.filter((d) => d !== message).slice(0, 20);
  if (shown.length > 0) {
    const list = h("ul", { cls: "mmulab-error-details" });
    for (const d of shown)
      list.appendChild(h("li", { text: d.length > 300 ? `${d.slice(0, 297)}...` : d }));
    box.appendChild(list);
  }
  return box;
}
