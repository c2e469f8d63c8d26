// Installs each cell of the version matrix (compat/<cell>/) whose node_modules is missing or older
// than its lockfile: `npm test` runs it first, so the matrix needs no step of its own.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
for (const name of readdirSync(here)) {
  const dir = join(here, name);
  const lock = join(dir, "package-lock.json");
  if (!existsSync(lock)) continue;
  const stamp = join(dir, "node_modules", ".package-lock.json");
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(lock).mtimeMs) continue;
  console.log(`refetch: installing the version matrix cell compat/${name}`);
  execFileSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: dir, stdio: "inherit" });
}
