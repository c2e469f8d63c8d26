// The package as someone else gets it: `npm pack` (whose prepack builds dist/), installed by name
// into a fresh project, then loaded with import and require and type-checked under
// moduleResolution node10 (typesVersions) and bundler.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const js = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const tsc = join(js, "node_modules", "typescript", "bin", "tsc");
let project = "";

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("npm pack, installed into a fresh project", () => {
  beforeAll(() => {
    project = mkdtempSync(join(tmpdir(), "refetch-sse-consumer-"));
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", project], js)) as Array<{
      filename: string;
      files: Array<{ path: string }>;
    }>;
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    // The peers come from this checkout's node_modules cache of the registry (same versions).
    run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--prefer-offline", join(project, packed[0]!.filename), "@tanstack/query-core@5.108.0"],
      project,
    );
    writeFileSync(join(project, "files.json"), JSON.stringify(packed[0]!.files.map((f) => f.path)));
  }, 180_000);

  afterAll(() => {
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it("test_the_tarball_ships_dist_with_use_client_on_the_react_entry", () => {
    const files = JSON.parse(readFileSync(join(project, "files.json"), "utf8")) as string[];
    for (const entry of ["index", "query-invalidator", "query-updates", "query-core", "query", "react"]) {
      expect(files).toContain(`dist/${entry}.js`);
      expect(files).toContain(`dist/${entry}.d.ts`);
    }
    for (const entry of ["vue", "svelte", "solid", "swr"]) {
      expect(files).toContain(`dist/${entry}.js`);
      expect(files).toContain(`dist/${entry}.d.ts`);
    }
    for (const entry of ["react", "swr"]) {
      const code = readFileSync(join(project, "node_modules", "refetch-sse", "dist", `${entry}.js`), "utf8");
      expect(code.split("\n")[0]).toBe('"use client";');
    }
  });

  it("test_no_framework_is_installed_with_it_every_peer_is_optional", () => {
    // npm installs required peers by itself: a React (or plain) user must get none of the others.
    for (const peer of ["vue", "@tanstack/vue-query", "svelte", "@tanstack/svelte-query", "solid-js", "@tanstack/solid-query", "swr", "react"]) {
      expect(existsSync(join(project, "node_modules", peer)), peer).toBe(false);
    }
  });

  it("test_it_loads_by_name_with_import_and_require", () => {
    const imported = run(
      "node",
      [
        "-e",
        'Promise.all(["refetch-sse", "refetch-sse/query-invalidator", "refetch-sse/query-updates", "refetch-sse/query-core", "refetch-sse/query"].map((name) => import(name)))' +
          ".then(([m, i, u, c, q]) => console.log(typeof m.createUpdateStream, typeof i.QueryInvalidator, typeof u.queryUpdates, c.QueryInvalidator === i.QueryInvalidator, q.queryUpdates === u.queryUpdates))",
      ],
      project,
    );
    // The former names load the very same modules as the new ones.
    expect(imported.trim()).toBe("function function function true true");
    // require() of the ESM build through the "default" condition (Node >= 20.19 loads ESM from require).
    const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
    if (major > 20 || (major === 20 && minor >= 19)) {
      const required = run("node", ["-e", 'console.log(typeof require("refetch-sse").UpdateStream)'], project);
      expect(required.trim()).toBe("function");
    }
  });

  it("test_types_resolve_under_node10_and_bundler_module_resolution", () => {
    writeFileSync(
      join(project, "use.ts"),
      [
        'import { createUpdateStream, type StreamStatus } from "refetch-sse";',
        'import { QueryInvalidator, type UpdatesMeta } from "refetch-sse/query-invalidator";',
        'import { queryUpdates, type ConnectOptions } from "refetch-sse/query-updates";',
        'import { QueryInvalidator as FormerInvalidator, type UpdatesMeta as FormerMeta } from "refetch-sse/query-core";',
        'import { queryUpdates as formerUpdates, type ConnectOptions as FormerConnect } from "refetch-sse/query";',
        'const status: StreamStatus = "error";',
        'const meta: UpdatesMeta = { updates: ["projects", { type: "projects", keys: [1] }] };',
        'const connect: ConnectOptions = { url: "/updates" };',
        'const former: [FormerMeta, FormerConnect] = [meta, connect];',
        "export { createUpdateStream, QueryInvalidator, queryUpdates, FormerInvalidator, formerUpdates, status, meta, connect, former };",
        "",
      ].join("\n"),
    );
    for (const moduleResolution of ["node10", "bundler"]) {
      const module = moduleResolution === "node10" ? "commonjs" : "esnext";
      const out = run(
        "node",
        [tsc, "--noEmit", "--strict", "--skipLibCheck", "--module", module, "--moduleResolution", moduleResolution, "use.ts"],
        project,
      );
      expect(out).toBe("");
    }
  });
});

describe("npm pack, installed with the frameworks next to it", () => {
  let app = "";

  beforeAll(() => {
    app = mkdtempSync(join(tmpdir(), "refetch-sse-frameworks-"));
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", app], js)) as Array<{ filename: string }>;
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "frameworks", private: true, type: "module" }));
    // The devDependencies' versions, from this checkout's npm cache.
    const pkg = JSON.parse(readFileSync(join(js, "package.json"), "utf8")) as { devDependencies: Record<string, string> };
    const peers = [
      "@tanstack/vue-query",
      "vue",
      "@tanstack/svelte-query",
      "svelte",
      "@tanstack/solid-query",
      "solid-js",
      "swr",
      "react",
      "@tanstack/react-query",
      "@types/react",
    ];
    run(
      "npm",
      ["install", "--no-audit", "--no-fund", "--prefer-offline", join(app, packed[0]!.filename), ...peers.map((p) => `${p}@${pkg.devDependencies[p]}`)],
      app,
    );
  }, 240_000);

  afterAll(() => {
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it("test_the_vue_solid_and_swr_entries_load_by_name_in_node", () => {
    // What the issue started from: a Vue app importing the invalidator failed to resolve the
    // module. (The Svelte entry needs the Svelte compiler for svelte-query's own .svelte files.)
    const script = [
      'const vue = await import("refetch-sse/vue");',
      'const solid = await import("refetch-sse/solid");',
      'const swr = await import("refetch-sse/swr");',
      "console.log(typeof vue.UpdatesPlugin.install, typeof solid.useAutoRefetch, typeof swr.autoRefetch);",
    ].join("\n");
    expect(run("node", ["--input-type=module", "-e", script], app).trim()).toBe("function function function");
  });

  it("test_every_adapter_type_checks_by_name_under_bundler_resolution", () => {
    writeFileSync(
      join(app, "use.ts"),
      [
        'import { useAutoRefetch as vue } from "refetch-sse/vue";',
        'import { useAutoRefetch as svelte } from "refetch-sse/svelte";',
        'import { useAutoRefetch as solid } from "refetch-sse/solid";',
        'import { autoRefetch } from "refetch-sse/swr";',
        'export const tags = [vue, svelte, solid, autoRefetch("projects", { keys: [1] })];',
        "",
      ].join("\n"),
    );
    const args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "esnext", "--moduleResolution", "bundler", "use.ts"];
    expect(run("node", [tsc, ...args], app)).toBe("");
  });

  it("test_typos_in_meta_and_use_auto_refetch_are_compile_errors_in_apps_importing_only_their_adapter", () => {
    const files = { ...TYPED_APPS, swr: SWR_TYPED_APP };
    for (const [adapter, code] of Object.entries(files)) writeFileSync(join(app, `typed-${adapter}.ts`), code);
    const args = ["--noEmit", "--strict", "--skipLibCheck", "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler"];
    // One program per app: each registers its own meta on its own query package.
    for (const adapter of Object.keys(files)) {
      let out = "";
      try {
        out = run("node", [tsc, ...args, `typed-${adapter}.ts`], app);
      } catch (error) {
        out = String((error as { stdout?: string }).stdout ?? error);
      }
      // An unused @ts-expect-error (TS2578) is the failure this test exists for.
      expect(out, adapter).toBe("");
    }
  });

  it("test_no_entry_declaration_names_a_package_its_users_may_not_have", () => {
    // The nearest cheap check of "tsc with skipLibCheck: false and only that entry's peers": every
    // bare import reachable from the entry's .d.ts (following its relative imports) is one of its
    // peers. @tanstack/query-core is a dependency of every TanStack adapter package, so their
    // apps have it (npm and yarn hoist it; pnpm users need it listed, see docs/js.md).
    const allowed: Record<string, readonly string[]> = {
      index: [],
      "query-invalidator": ["@tanstack/query-core"],
      "query-updates": ["@tanstack/query-core"],
      react: ["react", "@tanstack/react-query", "@tanstack/query-core"],
      vue: ["vue", "@tanstack/vue-query", "@tanstack/query-core"],
      svelte: ["svelte", "@tanstack/svelte-query", "@tanstack/query-core"],
      solid: ["solid-js", "@tanstack/solid-query", "@tanstack/query-core"],
      swr: ["react", "swr"],
    };
    const dist = join(app, "node_modules", "refetch-sse", "dist");
    for (const [entry, peers] of Object.entries(allowed)) {
      const extra = packagesNamedBy(join(dist, `${entry}.d.ts`)).filter((name) => !peers.includes(name));
      expect(extra, `refetch-sse/${entry}'s .d.ts`).toEqual([]);
    }
  });
});

// What docs/js.md's "Typed meta" promises, in apps that import only their adapter entry (installed
// by name, so `refetch-sse` is an external library as in an app): a misspelt type in `meta`, a key
// of the wrong type and an unknown type in useAutoRefetch are compile errors. Plain .ts files
// checked by tsc (vue-tsc and svelte-check are not devDependencies; the adapters' API is the same
// from a .vue/.svelte script).
const REGISTER = [
  '// The app names the root entry once, so TypeScript loads the module it augments (TS2664 otherwise).',
  'import type {} from "refetch-sse";',
  'declare module "refetch-sse" {',
  '  interface Register {',
  '    updateType: "projects" | "tasks";',
  "  }",
  "}",
];

function typedApp(adapter: string, query: string, body: string[]): string {
  return [
    `import { ${query.split(":")[1]} } from "${query.split(":")[0]}";`,
    `import { useAutoRefetch, type UpdatesMeta } from "refetch-sse/${adapter}";`,
    ...REGISTER,
    `declare module "${query.split(":")[0]}" {`,
    "  interface Register {",
    "    queryMeta: UpdatesMeta;",
    "  }",
    "}",
    "const queryFn = async () => 1;",
    "export function page() {",
    ...body.map((line) => `  ${line}`),
    "}",
    "",
  ].join("\n");
}

const TYPED_APPS: Record<string, string> = {
  react: typedApp("react", "@tanstack/react-query:useQuery", [
    'const q = useQuery({ queryKey: ["p"], queryFn, meta: { updates: ["projects", { type: "tasks", keys: [1, "a"] }] } });',
    "// @ts-expect-error a misspelt type in meta",
    'useQuery({ queryKey: ["p"], queryFn, meta: { updates: ["projetcs"] } });',
    "// @ts-expect-error a key of the wrong type in meta",
    'useQuery({ queryKey: ["p"], queryFn, meta: { updates: [{ type: "tasks", keys: [true] }] } });',
    'useAutoRefetch(q, ["projects", "tasks"], { keys: [1] });',
    "// @ts-expect-error an unknown type",
    'useAutoRefetch(q, "nope");',
    "// @ts-expect-error a key of the wrong type",
    'useAutoRefetch(q, "projects", { keys: [true] });',
  ]),
  vue: typedApp("vue", "@tanstack/vue-query:useQuery", [
    'useQuery({ queryKey: ["p"], queryFn, meta: { updates: ["projects", { type: "tasks", keys: [1, "a"] }] } });',
    "// @ts-expect-error a misspelt type in meta",
    'useQuery({ queryKey: ["p"], queryFn, meta: { updates: ["projetcs"] } });',
    "// @ts-expect-error a key of the wrong type in meta",
    'useQuery({ queryKey: ["p"], queryFn, meta: { updates: [{ type: "tasks", keys: [true] }] } });',
    'useAutoRefetch(["p"], ["projects", "tasks"], { keys: [1] });',
    "// @ts-expect-error an unknown type",
    'useAutoRefetch(["p"], "nope");',
    "// @ts-expect-error a key of the wrong type",
    'useAutoRefetch(["p"], "projects", { keys: [true] });',
  ]),
  solid: typedApp("solid", "@tanstack/solid-query:useQuery", [
    'const q = useQuery(() => ({ queryKey: ["p"], queryFn, meta: { updates: ["projects", { type: "tasks", keys: [1, "a"] }] } }));',
    "// @ts-expect-error a misspelt type in meta",
    'useQuery(() => ({ queryKey: ["p"], queryFn, meta: { updates: ["projetcs"] } }));',
    "// @ts-expect-error a key of the wrong type in meta",
    'useQuery(() => ({ queryKey: ["p"], queryFn, meta: { updates: [{ type: "tasks", keys: [true] }] } }));',
    'useAutoRefetch(q, ["projects", "tasks"], { keys: [1] });',
    "// @ts-expect-error an unknown type",
    'useAutoRefetch(q, "nope");',
    "// @ts-expect-error a key of the wrong type",
    'useAutoRefetch(q, "projects", { keys: [true] });',
  ]),
  svelte: typedApp("svelte", "@tanstack/svelte-query:createQuery", [
    'const q = createQuery(() => ({ queryKey: ["p"], queryFn, meta: { updates: ["projects", { type: "tasks", keys: [1, "a"] }] } }));',
    "// @ts-expect-error a misspelt type in meta",
    'createQuery(() => ({ queryKey: ["p"], queryFn, meta: { updates: ["projetcs"] } }));',
    "// @ts-expect-error a key of the wrong type in meta",
    'createQuery(() => ({ queryKey: ["p"], queryFn, meta: { updates: [{ type: "tasks", keys: [true] }] } }));',
    'useAutoRefetch(q, ["projects", "tasks"], { keys: [1] });',
    "// @ts-expect-error an unknown type",
    'useAutoRefetch(q, "nope");',
    "// @ts-expect-error a key of the wrong type",
    'useAutoRefetch(q, "projects", { keys: [true] });',
  ]),
};

const SWR_TYPED_APP = [
  'import { autoRefetch } from "refetch-sse/swr";',
  ...REGISTER,
  'export const ok = autoRefetch(["projects", "tasks"], { keys: [1, "a"] });',
  "// @ts-expect-error an unknown type",
  'export const unknown = autoRefetch("nope");',
  "// @ts-expect-error a key of the wrong type",
  'export const key = autoRefetch("projects", { keys: [true] });',
  "",
].join("\n");

/** The packages a .d.ts names, through the declarations it imports relatively. */
function packagesNamedBy(entry: string): string[] {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const { fileName } of ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles) {
      if (fileName.startsWith(".")) todo.push(resolve(dirname(file), fileName.replace(/\.js$/, ".d.ts")));
      else packages.add(fileName.startsWith("@") ? fileName.split("/").slice(0, 2).join("/") : fileName.split("/")[0]!);
    }
  }
  return [...packages].sort();
}
