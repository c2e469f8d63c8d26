// The framework-free example of docs/js.md (examples/plain-page.ts, quoted there verbatim) run
// against the real Python server: a DOM from happy-dom, Node's own fetch, nothing mocked.
import { readFileSync } from "node:fs";

import { Window } from "happy-dom";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import { startProjectsPage } from "../examples/plain-page.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const python = new PythonServer();
const available = serverAvailable();

describe.runIf(available)("the framework-free example page", () => {
  beforeAll(() => python.start(), 30_000);
  afterAll(() => python.stop());

  it("test_docs_quote_the_example_verbatim", () => {
    const docs = readFileSync(new URL("../../docs/js.md", import.meta.url), "utf8");
    const code = readFileSync(new URL("../examples/plain-page.ts", import.meta.url), "utf8");
    expect(docs).toContain("```ts\n" + code + "```\n");
  });

  it("test_the_page_shows_the_projects_and_a_created_one_appears", async () => {
    const window = new Window();
    const root = window.document.createElement("div");
    window.document.body.append(root);
    const stop = startProjectsPage(root as unknown as HTMLElement, python.base);
    try {
      const shown = () => [...root.querySelectorAll("li")].map((li) => li.textContent);
      await vi.waitFor(() => expect(root.querySelector("p")?.textContent).toBe("open"), { timeout: 10_000 });
      const before = shown().length;
      const response = await fetch(`${python.base}/api/projects`, { method: "POST" });
      const { id } = (await response.json()) as { id: string };
      await vi.waitFor(() => expect(shown()).toContain(`project ${id}`), { timeout: 10_000 });
      expect(shown()).toHaveLength(before + 1);
    } finally {
      stop();
      await window.happyDOM.close();
    }
  });
});
