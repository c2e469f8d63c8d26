// The stream follows sign-in (docs/js.md, "Sign-in"): against a real Python server with sign-in
// (test/servers/sign_in.py), a stream answered 401 opens by itself once the app has signed in,
// without `reconnect()` and without `enabled`: the app's own request that succeeds after the
// sign-in is the signal.
import { QueryClient, QueryObserver } from "@tanstack/react-query";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

import type { StreamStatus, UpdateEvent } from "../src/protocol.js";
import { queryUpdates } from "../src/query-updates.js";
import { PythonServer, serverAvailable } from "./python-server.js";

const python = new PythonServer(".venv/bin/python js/test/servers/sign_in.py");
const cleanups: Array<() => void> = [];
const waitFor = (check: () => void) => vi.waitFor(check, { timeout: 15_000, interval: 20 });
const quiet = { warn: () => {}, error: console.error };

describe.skipIf(!serverAvailable())("the stream follows sign-in", () => {
  beforeAll(() => python.start(), 30_000);
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });
  afterAll(() => python.stop(), 15_000);

  async function signedOutApp(token: string) {
    const auth = { Authorization: `Bearer ${token}` };
    const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
    const session = queryUpdates(client, { logger: quiet });
    const statuses: StreamStatus[] = [];
    const events: UpdateEvent[] = [];
    const disconnect = session.connect({ url: `${python.base}/api/updates`, headers: () => auth, logger: quiet });
    session.source!.onStatus((status) => statuses.push(status));
    session.source!.subscribe((event) => events.push(event));
    // The page's "who am I" query: 401 while signed out.
    const me = new QueryObserver(client, {
      queryKey: ["me"],
      queryFn: async () => {
        const response = await fetch(`${python.base}/api/me`, { headers: auth });
        if (!response.ok) throw new Error(`me: ${response.status}`);
        return response.json();
      },
    });
    const offMe = me.subscribe(() => {});
    cleanups.push(() => {
      offMe();
      disconnect();
      client.clear();
    });
    await waitFor(() => expect(session.status).toBe("unauthorized"));
    return { client, session, statuses, events, auth };
  }

  it("test_a_401_stream_opens_once_the_app_signed_in_and_refetched", async () => {
    const { client, session, events, auth } = await signedOutApp("token-a");
    // The sign-in form: a POST that makes the token valid, then the app refetches what it shows.
    expect((await fetch(`${python.base}/api/sign-in`, { method: "POST", headers: auth })).status).toBe(200);
    await client.invalidateQueries();
    await waitFor(() => expect(session.status).toBe("open"));
    // And it is live: a change made now reaches it.
    expect((await fetch(`${python.base}/api/projects`, { method: "POST" })).status).toBe(201);
    await waitFor(() => expect(events.some((event) => event.kind === "invalidate")).toBe(true));
  });

  it("test_a_401_stream_opens_after_a_sign_in_mutation", async () => {
    const { client, session, auth } = await signedOutApp("token-b");
    const signIn = client.getMutationCache().build(client, {
      mutationFn: async () => (await fetch(`${python.base}/api/sign-in`, { method: "POST", headers: auth })).json(),
    });
    await signIn.execute(undefined);
    await waitFor(() => expect(session.status).toBe("open"));
  });

  it("test_a_signed_out_app_s_successes_do_not_hammer_the_server", async () => {
    const { client, session, statuses } = await signedOutApp("token-never");
    const unauthorized = () => statuses.filter((status) => status === "unauthorized").length;
    const before = unauthorized();
    client.setQueryData(["public"], 0); // written by the app, not fetched: no signal
    // Still signed out, five successful requests, each after the stream settled on 401 again: the
    // first one retries, the next ones fall within the 2 s the second retry waits for.
    for (let i = 0; i < 5; i++) {
      await client.fetchQuery({ queryKey: ["public", i], queryFn: async () => i });
      await waitFor(() => expect(session.status).toBe("unauthorized"));
    }
    await waitFor(() => expect(unauthorized()).toBeGreaterThanOrEqual(before + 1));
    expect(unauthorized()).toBe(before + 1);
  });
});
