// The public surface, spelled out: removing or renaming an export must be a visible decision.
import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import * as core from "../src/index.js";
import * as query from "../src/query.js";
import * as queryCore from "../src/query-core.js";
import * as queryInvalidator from "../src/query-invalidator.js";
import * as queryUpdates from "../src/query-updates.js";
import * as react from "../src/react.js";
import * as solid from "../src/solid.js";
import * as swr from "../src/swr.js";
import * as vue from "../src/vue.js";

describe("public API", () => {
  it("test_core_exports", () => {
    expect(Object.keys(core).sort()).toEqual([
      "CURSOR_HEADER",
      "CursorTracker",
      "NOTIFIED_HEADER",
      "SharedUpdateStream",
      "UpdateStream",
      "compareCursors",
      "createUpdateStream",
      "fullJitterDelay",
      "parseHello",
      "parseUpdates",
    ]);
  });

  it("test_query_invalidator_and_query_updates_exports", () => {
    // The invalidation core only: nothing here opens a stream (that is refetch-sse/query-updates).
    expect(Object.keys(queryInvalidator).sort()).toEqual(["CursorTracker", "QueryInvalidator", "fromSchema"]);
    expect(Object.keys(queryUpdates).sort()).toEqual(["CursorTracker", "QueryInvalidator", "QueryUpdates", "fromSchema", "queryUpdates"]);
    expect(queryUpdates.QueryInvalidator).toBe(queryInvalidator.QueryInvalidator);
  });

  it("test_the_former_entry_names_are_aliases_of_the_new_ones", () => {
    // refetch-sse/query-core and refetch-sse/query, kept for one release (docs/js.md, "Former entry names").
    expect(queryCore).toEqual(queryInvalidator);
    expect(query).toEqual(queryUpdates);
    expect(queryCore.QueryInvalidator).toBe(queryInvalidator.QueryInvalidator);
    expect(query.queryUpdates).toBe(queryUpdates.queryUpdates);
  });

  it("test_react_exports", () => {
    expect(Object.keys(react).sort()).toEqual([
      "CursorTracker",
      "QueryInvalidator",
      "UpdatesProvider",
      "fromSchema",
      "useAutoRefetch",
      "useSSEUpdates",
      "useUpdateLog",
      "useUpdateStatus",
    ]);
  });

  it("test_adapter_exports", () => {
    const hooks = ["CursorTracker", "fromSchema", "useAutoRefetch", "useSSEUpdates", "useUpdateLog", "useUpdateStatus"];
    expect(Object.keys(vue).sort()).toEqual(["CursorTracker", "UpdatesPlugin", ...hooks.slice(1)].sort());
    // refetch-sse/svelte: in test/svelte.test.ts (svelte-query needs the Svelte compiler to load).
    expect(Object.keys(solid).sort()).toEqual(["UpdatesProvider", ...hooks].sort());
    expect(Object.keys(swr).sort()).toEqual([
      "SWRUpdates",
      "UpdatesProvider",
      "autoRefetch",
      "swrUpdates",
      "useSSEUpdates",
      "useUpdateLog",
      "useUpdateStatus",
    ]);
  });

  it("test_package_json_exports_point_at_the_built_entry_points", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    expect(pkg.name).toBe("refetch-sse");
    expect(pkg.type).toBe("module");
    for (const [entry, file] of [
      [".", "index"],
      ["./query-invalidator", "query-invalidator"],
      ["./query-updates", "query-updates"],
      ["./query-core", "query-core"],
      ["./query", "query"],
      ["./react", "react"],
      ["./vue", "vue"],
      ["./svelte", "svelte"],
      ["./solid", "solid"],
      ["./swr", "swr"],
    ]) {
      expect(pkg.exports[entry!]).toEqual({ types: `./dist/${file}.d.ts`, import: `./dist/${file}.js`, default: `./dist/${file}.js` });
    }
    const entries = ["query-invalidator", "query-updates", "query-core", "query", "react", "vue", "svelte", "solid", "swr"];
    expect(pkg.typesVersions).toEqual({ "*": Object.fromEntries(entries.map((e) => [e, [`./dist/${e}.d.ts`]])) });
    // Optional, so npm installs no framework a user did not ask for.
    for (const peer of Object.keys(pkg.peerDependencies)) expect(pkg.peerDependenciesMeta[peer]).toEqual({ optional: true });
    expect(pkg.scripts.prepack).toBe("npm run build");
  });
});
