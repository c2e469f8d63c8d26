// The public surface, spelled out: removing or renaming an export must be a visible decision.
import { readFileSync } from "node:fs";

import { describe, expect, it } from "vitest";

import * as core from "../src/index.js";
import * as queryCore from "../src/query-core.js";
import * as react from "../src/react.js";

describe("public API", () => {
  it("test_core_exports", () => {
    expect(Object.keys(core).sort()).toEqual([
      "CURSOR_HEADER",
      "CursorTracker",
      "SharedUpdateStream",
      "UpdateStream",
      "compareCursors",
      "createUpdateStream",
      "fullJitterDelay",
      "parseHello",
      "parseUpdates",
    ]);
  });

  it("test_query_core_exports", () => {
    expect(Object.keys(queryCore).sort()).toEqual(["CursorTracker", "QueryInvalidator", "QueryUpdates", "queryUpdates"]);
  });

  it("test_react_exports", () => {
    expect(Object.keys(react).sort()).toEqual([
      "CursorTracker",
      "QueryInvalidator",
      "UpdatesProvider",
      "useAutoRefetch",
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
      ["./query-core", "query-core"],
      ["./react", "react"],
    ]) {
      expect(pkg.exports[entry!]).toEqual({ types: `./dist/${file}.d.ts`, import: `./dist/${file}.js`, default: `./dist/${file}.js` });
    }
    expect(pkg.typesVersions).toEqual({ "*": { "query-core": ["./dist/query-core.d.ts"], react: ["./dist/react.d.ts"] } });
    expect(pkg.scripts.prepack).toBe("npm run build");
  });
});
