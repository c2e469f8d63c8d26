// After a deploy, against the real Python server (test/servers/deploy.py), stopped with SIGTERM and
// started again: the stream comes back on the server's drain schedule, not on its error backoff,
// and the change made while the server was down is shown.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import type { UpdateEvent } from "../src/protocol.js";
import { UpdateStream } from "../src/stream/stream.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const dir = mkdtempSync(join(tmpdir(), "refetch-deploy-"));
const state = join(dir, "state.json");
process.env.REFETCH_DEPLOY_STATE = state;
const python = new PythonServer(".venv/bin/python js/test/servers/deploy.py");

const waitFor = (check: () => void | Promise<void>, timeout = 15_000) => vi.waitFor(check, { timeout, interval: 20 });

describe.skipIf(!serverAvailable())("a restart of the real server", () => {
  beforeAll(async () => {
    writeFileSync(state, JSON.stringify(["1"]));
    await python.start();
  }, 30_000);

  afterAll(async () => {
    await python.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 15_000);

  it("test_a_drained_stream_comes_back_on_the_servers_schedule_not_its_error_backoff", async () => {
    const attempts: number[] = [];
    const counting: typeof fetch = (input, init) => {
      attempts.push(Date.now());
      return globalThis.fetch(input, init);
    };
    const events: UpdateEvent[] = [];
    const stream = new UpdateStream({
      url: `${python.base}/api/updates`,
      types: ["projects"],
      fetch: counting,
      // The top of every draw: the error backoff (the server's retry: 30 s) would wait ~30 s.
      random: () => 0.999,
      backoff: { maxMs: 60_000 },
      logger: { warn: () => {}, error: console.error, info: () => {} },
    });
    stream.subscribe((event) => events.push(event));
    stream.start();
    try {
      await waitFor(() => expect(stream.status).toBe("open"));
      await python.stop(); // SIGTERM: the server drains
      // It said when to come back: within its drain window (1 s), from an eighth of it.
      const notice = stream.log.find((frame) => frame.event === "reconnect");
      expect(notice, JSON.stringify(stream.log)).toBeDefined();
      const delay = (JSON.parse(notice!.data) as { delay: number }).delay;
      expect(delay).toBeGreaterThanOrEqual(125);
      expect(delay).toBeLessThanOrEqual(1000);
      // A change while it is down, in the state the next server reads.
      writeFileSync(state, JSON.stringify(["1", "2"]));
      // While it is down the client keeps trying, a step (250-500 ms) apart: six refused attempts
      // take about 3.5 s. On the error backoff they would take half a minute (doubling from the
      // notice's retry:, as a client that ignores the notice but honours retry: does), or
      // minutes (from the hello's 30 s, as a client of a server without the notice does).
      const before = attempts.length;
      await waitFor(() => expect(attempts.length - before).toBeGreaterThanOrEqual(6));
      expect(stream.status).toBe("reconnecting");
      await python.start();
      await waitFor(() => expect(stream.status).toBe("open"));
      // Another server run cannot resume the cursor: everything is refetched, the change shown.
      expect(events).toContainEqual(expect.objectContaining({ kind: "invalidate-all" }));
      const shown = (await (await fetch(`${python.base}/api/projects`)).json()) as string[];
      expect(shown).toEqual(["1", "2"]);
    } finally {
      stream.close();
    }
  }, 60_000);
});
