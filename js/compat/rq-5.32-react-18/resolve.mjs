// Resolves a package as Node's ESM loader does from inside this cell (vitest.config.ts uses it
// to point the tests' imports at this cell's copies, the same files the cell's packages load).
export default (specifier) => import.meta.resolve(specifier);
