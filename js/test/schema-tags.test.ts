// fromSchema() (docs/js.md, "Tags from the schema"): which query keys it reads, and what it
// derives from them. The key shapes are the generators' own: hey-api's createQueryKey() output
// (as in portal/ui/src/client/@tanstack/react-query.gen.ts) and orval's path strings.
import { QueryClient, QueryObserver } from "@tanstack/react-query";
import { describe, expect, it } from "vitest";

import { fromSchema, QueryInvalidator } from "../src/query-invalidator.js";

const schema = {
  version: 1,
  operations: [
    { id: "listProjects", method: "get", path: "/api/projects", reads: [{ type: "projects" }, { type: "authentication" }] },
    { id: "getMine", method: "get", path: "/api/projects/mine", reads: [{ type: "authentication" }] },
    { id: "getProjectById", method: "get", path: "/api/projects/{project_id}", reads: [{ type: "projects", key: "project_id" }] },
    { id: "streamUpdates", method: "get", path: "/api/updates", reads: [] },
    { id: "search", method: "post", path: "/api/search", reads: [{ type: "projects" }] },
  ],
} as const;
const tags = fromSchema(schema);

describe("fromSchema", () => {
  it("test_hey_api_keys_are_matched_by_operation_id_and_keyed_by_their_path_parameter", () => {
    const key = [{ _id: "getProjectById", baseUrl: "", path: { project_id: 42 }, tags: ["projects"] }];
    expect(tags(key)).toEqual([{ type: "projects", keys: ["42"] }]);
    expect(tags([{ _id: "listProjects", baseUrl: "", query: { page: 2 } }])).toEqual(["projects", "authentication"]);
    // Any spelling of the operationId (hey-api camel-cases FastAPI's default ids).
    expect(tags([{ _id: "list_projects" }])).toEqual(["projects", "authentication"]);
    // A POST query (hey-api generates query options for it too).
    expect(tags([{ _id: "search", body: { q: "x" } }])).toEqual(["projects"]);
  });

  it("test_path_keys_match_templates_literal_segments_first", () => {
    expect(tags(["/api/projects/42", { page: 1 }])).toEqual([{ type: "projects", keys: ["42"] }]);
    expect(tags(["/api/projects/mine"])).toEqual(["authentication"]);
    expect(tags(["/api/projects?page=2"])).toEqual(["projects", "authentication"]);
    expect(tags(["/api/projects/a%20b/"])).toEqual([{ type: "projects", keys: ["a b"] }]);
    expect(tags(["/api/projects/100%"])).toEqual([{ type: "projects", keys: ["100%"] }]);
    // Only GET operations answer a path key.
    expect(tags(["/api/search"])).toBeNull();
  });

  it("test_known_operations_without_reads_unknown_ones_and_other_keys_differ", () => {
    expect(tags([{ _id: "streamUpdates" }])).toEqual([]);
    expect(tags([{ _id: "deletedLastWeek" }])).toBeNull();
    expect(tags(["/api/nothing"])).toBeNull();
    expect(tags(["me"])).toBeUndefined();
    expect(tags([42])).toBeUndefined();
  });

  it("test_an_unknown_version_is_refused_naming_the_fix", () => {
    expect(() => fromSchema({ version: 2, operations: [] })).toThrow(/refetch tags/);
  });

  it("test_explicit_tags_win_over_derived_ones", () => {
    const client = new QueryClient();
    const invalidator = new QueryInvalidator(client, { tags });
    const derived = new QueryObserver(client, { queryKey: ["/api/projects/7"], queryFn: () => 1 });
    const explicit = new QueryObserver(client, { queryKey: ["/api/projects/8"], queryFn: () => 1, meta: { updates: ["images"] } });
    const nothing = new QueryObserver(client, { queryKey: ["/api/projects/9"], queryFn: () => 1, meta: { updates: [] } });
    const hooked = new QueryObserver(client, { queryKey: ["/api/projects/10"], queryFn: () => 1 });
    const offs = [derived, explicit, nothing, hooked].map((observer) => observer.subscribe(() => {}));
    invalidator.tagObserver(hooked.refetch, ["compute"]); // what useAutoRefetch does
    const [seven, eight, nine, ten] = [7, 8, 9, 10].map((id) => client.getQueryCache().find({ queryKey: [`/api/projects/${id}`] })!);
    expect(invalidator.tagsOf(seven!)).toEqual([{ type: "projects", keys: ["7"] }]);
    expect(invalidator.tagsOf(eight!)).toEqual([{ type: "images" }]);
    expect(invalidator.tagsOf(nine!)).toEqual([]); // `updates: []`: depends on nothing, on purpose
    expect(invalidator.tagsOf(ten!)).toEqual([{ type: "compute" }]);
    invalidator.useTags(undefined);
    expect(invalidator.tagsOf(seven!)).toEqual([]);
    for (const off of offs) off();
    client.clear();
  });
});
