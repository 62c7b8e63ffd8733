// Build dist/cjs with tsc, plus one transform: references to numeric `const`s (PT_PRESENT_MASK,
// PFERR_WRITE_MASK, E_KEY, ...) become the number itself.
//
// Why: in CommonJS output an exported const is read as `exports.X` or `module_1.X`, a property
// load that V8's optimizing compiler does not fold (the object is mutable), so a walk that names
// its bits pays a load and a Smi check per name per level: about a quarter of the guest walk's
// instructions (core/bench, cachegrind). Sources keep the names; dist/ carries the values, each
// followed by a comment with the name.
//
// Usage: node scripts/build.mjs [-p tsconfig.build.json] [--outDir dir]
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const ts = require("typescript");
const here = path.dirname(fileURLToPath(import.meta.url));
const projectArg = process.argv.indexOf("-p");
const configPath = path.resolve(
  here,
  "..",
  projectArg >= 0 ? process.argv[projectArg + 1] : "tsconfig.build.json",
);

const parsed = ts.getParsedCommandLineOfConfigFile(
  configPath,
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => fail([d]),
  },
);
const outArg = process.argv.indexOf("--outDir");
const options =
  outArg >= 0
    ? { ...parsed.options, outDir: path.resolve(process.argv[outArg + 1]) }
    : parsed.options;
const program = ts.createProgram({ rootNames: parsed.fileNames, options });
const checker = program.getTypeChecker();

/** Value of a numeric constant expression, or undefined when it is not one. */
function evaluate(node, seen) {
  if (ts.isParenthesizedExpression(node)) return evaluate(node.expression, seen);
  if (ts.isNumericLiteral(node)) return Number(node.text);
  if (ts.isPrefixUnaryExpression(node)) {
    const v = evaluate(node.operand, seen);
    if (v === undefined) return undefined;
    if (node.operator === ts.SyntaxKind.MinusToken) return -v;
    if (node.operator === ts.SyntaxKind.PlusToken) return v;
    if (node.operator === ts.SyntaxKind.TildeToken) return ~v;
    return undefined;
  }
  if (ts.isBinaryExpression(node)) {
    const a = evaluate(node.left, seen);
    const b = a === undefined ? undefined : evaluate(node.right, seen);
    if (b === undefined) return undefined;
    switch (node.operatorToken.kind) {
      case ts.SyntaxKind.LessThanLessThanToken:
        return a << b;
      case ts.SyntaxKind.GreaterThanGreaterThanToken:
        return a >> b;
      case ts.SyntaxKind.GreaterThanGreaterThanGreaterThanToken:
        return a >>> b;
      case ts.SyntaxKind.BarToken:
        return a | b;
      case ts.SyntaxKind.AmpersandToken:
        return a & b;
      case ts.SyntaxKind.CaretToken:
        return a ^ b;
      case ts.SyntaxKind.PlusToken:
        return a + b;
      case ts.SyntaxKind.MinusToken:
        return a - b;
      case ts.SyntaxKind.AsteriskToken:
        return a * b;
      case ts.SyntaxKind.AsteriskAsteriskToken:
        return a ** b;
      default:
        return undefined;
    }
  }
  if (ts.isIdentifier(node)) return constValue(node, seen);
  return undefined;
}

const cache = new Map();
/** The value of the numeric `const` an identifier names, or undefined. */
function constValue(id, seen = new Set()) {
  let sym = checker.getSymbolAtLocation(id);
  if (sym === undefined) return undefined;
  if (sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
  if (cache.has(sym)) return cache.get(sym);
  const decl = sym.valueDeclaration;
  let v;
  if (
    decl !== undefined &&
    ts.isVariableDeclaration(decl) &&
    ts.isVariableDeclarationList(decl.parent) &&
    (decl.parent.flags & ts.NodeFlags.Const) !== 0 &&
    decl.initializer !== undefined &&
    !seen.has(sym)
  ) {
    seen.add(sym);
    v = evaluate(decl.initializer, seen);
    if (v !== undefined && !Number.isFinite(v)) v = undefined;
  }
  cache.set(sym, v);
  return v;
}

/** Whether identifier `id` is read as a value here (not a name being declared or a key). */
function isValueReference(id) {
  const p = id.parent;
  if (p === undefined) return false;
  if ((ts.isPropertyAccessExpression(p) || ts.isQualifiedName(p)) && p.name === id) return false;
  if (ts.isShorthandPropertyAssignment(p)) return false;
  if (ts.isImportSpecifier(p) || ts.isExportSpecifier(p) || ts.isImportClause(p)) return false;
  if (ts.isNamespaceImport(p) || ts.isExportAssignment(p)) return false;
  if ("name" in p && p.name === id) return false; // declarations, property assignments, members
  if (
    ts.isBinaryExpression(p) &&
    p.left === id &&
    p.operatorToken.kind >= ts.SyntaxKind.FirstAssignment &&
    p.operatorToken.kind <= ts.SyntaxKind.LastAssignment
  )
    return false;
  if (
    (ts.isPrefixUnaryExpression(p) || ts.isPostfixUnaryExpression(p)) &&
    (p.operator === ts.SyntaxKind.PlusPlusToken || p.operator === ts.SyntaxKind.MinusMinusToken)
  )
    return false;
  return true;
}

let inlined = 0;
const inlineConsts = (context) => (sourceFile) => {
  const visit = (node) => {
    if (ts.isTypeNode(node) || ts.isImportDeclaration(node) || ts.isExportDeclaration(node))
      return node;
    if (ts.isIdentifier(node) && isValueReference(node)) {
      const v = constValue(node);
      if (v === undefined) return node;
      inlined++;
      const lit = ts.factory.createNumericLiteral(Math.abs(v));
      const expr =
        v < 0 || Object.is(v, -0)
          ? ts.factory.createParenthesizedExpression(
              ts.factory.createPrefixUnaryExpression(ts.SyntaxKind.MinusToken, lit),
            )
          : lit;
      return ts.addSyntheticTrailingComment(
        expr,
        ts.SyntaxKind.MultiLineCommentTrivia,
        ` ${node.text} `,
        false,
      );
    }
    return ts.visitEachChild(node, visit, context);
  };
  return ts.visitNode(sourceFile, visit);
};

function fail(diagnostics) {
  const host = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: ts.sys.getCurrentDirectory,
    getNewLine: () => "\n",
  };
  process.stderr.write(ts.formatDiagnosticsWithColorAndContext(diagnostics, host));
  process.exit(1);
}

const pre = ts.getPreEmitDiagnostics(program);
if (pre.length > 0) fail(pre);
const result = program.emit(undefined, undefined, undefined, false, { before: [inlineConsts] });
if (result.diagnostics.length > 0) fail(result.diagnostics);
if (process.env.MMULAB_BUILD_VERBOSE)
  console.log(`core build: ${inlined} constant references inlined`);
