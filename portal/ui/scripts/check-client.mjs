// Fails when the committed API client (src/client), schema (openapi.json) or schema tags
// (src/refetch-tags.ts, what each query reads) is out of date with the portal's FastAPI app:
// dumps the schema again, generates into a temporary folder, compares.
// Fix with `npm run generate` and commit the result.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ui = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repo = resolve(ui, "../..");
const tmp = mkdtempSync(join(tmpdir(), "portal-client-"));

function files(root) {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(root, path));
    }
  };
  walk(root);
  return out.sort();
}

try {
  const schema = execFileSync(join(repo, ".venv/bin/python"), ["portal/ui/scripts/dump_openapi.py"], {
    cwd: repo,
    encoding: "utf8",
  });
  const freshSchema = join(tmp, "openapi.json");
  writeFileSync(freshSchema, schema);
  const freshClient = join(tmp, "client");
  execFileSync(join(ui, "node_modules/.bin/openapi-ts"), [], {
    cwd: ui,
    env: { ...process.env, OPENAPI_TS_INPUT: freshSchema, OPENAPI_TS_OUTPUT: freshClient },
    stdio: ["ignore", "ignore", "inherit"],
  });

  const freshTags = join(tmp, "refetch-tags.ts");
  execFileSync(join(repo, ".venv/bin/refetch"), ["tags", freshSchema, "-o", freshTags], { stdio: ["ignore", "ignore", "inherit"] });

  const problems = [];
  if (readFileSync(join(ui, "openapi.json"), "utf8") !== schema) problems.push("openapi.json");
  const tags = join(ui, "src/refetch-tags.ts");
  if (!existsSync(tags) || readFileSync(tags, "utf8") !== readFileSync(freshTags, "utf8")) problems.push("src/refetch-tags.ts");
  const committed = join(ui, "src/client");
  const a = files(committed);
  const b = files(freshClient);
  for (const name of new Set([...a, ...b])) {
    if (!a.includes(name)) problems.push(`src/client/${name} (missing)`);
    else if (!b.includes(name)) problems.push(`src/client/${name} (no longer generated)`);
    else if (readFileSync(join(committed, name), "utf8") !== readFileSync(join(freshClient, name), "utf8")) {
      problems.push(`src/client/${name}`);
    }
  }
  if (problems.length) {
    console.error(
      `portal/ui: the generated API client or schema tags are out of date with the portal's OpenAPI schema:\n  ${problems.join("\n  ")}\n` +
        "Run `cd portal/ui && npm run generate` and commit the result.",
    );
    process.exit(1);
  }
  console.log("portal/ui: the API client and schema tags match the portal's OpenAPI schema");
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
