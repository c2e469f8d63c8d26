import { defineConfig } from "@hey-api/openapi-ts";

// The typed client of the portal API, generated from the schema FastAPI produces
// (`npm run generate`; `npm run check-client` fails when the committed one is out of date).
export default defineConfig({
  input: process.env.OPENAPI_TS_INPUT ?? "./openapi.json",
  output: { path: process.env.OPENAPI_TS_OUTPUT ?? "./src/client" },
  plugins: [
    "@hey-api/typescript",
    "@hey-api/client-fetch",
    "@hey-api/sdk",
    { name: "@tanstack/react-query", queryKeys: { tags: true } },
  ],
});
