// The react-query client of test/servers/declared.py, as orval generates it by default (its
// fetch client; only the base URL comes from the test, through fetcher.ts).
module.exports = {
  declared: {
    input: "./openapi.json",
    output: {
      target: "./client.ts",
      client: "react-query",
      httpClient: "fetch",
      prettier: false,
      override: { mutator: { path: "./fetcher.ts", name: "fetcher" } },
    },
  },
};
