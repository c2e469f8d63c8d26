// Every TypeScript, TSX, Vue and Svelte snippet of docs/js.md and js/README.md type-checks against
// this checkout, as an app's code would (like tests/test_docs.py for the Python docs): bundler
// resolution, `refetch-sse/*` mapped to src/, a small ./api module next to them, strict with
// Vite's `noUnusedLocals`/`noUnusedParameters`. Each snippet is its own module.
//
// vue-tsc and svelte-check are not devDependencies: a .vue snippet's `<script setup lang="ts">` and
// a .svelte snippet's `<script lang="ts">` are type-checked as TypeScript (without the unused-name
// checks, which need the template), and every .svelte snippet must also compile with the Svelte
// compiler without a warning. The framework-free page is also run for real by plain-page.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { compile } from "svelte/compiler";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";

const js = resolve(dirname(fileURLToPath(import.meta.url)), "..");
// Inside js/, so the snippets resolve the frameworks from js/node_modules.
const dir = mkdtempSync(join(js, ".snippets-"));

/** What the snippets import from "./api", "./providers" and "./refetch-tags": the app's own modules. */
const SUPPORT: Record<string, string> = {
  "api.ts": `
import { CursorTracker } from "refetch-sse";
export const cursors = new CursorTracker();
export async function getProjects(): Promise<string[]> { return []; }
export async function getProject(id: number): Promise<{ id: number }> { return { id }; }
export const fetcher = async (url: string): Promise<string[]> => (await fetch(url)).json();
`,
  "refetch-tags.ts": `
export const refetchTags = {
  version: 1,
  operations: [{ id: "listProjects", method: "get", path: "/api/projects", reads: [{ type: "projects" }] }],
} as const;
`,
  "providers.tsx": `
import type { ReactNode } from "react";
export function Providers({ children }: { children: ReactNode }) { return <>{children}</>; }
`,
  "shims.d.ts": `
declare module "*.vue" { const component: import("vue").Component; export default component; }
declare module "*.svelte" { const component: import("svelte").Component; export default component; }
`,
};

/**
 * What a fragment takes from the app around it, by a line of the snippet: only the one snippet
 * that shows calls into other libraries (hey-api's client, tRPC's link) needs any.
 */
const CONTEXT: Record<string, string> = {
  "httpBatchLink(": [
    "declare const client: { interceptors: { response: { use(f: (response: Response) => Response): void } } };",
    "declare function httpBatchLink(options: { url: string; fetch: typeof fetch }): unknown;",
  ].join("\n"),
};

/** The runes a .svelte script may use, for type-checking it as plain TypeScript. */
const RUNES = "declare function $props(): Record<string, any>;\ndeclare function $state<T>(value: T): T;\n";

interface Snippet {
  name: string;
  language: string;
  code: string;
}

function snippetsOf(path: string, label: string): Snippet[] {
  const text = readFileSync(path, "utf8");
  const out: Snippet[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|tsx|vue|svelte)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    out.push({ name: `${label}:${i + 1}`, language: open[2]!, code: body.join("\n") + "\n" });
    i = j;
  }
  return out;
}

const SNIPPETS = [
  ...snippetsOf(resolve(js, "../docs/js.md"), "docs/js.md"),
  ...snippetsOf(resolve(js, "README.md"), "js/README.md"),
];

const OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
  strict: true,
  noUnusedLocals: true,
  noUnusedParameters: true,
  noEmit: true,
  skipLibCheck: true,
  types: [],
  jsx: ts.JsxEmit.ReactJSX,
  paths: { "refetch-sse": [resolve(js, "src/index.ts")], "refetch-sse/*": [resolve(js, "src/*")] },
};
// "is declared but never read": a .vue/.svelte script's names may be read by its template only.
const UNUSED = new Set([6133, 6192, 6196, 6198]);

/** The script of a .vue or .svelte snippet. */
function scriptOf(snippet: Snippet): string {
  const script = /<script[^>]*lang="ts"[^>]*>([\s\S]*?)<\/script>/.exec(snippet.code);
  if (!script) throw new Error(`${snippet.name}: a ${snippet.language} snippet without <script lang="ts">`);
  return script[1]!;
}

/** The module file a snippet becomes; .vue/.svelte: their script. */
function moduleOf(snippet: Snippet, index: number): { file: string; code: string } {
  const context = Object.entries(CONTEXT)
    .filter(([line]) => snippet.code.includes(line))
    .map(([, declarations]) => declarations + "\n")
    .join("");
  const solid = /solid-js|solid-query|refetch-sse\/solid/.test(snippet.code) ? "/** @jsxImportSource solid-js */\n" : "";
  if (snippet.language === "ts") return { file: `snippet-${index}.ts`, code: context + snippet.code };
  if (snippet.language === "tsx") return { file: `snippet-${index}.tsx`, code: solid + context + snippet.code };
  if (snippet.language === "vue") return { file: `snippet-${index}.vue.ts`, code: scriptOf(snippet) };
  return { file: `snippet-${index}.svelte.ts`, code: RUNES + scriptOf(snippet) };
}

/**
 * Every snippet's problems. One program for all of them (each its own module), but one each for a
 * snippet that augments a module (`declare module`): its narrowed types hold for the whole program.
 */
function checkAll(): Map<number, string[]> {
  for (const [name, text] of Object.entries(SUPPORT)) writeFileSync(join(dir, name), text);
  const files = SNIPPETS.map((snippet, index) => {
    const { file, code } = moduleOf(snippet, index);
    writeFileSync(join(dir, file), code);
    return join(dir, file);
  });
  const shared = files.filter((_file, index) => !SNIPPETS[index]!.code.includes("declare module"));
  const alone = files.filter((file) => !shared.includes(file));
  const problems = new Map<string, string[]>(files.map((file) => [file, []]));
  for (const roots of [shared, ...alone.map((file) => [file])]) {
    const program = ts.createProgram([...roots, join(dir, "shims.d.ts")], OPTIONS);
    for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
      const file = diagnostic.file?.fileName ?? "";
      if (!problems.has(file)) continue;
      if (/\.(vue|svelte)\.ts$/.test(file) && UNUSED.has(diagnostic.code)) continue;
      const line = diagnostic.start === undefined ? 0 : diagnostic.file!.getLineAndCharacterOfPosition(diagnostic.start).line + 1;
      problems.get(file)!.push(`line ${line}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")}`);
    }
  }
  const out = new Map<number, string[]>();
  SNIPPETS.forEach((snippet, index) => {
    const found = problems.get(files[index]!)!;
    if (snippet.language === "svelte") {
      const { warnings } = compile(snippet.code, { filename: `Snippet${index}.svelte`, generate: "client" });
      found.push(...warnings.map((warning) => `svelte: ${warning.message}`));
    }
    out.set(index, found);
  });
  return out;
}

let problems: Map<number, string[]> | undefined;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the snippets of docs/js.md and js/README.md", () => {
  it("test_every_framework_has_its_snippets_checked", () => {
    // A heading or fence renamed must not drop a framework's snippets from the check silently.
    const all = SNIPPETS.map((snippet) => snippet.code).join("\n");
    const entries = ["refetch-sse/react", "refetch-sse/vue", "refetch-sse/svelte", "refetch-sse/solid", "refetch-sse/swr", "refetch-sse/query-updates"];
    for (const entry of [...entries, "@tanstack/query-db-collection"]) {
      expect(all, entry).toContain(`"${entry}"`);
    }
    expect(SNIPPETS.filter((snippet) => snippet.language === "svelte").length).toBeGreaterThanOrEqual(3);
    expect(SNIPPETS.filter((snippet) => snippet.language === "vue").length).toBeGreaterThanOrEqual(2);
  });

  it.each(SNIPPETS.map((snippet, index) => [snippet.name, snippet, index] as const))(
    "test_the_snippet_at_%s_type_checks",
    (_name, _snippet, index) => {
      problems ??= checkAll();
      expect(problems.get(index)).toEqual([]);
    },
    // The first one type-checks every snippet (about 20 s alone, more on a busy machine).
    120_000,
  );
});
