// What each entry costs an app: bundled alone from src/ with esbuild (minified, ESM, browser), the
// framework packages left out (they are the app's own), then gzip -9 (refetch-sse has no runtime
// dependency: its SSE parser is src/stream/sse.ts). `npm run size` prints the table; test/size.test.ts
// holds the budget.
import { gzipSync } from "node:zlib";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
export const ENTRIES = { ".": "index", "/query-invalidator": "query-invalidator", "/query-updates": "query-updates", "/react": "react", "/vue": "vue", "/svelte": "svelte", "/solid": "solid", "/swr": "swr" };
const EXTERNAL = ["@tanstack/*", "react", "react/*", "react-dom", "vue", "svelte", "svelte/*", "solid-js", "solid-js/*", "swr"];

/** { entry: { min, gzip } } in bytes, for every subpath export. */
export async function measure() {
  const sizes = {};
  for (const [subpath, file] of Object.entries(ENTRIES)) {
    const result = await build({
      entryPoints: [resolve(here, "..", "src", `${file}.${file === "react" ? "tsx" : "ts"}`)],
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      external: EXTERNAL,
      write: false,
      logLevel: "silent",
    });
    const code = result.outputFiles[0].contents;
    sizes[`refetch-sse${subpath === "." ? "" : subpath}`] = { min: code.length, gzip: gzipSync(code, { level: 9 }).length };
  }
  return sizes;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sizes = await measure();
  console.log("| entry | min | min+gzip |\n| --- | ---: | ---: |");
  for (const [entry, { min, gzip }] of Object.entries(sizes)) {
    console.log(`| \`${entry}\` | ${(min / 1024).toFixed(1)} KB | ${(gzip / 1024).toFixed(2)} KB |`);
  }
}
