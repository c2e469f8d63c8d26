// One console warning per outage, not per attempt, the way every adapter opens its stream: through
// the session (`queryUpdates(client).connect()`, what the React, Vue, Svelte and Solid adapters call;
// SWR's session is the same class), shared by two tabs (Node's real BroadcastChannel, the FakeLocks
// of helpers.ts for navigator.locks), with the default logger (the console), across a restart of
// the real Python server. integration.test.ts checks a bare UpdateStream the same way.
import { QueryClient } from "@tanstack/query-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import { queryUpdates } from "../src/query-updates.js";
import { FakeLocks } from "./helpers.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const python = new PythonServer();
const waitFor = (check: () => void | Promise<void>) => vi.waitFor(check, { timeout: 15_000, interval: 20 });

describe.skipIf(!serverAvailable())("an outage of the real server, seen by two tabs sharing one stream", () => {
  beforeAll(() => python.start(), 30_000);
  afterAll(() => python.stop(), 15_000);

  /** Two tabs on one shared stream, the console spied on; `run` gets them and the attempt count. */
  async function twoTabs(run: (tabs: Tab[], attempts: () => number) => Promise<void>): Promise<void> {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const info = vi.spyOn(console, "info").mockImplementation(() => {});
    const locks = new FakeLocks();
    let attempts = 0;
    const counting: typeof fetch = (input, init) => {
      attempts++;
      return globalThis.fetch(input, init);
    };
    const tabs = [new QueryClient(), new QueryClient()].map((client) => {
      const updates = queryUpdates(client);
      const disconnect = updates.connect({
        url: `${python.base}/api/updates`,
        locks,
        fetch: counting,
        backoff: { initialMs: 100, maxMs: 500 },
      });
      return { updates, disconnect };
    });
    try {
      for (const { updates } of tabs) await waitFor(() => expect(updates.status).toBe("open"));
      expect(tabs.map(({ updates }) => updates.source!.constructor.name)).toEqual(["SharedUpdateStream", "SharedUpdateStream"]);
      expect(attempts).toBe(1); // one connection for both tabs
      await run(tabs, () => attempts);
    } finally {
      for (const { disconnect } of tabs) disconnect();
      warn.mockRestore();
      info.mockRestore();
    }
  }

  const ours = (level: "warn" | "info") =>
    vi.mocked(console[level]).mock.calls.filter((call) => String(call[0]).startsWith("refetch:"));

  it("test_an_outage_is_one_console_warning_and_one_info_for_all_tabs", async () => {
    await twoTabs(async (tabs, attempts) => {
      await python.stop();
      // Several attempts fail while the server is down (each was a warning with a stack trace).
      await waitFor(() => expect(attempts()).toBeGreaterThanOrEqual(6));
      await python.start();
      for (const { updates } of tabs) await waitFor(() => expect(updates.status).toBe("open"));
      expect(ours("warn"), JSON.stringify(ours("warn"))).toHaveLength(1);
      expect(ours("warn")[0]).toHaveLength(1); // a message, no Error object (no stack trace)
      expect(ours("info")).toHaveLength(1);
      expect(String(ours("info")[0]![0])).toMatch(/open again after \d+ failed attempts/);
    });
  }, 40_000);

  it("test_a_tab_that_takes_over_during_the_outage_warns_once_more", async () => {
    await twoTabs(async (tabs, attempts) => {
      await python.stop();
      await waitFor(() => expect(attempts()).toBeGreaterThanOrEqual(3));
      tabs[0]!.disconnect(); // the leader's tab goes away; the other one connects itself
      const before = attempts();
      await waitFor(() => expect(attempts()).toBeGreaterThanOrEqual(before + 3));
      await python.start();
      await waitFor(() => expect(tabs[1]!.updates.status).toBe("open"));
      expect(ours("warn"), JSON.stringify(ours("warn"))).toHaveLength(2);
      expect(ours("info")).toHaveLength(1);
    });
  }, 40_000);
});

interface Tab {
  updates: ReturnType<typeof queryUpdates>;
  disconnect: () => void;
}
