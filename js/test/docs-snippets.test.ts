// The Vue, Solid and SWR snippets of docs/js.md type-check against this checkout, as an app's
// code would (bundler resolution, `refetch-sse/*` mapped to src/, a small ./api module next to
// them). The Svelte snippets are .svelte components: the Svelte compiler must accept them (their
// types would need svelte-check). The framework-free page is run for real by plain-page.test.ts.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { compile } from "svelte/compiler";
import ts from "typescript";
import { afterAll, describe, expect, it } from "vitest";

const js = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const docs = readFileSync(resolve(js, "../docs/js.md"), "utf8");
// Inside js/, so the snippets resolve the frameworks from js/node_modules.
const dir = mkdtempSync(join(js, ".snippets-"));

const API = `
import { CursorTracker } from "refetch-sse";
export const cursors = new CursorTracker();
export async function getProjects(): Promise<string[]> { return []; }
export async function getProject(id: number): Promise<{ id: number }> { return { id }; }
export const fetcher = async (url: string): Promise<string[]> => (await fetch(url)).json();
`;

/** The code blocks of this language under the `## <heading>` section. */
function snippets(heading: string, language: string): string[] {
  const section = docs.split(/^## /m).find((part) => part.startsWith(`${heading}\n`)) ?? "";
  const blocks = [...section.matchAll(new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1]!);
  if (blocks.length === 0) throw new Error(`docs/js.md has no \`\`\`${language} block under "## ${heading}"`);
  return blocks;
}

const snippet = (heading: string, language: string): string => snippets(heading, language)[0]!;

function typeCheck(file: string, code: string, jsx: Partial<ts.CompilerOptions>): string[] {
  writeFileSync(join(dir, "api.ts"), API);
  writeFileSync(join(dir, "vue-shim.d.ts"), 'declare module "*.vue" { const component: import("vue").Component; export default component; }\n');
  writeFileSync(join(dir, file), code);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    paths: { "refetch-sse": [resolve(js, "src/index.ts")], "refetch-sse/*": [resolve(js, "src/*")] },
    ...jsx,
  };
  const program = ts.createProgram([join(dir, file), join(dir, "vue-shim.d.ts")], options);
  return ts
    .getPreEmitDiagnostics(program)
    .filter((diagnostic) => diagnostic.file === undefined || diagnostic.file.fileName.startsWith(dir))
    .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"));
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("docs/js.md snippets", () => {
  it("test_the_vue_snippet_type_checks", () => {
    expect(typeCheck("vue-main.ts", snippet("Vue", "ts"), {})).toEqual([]);
  });

  it("test_the_solid_snippet_type_checks", () => {
    const jsx = { jsx: ts.JsxEmit.Preserve, jsxImportSource: "solid-js" };
    expect(typeCheck("solid-app.tsx", snippet("Solid", "tsx"), jsx)).toEqual([]);
  });

  it("test_the_swr_snippet_type_checks", () => {
    const jsx = { jsx: ts.JsxEmit.ReactJSX };
    expect(typeCheck("swr-app.tsx", snippet("SWR", "tsx"), jsx)).toEqual([]);
  });

  it("test_the_svelte_snippets_compile", () => {
    const blocks = snippets("Svelte", "svelte");
    expect(blocks).toHaveLength(2);
    for (const block of blocks) {
      const { warnings } = compile(block, { filename: "Snippet.svelte", generate: "client" });
      expect(warnings.map((warning) => warning.message)).toEqual([]);
    }
  });
});
