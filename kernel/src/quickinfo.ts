/**
 * Quick info (Shift+Tab in JupyterLab) as text/plain and text/markdown, with TSDoc inline links
 * (`{@link Foo}`, `{@link Foo | label}`, `{@linkcode Foo}`, `{@linkplain Foo label}`) shown as
 * their label rather than the raw tag.
 *
 * TypeScript splits a link into display parts: `link` "{@link " / "}" around a `linkName` (when
 * the name resolves) and a `linkText` (the label, or the whole unresolved "name label" text).
 */
import type { QuickInfo, SymbolDisplayPart } from "@tslab/typescript-for-tslab";

/** Quick info rendered both ways. */
export interface RenderedQuickInfo {
  plain: string;
  markdown: string;
}

/** One inline link: what it points at and what it should read as. */
interface InlineLink {
  /** "link", "linkcode" or "linkplain". */
  tag: string;
  target: string;
  label: string;
  /** True when the source gave a label of its own (not just the name). */
  labelled: boolean;
}

/** Reads the parts of one link (between its opening and closing `link` parts). */
function readLink(open: string, inner: SymbolDisplayPart[]): InlineLink {
  const tag = /^\{@(\w+)/.exec(open)?.[1] ?? "link";
  const name = inner.find((p) => p.kind === "linkName")?.text;
  const text = inner
    .filter((p) => p.kind !== "linkName")
    .map((p) => p.text)
    .join("")
    .trim()
    .replace(/^\|\s*/, "");
  if (name !== undefined) return { tag, target: name, label: text || name, labelled: text !== "" };
  // Unresolved: the text is "target", "target label" or "target | label" (TSDoc).
  const m = /^(\S+?)\s*(?:\|\s*|\s+)(.*)$/s.exec(text);
  if (m && m[2]!.trim() !== "") return { tag, target: m[1]!, label: m[2]!.trim(), labelled: true };
  return { tag, target: text, label: text, labelled: false };
}

function linkToMarkdown(link: InlineLink): string {
  if (/^https?:\/\//.test(link.target)) return `[${link.label}](${link.target})`;
  // A symbol name reads as code; a prose label of {@link}/{@linkplain} stays prose.
  if (link.tag === "linkcode" || (link.tag === "link" && !link.labelled))
    return `\`${link.label}\``;
  return link.label;
}

/** Renders display parts, turning each inline link into its label. */
function renderParts(parts: readonly SymbolDisplayPart[] | undefined): RenderedQuickInfo {
  let plain = "";
  let markdown = "";
  const list = parts ?? [];
  for (let i = 0; i < list.length; i++) {
    const part = list[i]!;
    if (part.kind === "link" && part.text.startsWith("{@")) {
      const inner: SymbolDisplayPart[] = [];
      let j = i + 1;
      while (j < list.length && !(list[j]!.kind === "link" && list[j]!.text === "}")) {
        inner.push(list[j]!);
        j++;
      }
      const link = readLink(part.text, inner);
      plain += link.label;
      markdown += linkToMarkdown(link);
      i = j;
      continue;
    }
    plain += part.text;
    markdown += part.text;
  }
  return { plain, markdown };
}

interface Tag {
  name: string;
  text: SymbolDisplayPart[];
}

/**
 * TypeScript 5.0 reads `@throws {@link X} text` as a tag ending in "{" followed by a tag named
 * "link" with text "X} text". Joins such pairs back into one tag with the link as its label.
 */
function repairSplitLinkTags(tags: readonly { name: string; text?: SymbolDisplayPart[] }[]): Tag[] {
  const out: Tag[] = [];
  for (const tag of tags) {
    const text = tag.text ?? [];
    const prev = out[out.length - 1];
    const prevText = prev?.text.map((p) => p.text).join("") ?? "";
    const rest = text.map((p) => p.text).join("");
    const close = rest.indexOf("}");
    if (prev && /^link(code|plain)?$/.test(tag.name) && prevText.endsWith("{") && close >= 0) {
      const kept = prevText.slice(0, -1);
      prev.text = [
        ...(kept ? [{ kind: "text", text: kept }] : []),
        { kind: "link", text: `{@${tag.name} ` },
        { kind: "linkText", text: rest.slice(0, close) },
        { kind: "link", text: "}" },
        { kind: "text", text: rest.slice(close + 1) },
      ];
      continue;
    }
    out.push({ name: tag.name, text: [...text] });
  }
  return out;
}

/** Text and markdown of quick info: signature, documentation, then the tags. */
export function renderQuickInfo(info: QuickInfo): RenderedQuickInfo {
  const signature = (info.displayParts ?? []).map((p) => p.text).join("");
  const doc = renderParts(info.documentation);
  const plain: string[] = [signature];
  const markdown: string[] = [`\`\`\`typescript\n${signature}\n\`\`\``];
  if (doc.plain.trim() !== "") {
    plain.push("", doc.plain);
    markdown.push(doc.markdown);
  }
  const tags = repairSplitLinkTags(info.tags ?? []);
  if (tags.length > 0) plain.push("");
  for (const tag of tags) {
    const body = renderParts(tag.text);
    plain.push(`@${tag.name}${body.plain ? ` ${body.plain}` : ""}`);
    if (tag.name === "example") {
      markdown.push(`*@example*\n\`\`\`typescript\n${body.markdown}\n\`\`\``);
    } else if (tag.name === "param" && tag.text[0]?.kind === "parameterName") {
      const rest = renderParts(tag.text.slice(1));
      markdown.push(`*@param* \`${tag.text[0].text}\` —${rest.markdown}`);
    } else {
      markdown.push(`*@${tag.name}*${body.markdown ? ` ${body.markdown}` : ""}`);
    }
  }
  return { plain: plain.join("\n"), markdown: markdown.join("\n\n") };
}
