// Entry `refetch-sse/query`: the former name of `refetch-sse/query-updates`, kept for one release
// (docs/js.md, "Former entry names"); it will be removed in the next one.
export * from "./query-updates.js";
