import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { svelte } from "@sveltejs/vite-plugin-svelte";
import solid from "vite-plugin-solid";
import { configDefaults, defineConfig, type TestProjectInlineConfiguration } from "vitest/config";

const here = dirname(fileURLToPath(import.meta.url));

// The supported range's ends (package.json peerDependencies): the devDependencies are the newest
// react-query with React 19; each compat/<cell> has its own node_modules with an older pair, and
// its tests see only that pair (every package in the cell resolves its peers inside the cell).
// React 19 needs react-query >= 5.52.1 (its own peer range), so 5.32 is tested with React 18 and
// 5.52.1 is the oldest pair with React 19.
const CELLS = ["rq-5.32-react-18", "rq-5.52-react-19", "rq-latest-react-18"];
const PER_CELL = ["test/react.test.tsx", "test/query-core.test.ts", "test/model.test.tsx", "test/matrix.test.ts", "test/zz-probe.test.ts"];
// Every specifier the tests and src import from the aliased packages, resolved inside the cell.
const ALIASED = [
  "react",
  "react/jsx-runtime",
  "react/jsx-dev-runtime",
  "react-dom",
  "react-dom/client",
  "@tanstack/react-query",
  "@tanstack/query-core",
  "@testing-library/react",
];

// Test files that run only in their framework's own project.
const OWN_PROJECT = ["test/solid.test.tsx", "test/svelte.test.ts"];

async function cell(name: string): Promise<TestProjectInlineConfiguration> {
  const dir = resolve(here, "compat", name);
  if (!existsSync(resolve(dir, "node_modules"))) {
    throw new Error(`compat/${name} is not installed: run \`npm run compat\` in js/ (npm test does it first)`);
  }
  const { default: resolveInCell } = (await import(pathToFileURL(resolve(dir, "resolve.mjs")).href)) as {
    default: (specifier: string) => string;
  };
  return {
    extends: true,
    resolve: {
      alias: ALIASED.map((specifier) => ({
        find: new RegExp(`^${specifier.replace(/[/.]/g, "\\$&")}$`),
        replacement: fileURLToPath(resolveInCell(specifier)),
      })),
    },
    test: { name, include: PER_CELL, env: { REFETCH_MATRIX_CELL: name } },
  };
}

export default defineConfig({
  // The examples import the package by name, as an app does (tsconfig.json "paths" says the same).
  resolve: {
    alias: [
      { find: /^refetch-sse$/, replacement: resolve(here, "src/index.ts") },
      { find: /^refetch-sse\/query-invalidator$/, replacement: resolve(here, "src/query-invalidator.ts") },
      { find: /^refetch-sse\/query-updates$/, replacement: resolve(here, "src/query-updates.ts") },
      { find: /^refetch-sse\/query-core$/, replacement: resolve(here, "src/query-core.ts") },
      { find: /^refetch-sse\/query$/, replacement: resolve(here, "src/query.ts") },
    ],
  },
  test: {
    reporters: ["default", "./test/summary-reporter.ts"],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: { name: "rq-latest-react-19", include: ["test/**/*.test.{ts,tsx}"], exclude: [...configDefaults.exclude, ...OWN_PROJECT] },
      },
      // Solid and Svelte components need their compiler (and the browser builds of the framework).
      { extends: true, plugins: [solid()], test: { name: "solid", include: ["test/solid.test.tsx"], environment: "happy-dom" } },
      {
        extends: true,
        plugins: [svelte({ configFile: false })],
        resolve: { conditions: ["browser"] },
        test: { name: "svelte", include: ["test/svelte.test.ts"], environment: "happy-dom" },
      },
      ...(await Promise.all(CELLS.map(cell))),
    ],
  },
});
