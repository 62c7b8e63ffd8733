/**
 * Declarations of a cell that stopped early (an error or an interrupt).
 *
 * The compiled cell stores each top-level value in `exports` right after its declaration runs
 * (`const vm = …; exports.vm = vm;`), so the names stored before the stop are exactly the
 * declarations whose initialisers ran. The cell's declaration text (tslab's `declOutput`, which
 * also carries the earlier cells' declarations) is cut down to those, so later cells can use them.
 */
import type * as TS from "@tslab/typescript-for-tslab";

type TypeScript = typeof TS;

function bindingNames(ts: TypeScript, name: TS.BindingName, out: string[]): void {
  if (ts.isIdentifier(name)) {
    out.push(name.text);
    return;
  }
  for (const el of name.elements) {
    if (!ts.isOmittedExpression(el)) bindingNames(ts, el.name, out);
  }
}

function hasDeclareModifier(ts: TypeScript, node: TS.Node): boolean {
  return (ts.getModifiers?.(node as TS.HasModifiers) ?? []).some(
    (m) => m.kind === ts.SyntaxKind.DeclareKeyword,
  );
}

/** Top-level names of `src` that hold a value at run time (not types, not `declare`d). */
export function declaredValueNames(ts: TypeScript, src: string): string[] {
  const sf = ts.createSourceFile("cell.ts", src, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const names: string[] = [];
  for (const st of sf.statements) {
    if (hasDeclareModifier(ts, st)) continue;
    if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) bindingNames(ts, d.name, names);
    } else if (
      (ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isEnumDeclaration(st)) &&
      st.name
    ) {
      if (
        !(
          ts.isEnumDeclaration(st) &&
          ts.getModifiers?.(st)?.some((m) => m.kind === ts.SyntaxKind.ConstKeyword)
        )
      )
        names.push(st.name.text);
    } else if (ts.isImportDeclaration(st) && st.importClause && !st.importClause.isTypeOnly) {
      const clause = st.importClause;
      if (clause.name) names.push(clause.name.text);
      const bindings = clause.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) names.push(bindings.name.text);
      if (bindings && ts.isNamedImports(bindings)) {
        for (const el of bindings.elements) if (!el.isTypeOnly) names.push(el.name.text);
      }
    } else if (ts.isImportEqualsDeclaration(st) && !st.isTypeOnly) {
      names.push(st.name.text);
    }
  }
  return names;
}

/**
 * `decls` (declaration text) without the declarations of `drop`: declarators of variable
 * statements, functions, classes, enums and import bindings. Types and interfaces stay.
 */
export function withoutDeclarations(
  ts: TypeScript,
  decls: string,
  drop: ReadonlySet<string>,
): string {
  if (drop.size === 0) return decls;
  const sf = ts.createSourceFile(
    "decls.d.ts",
    decls,
    ts.ScriptTarget.Latest,
    false,
    ts.ScriptKind.TS,
  );
  const text = (node: TS.Node) => node.getText(sf);
  const out: string[] = [];
  for (const st of sf.statements) {
    if (ts.isVariableStatement(st)) {
      const kept = st.declarationList.declarations.filter(
        (d) => !(ts.isIdentifier(d.name) && drop.has(d.name.text)),
      );
      if (kept.length === st.declarationList.declarations.length) out.push(text(st));
      else if (kept.length > 0) {
        const flags = st.declarationList.flags;
        const kind =
          flags & ts.NodeFlags.Const ? "const" : flags & ts.NodeFlags.Let ? "let" : "var";
        const declare = hasDeclareModifier(ts, st) ? "declare " : "";
        out.push(`${declare}${kind} ${kept.map(text).join(", ")};`);
      }
      continue;
    }
    if (
      (ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isEnumDeclaration(st)) &&
      st.name &&
      drop.has(st.name.text)
    )
      continue;
    if (ts.isImportDeclaration(st) && st.importClause) {
      const clause = st.importClause;
      const bindings = clause.namedBindings;
      const names = [
        ...(clause.name ? [clause.name.text] : []),
        ...(bindings && ts.isNamespaceImport(bindings) ? [bindings.name.text] : []),
        ...(bindings && ts.isNamedImports(bindings)
          ? bindings.elements.map((e) => e.name.text)
          : []),
      ];
      if (!names.some((n) => drop.has(n))) {
        out.push(text(st));
        continue;
      }
      const parts: string[] = [];
      if (clause.name && !drop.has(clause.name.text)) parts.push(text(clause.name));
      if (bindings && ts.isNamespaceImport(bindings) && !drop.has(bindings.name.text))
        parts.push(text(bindings));
      if (bindings && ts.isNamedImports(bindings)) {
        const els = bindings.elements.filter((el) => !drop.has(el.name.text));
        if (els.length > 0) parts.push(`{ ${els.map(text).join(", ")} }`);
      }
      if (parts.length > 0) {
        const type = clause.isTypeOnly ? "type " : "";
        out.push(`import ${type}${parts.join(", ")} from ${text(st.moduleSpecifier)};`);
      }
      continue;
    }
    if (ts.isImportEqualsDeclaration(st) && drop.has(st.name.text)) continue;
    out.push(text(st));
  }
  return `${out.join("\n")}\n`;
}
