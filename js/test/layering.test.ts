// The floor plan of src/, enforced: every import (type-only ones and `import()` too) is read with
// TypeScript's parser, and the test fails on an import cycle, on an import that points the wrong
// way between the parts, or on a package loaded where it must not be. The parts, bottom up:
//
//   vocabulary    protocol.ts, cursors.ts, subscribable.ts, watch.ts: each other only
//   stream/       the stream client: vocabulary
//   invalidation/ the framework-free invalidators: vocabulary (never the stream)
//   session/      a stream wired to an invalidator: vocabulary, stream/, invalidation/
//   entries       the other top-level modules, one per package export: any part, no other entry
//                 (but the aliases and query-updates' re-export, ENTRY_IMPORTS)
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import ts from "typescript";
import { describe, expect, it } from "vitest";

const src = resolve(dirname(fileURLToPath(import.meta.url)), "..", "src");
const pkg = JSON.parse(readFileSync(resolve(src, "..", "package.json"), "utf8")) as { exports: Record<string, unknown> };

type Part = "vocabulary" | "stream" | "invalidation" | "session" | "entry";

const VOCABULARY = new Set(["protocol.ts", "cursors.ts", "subscribable.ts", "watch.ts"]);
const FOLDERS: Record<string, Part> = { stream: "stream", invalidation: "invalidation", session: "session" };

/** Which parts each part may import (its own always). */
const ALLOWED: Record<Part, readonly Part[]> = {
  vocabulary: [],
  stream: ["vocabulary"],
  invalidation: ["vocabulary"],
  session: ["vocabulary", "stream", "invalidation"],
  entry: ["vocabulary", "stream", "invalidation", "session"],
};

/** Narrower rules for entries that promise to bundle less (docs/js.md, the size budget). */
const ENTRY_PARTS: Record<string, readonly Part[]> = {
  "index.ts": ["vocabulary", "stream"],
  "query-invalidator.ts": ["vocabulary", "invalidation"],
};

/** The only entry → entry imports: the former names and query-updates' re-export of the invalidator. */
const ENTRY_IMPORTS = new Set(["query-core.ts → query-invalidator.ts", "query.ts → query-updates.ts", "query-updates.ts → query-invalidator.ts"]);

/**
 * Packages a module may load at run time. Anywhere else only `import type` (which TypeScript
 * erases; `import { type X }` is kept as a bare import under verbatimModuleSyntax): the React,
 * Vue, Svelte and Solid entries must load without @tanstack/query-core resolvable on its own.
 */
const PACKAGES: Record<string, readonly string[]> = {
  "query-invalidator.ts": ["@tanstack/query-core"],
  "query-updates.ts": ["@tanstack/query-core"],
  "react.tsx": ["react", "@tanstack/react-query"],
  "vue.ts": ["vue", "@tanstack/vue-query"],
  "svelte.ts": ["svelte", "svelte/reactivity", "svelte/store", "@tanstack/svelte-query"],
  "solid.ts": ["solid-js", "@tanstack/solid-query"],
  "swr.ts": ["react", "swr"],
};
/** Packages a module may name in `import type`. */
const TYPE_PACKAGES = ["@tanstack/query-core"];

interface Import {
  specifier: string;
  typeOnly: boolean;
}

function modules(dir = src): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return modules(path);
    return /\.tsx?$/.test(entry.name) && !entry.name.endsWith(".d.ts") ? [relative(src, path)] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(src, file), "utf8");
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: node.importClause?.isTypeOnly === true });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push({ specifier: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const expression = node.moduleReference.expression;
      if (ts.isStringLiteral(expression)) found.push({ specifier: expression.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isCallExpression(node) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
        (ts.isIdentifier(node.expression) && node.expression.text === "require"))
    ) {
      const [argument] = node.arguments;
      found.push({ specifier: argument && ts.isStringLiteralLike(argument) ? argument.text : "<computed>", typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function partOf(file: string): Part {
  const [first, ...rest] = file.split("/");
  if (rest.length > 0) {
    const part = FOLDERS[first!];
    if (!part) throw new Error(`src/${file}: a folder the floor plan does not know; add it to test/layering.test.ts`);
    return part;
  }
  return VOCABULARY.has(file) ? "vocabulary" : "entry";
}

/** The relative import as a path from src/ (`./x.js` names `x.ts` or `x.tsx`). */
function target(from: string, specifier: string, files: ReadonlySet<string>): string {
  const base = relative(src, resolve(src, dirname(from), specifier)).replace(/\.js$/, "");
  for (const candidate of [`${base}.ts`, `${base}.tsx`]) if (files.has(candidate)) return candidate;
  throw new Error(`src/${from} imports ${specifier}, which is not a module of src/`);
}

/** Every problem of the module graph, as sentences naming the file and the fix. */
function problems(
  files: readonly string[],
  importsOfFile: (file: string) => Import[],
  entries: ReadonlySet<string>,
): string[] {
  const known = new Set(files);
  const graph = new Map<string, string[]>();
  const found: string[] = [];
  for (const file of files) {
    const part = partOf(file);
    if (part === "entry" && !entries.has(file)) {
      found.push(`src/${file}: a top-level module that is no package entry; move it into a part's folder`);
    }
    const edges: string[] = [];
    for (const { specifier, typeOnly } of importsOfFile(file)) {
      if (!specifier.startsWith(".")) {
        const loads = PACKAGES[file] ?? [];
        const ok = loads.includes(specifier) || (typeOnly && TYPE_PACKAGES.includes(specifier));
        if (!ok) {
          found.push(
            `src/${file} ${typeOnly ? "names the types of" : "loads"} ${specifier}: only ${
              Object.entries(PACKAGES)
                .filter(([, packages]) => packages.includes(specifier))
                .map(([entry]) => entry)
                .join(", ") || "no module"
            } may load it${TYPE_PACKAGES.includes(specifier) ? " (elsewhere: import type)" : ""}`,
          );
        }
        continue;
      }
      const to = target(file, specifier, known);
      edges.push(to);
      const toPart = partOf(to);
      if (part === "entry" && toPart === "entry") {
        if (!ENTRY_IMPORTS.has(`${file} → ${to}`)) found.push(`src/${file} imports the entry ${to}: import the part it uses instead`);
        continue;
      }
      const allowed = part === "entry" ? (ENTRY_PARTS[file] ?? ALLOWED.entry) : ALLOWED[part];
      if (toPart !== part && !allowed.includes(toPart)) {
        found.push(`src/${file} (${part}) imports ${to} (${toPart}): ${part} may import ${allowed.join(", ") || "only itself"}`);
      }
    }
    graph.set(file, edges);
  }
  // Cycles: a depth-first walk; a module met again while still on the path closes one.
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const walk = (file: string): void => {
    state.set(file, "open");
    path.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === "open") found.push(`import cycle: ${[...path.slice(path.indexOf(next)), next].join(" → ")}`);
      else if (!state.has(next)) walk(next);
    }
    path.pop();
    state.set(file, "done");
  };
  for (const file of files) if (!state.has(file)) walk(file);
  return found;
}

const ENTRIES = new Set(
  Object.keys(pkg.exports)
    .filter((name) => name !== "./package.json")
    .map((name) => (name === "." ? "index" : name.slice(2)))
    .flatMap((name) => [`${name}.ts`, `${name}.tsx`]),
);

describe("the floor plan of src/", () => {
  it("test_imports_point_one_way_with_no_cycle_and_packages_only_where_allowed", () => {
    expect(problems(modules(), importsOf, ENTRIES)).toEqual([]);
  });

  it("test_a_wrong_way_import_a_cycle_and_a_stray_package_are_each_reported", () => {
    // The checker itself: the real graph with one bad import added at a time.
    const files = modules();
    const withExtra = (file: string, extra: Import) => (name: string) =>
      name === file ? [...importsOf(name), extra] : importsOf(name);
    const wrongWay = problems(files, withExtra("invalidation/batch.ts", { specifier: "../stream/shared.js", typeOnly: false }), ENTRIES);
    expect(wrongWay).toEqual([expect.stringContaining("src/invalidation/batch.ts (invalidation) imports stream/shared.ts (stream)")]);
    const coreOnAdapter = problems(files, withExtra("session/session.ts", { specifier: "../react.js", typeOnly: true }), ENTRIES);
    expect(coreOnAdapter).toContainEqual(expect.stringContaining("src/session/session.ts (session) imports react.tsx (entry)"));
    // react.tsx imports the session, so that edge also closes cycles.
    expect(coreOnAdapter).toContainEqual(expect.stringMatching(/^import cycle: .*react\.tsx/));
    const cycle = problems(files, withExtra("subscribable.ts", { specifier: "./cursors.js", typeOnly: true }), ENTRIES);
    expect(cycle).toEqual(["import cycle: cursors.ts → subscribable.ts → cursors.ts"]);
    const stray = problems(files, withExtra("invalidation/tags.ts", { specifier: "@tanstack/query-core", typeOnly: false }), ENTRIES);
    expect(stray).toEqual([expect.stringContaining("src/invalidation/tags.ts loads @tanstack/query-core")]);
  });
});
