// The package as someone else gets it: `npm pack` (whose prepack builds dist/), installed by name
// into a fresh project, then loaded with import and require and type-checked under
// moduleResolution node10 (typesVersions) and bundler.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

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
    const peers = ["@tanstack/vue-query", "vue", "@tanstack/svelte-query", "svelte", "@tanstack/solid-query", "solid-js", "swr", "react"];
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
});
