// The bundle budget (scripts/size.mjs measures; `npm run size` prints the table): the
// framework-free stream client and the query-invalidator entry (the invalidation core, issue 16)
// stay under 6 KB min+gzip, and each adapter stays thin, a small layer over
// refetch-sse/query-updates (the core plus the stream wiring) that it bundles. The former names
// query-core and query re-export those two entries and are not measured apart.
import { describe, expect, it } from "vitest";

// @ts-expect-error: a plain .mjs script, without types
import { measure } from "../scripts/size.mjs";

type Sizes = Record<string, { min: number; gzip: number }>;

describe("bundle size (esbuild --minify, gzip -9, frameworks external)", () => {
  it("test_the_stream_client_is_under_6_kb_and_every_adapter_adds_under_1_kb_to_the_core", async () => {
    const sizes = (await measure()) as Sizes;
    console.log(Object.entries(sizes).map(([entry, { gzip }]) => `${entry} ${(gzip / 1024).toFixed(2)} KB`).join(", "));
    expect(sizes["refetch-sse"]!.gzip).toBeLessThan(6 * 1024);
    const core = sizes["refetch-sse/query-updates"]!.gzip;
    for (const adapter of ["react", "vue", "svelte", "solid"]) {
      expect(sizes[`refetch-sse/${adapter}`]!.gzip - core, adapter).toBeLessThan(1024);
    }
    // SWR has its own key invalidator instead of the TanStack one, over the same stream client.
    // 2.5 KB since issue 24 (was 2 KB): the key invalidator also tracks which keys are shown
    // (watching.ts, the stream's watch=), 0.35 KB that the 1.9 KB it had left no room for.
    expect(sizes["refetch-sse/swr"]!.gzip - sizes["refetch-sse"]!.gzip).toBeLessThan(2.5 * 1024);
  });

  it("test_the_query_invalidator_entry_is_under_6_kb", async () => {
    // Issue 16's budget: the invalidation core alone, without the stream it is fed by.
    const sizes = (await measure()) as Sizes;
    expect(sizes["refetch-sse/query-invalidator"]!.gzip).toBeLessThan(6 * 1024);
  });
});
