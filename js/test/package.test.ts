// The package as someone else gets it: `npm pack` (whose prepack builds dist/), installed by name
// into a fresh project, then loaded with import and require and type-checked under
// moduleResolution node10 (typesVersions) and bundler.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/query-core.js", "dist/react.js", "dist/react.d.ts"]) {
      expect(files).toContain(file);
    }
    const react = readFileSync(join(project, "node_modules", "refetch-sse", "dist", "react.js"), "utf8");
    expect(react.split("\n")[0]).toBe('"use client";');
  });

  it("test_it_loads_by_name_with_import_and_require", () => {
    const imported = run(
      "node",
      ["-e", 'import("refetch-sse").then((m) => import("refetch-sse/query-core").then((q) => console.log(typeof m.createUpdateStream, typeof q.queryUpdates)))'],
      project,
    );
    expect(imported.trim()).toBe("function function");
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
        'import { queryUpdates, type UpdatesMeta } from "refetch-sse/query-core";',
        'const status: StreamStatus = "error";',
        'const meta: UpdatesMeta = { updates: ["projects", { type: "projects", keys: [1] }] };',
        "export { createUpdateStream, queryUpdates, status, meta };",
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
