// Which versions this run of the suite really loaded: a cell of the matrix that silently fell
// back to the top-level packages would test nothing new.
import { QueryClient } from "@tanstack/query-core";
import * as reactQuery from "@tanstack/react-query";
import { version as reactVersion } from "react";
import { describe, expect, it } from "vitest";

// The React major each cell must load.
const expected: Record<string, string> = {
  "rq-latest-react-19": "19.",
  "rq-latest-react-18": "18.",
  "rq-5.32-react-18": "18.",
  "rq-5.52-react-19": "19.",
};

describe("the version matrix", () => {
  it("test_this_cell_loads_its_own_react_and_one_tanstack_query", () => {
    const cell = process.env.REFETCH_MATRIX_CELL ?? "rq-latest-react-19";
    expect(reactVersion.startsWith(expected[cell]!), `${cell} loaded React ${reactVersion}`).toBe(true);
    // react-query and query-core are one copy: its QueryClient is query-core's.
    expect(reactQuery.QueryClient).toBe(QueryClient);
    // query.observers became public in 5.32.0, the oldest version this package supports.
    const client = new QueryClient();
    const query = client.getQueryCache().build(client, { queryKey: ["k"] });
    expect(Array.isArray(query.observers)).toBe(true);
  });
});
