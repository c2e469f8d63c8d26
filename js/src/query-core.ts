// Entry `refetch-sse/query-core`: the former name of `refetch-sse/query-invalidator`, kept for one
// release (docs/js.md, "Former entry names"); it will be removed in the next one.
export * from "./query-invalidator.js";
