// @vitest-environment happy-dom
// Model-based test (fast-check) of the SWR adapter on real SWR hooks: random mounts and unmounts
// of components on two keys of two types, server changes (each followed by its update), resyncs,
// hidden/visible tab and waits. After settling: every mounted component shows its key's current
// server version, no request of a key ever started while another of that key was in flight, and
// no key was fetched more than once per change of it and per resync (plus its first fetch).
import { act, cleanup, render } from "@testing-library/react";
import fc from "fast-check";
import { useState } from "react";
import useSWR, { SWRConfig } from "swr";
import { afterEach, describe, expect, it, vi } from "vitest";

import type { UpdateEvent } from "../src/protocol.js";
import { UpdatesProvider, autoRefetch } from "../src/swr.js";
import { ManualSource } from "./helpers.js";

const KEYS = ["/api/projects", "/api/compute"] as const;
const TYPE: Record<(typeof KEYS)[number], string> = { "/api/projects": "projects", "/api/compute": "compute" };
const MIDDLEWARE = Object.fromEntries(KEYS.map((key) => [key, [autoRefetch(TYPE[key])]]));
const SLOTS = 3; // component i shows KEYS[i % 2]: two on one key, one on the other

type Action =
  | { t: "mount"; slot: number }
  | { t: "unmount"; slot: number }
  | { t: "change"; key: number }
  | { t: "resync" }
  | { t: "hide" }
  | { t: "show" }
  | { t: "wait"; ms: number };

/** The data API: each key's version, fetches per key, and requests started over one in flight. */
class Server {
  version: Record<string, number> = Object.fromEntries(KEYS.map((key) => [key, 0]));
  fetches: Record<string, number> = Object.fromEntries(KEYS.map((key) => [key, 0]));
  overlapping = 0;
  readonly #inFlight: Record<string, number> = Object.fromEntries(KEYS.map((key) => [key, 0]));

  fetcher = (key: string): Promise<number> => {
    this.fetches[key]!++;
    if (this.#inFlight[key]! > 0) this.overlapping++;
    this.#inFlight[key]!++;
    const version = this.version[key]!;
    return new Promise((resolve) =>
      setTimeout(() => {
        this.#inFlight[key]!--;
        resolve(version);
      }, 40),
    );
  };
}

const actions: fc.Arbitrary<Action[]> = fc.array(
  fc.oneof(
    { weight: 2, arbitrary: fc.record({ t: fc.constant("mount" as const), slot: fc.nat(SLOTS - 1) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("unmount" as const), slot: fc.nat(SLOTS - 1) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("change" as const), key: fc.nat(KEYS.length - 1) }) },
    { weight: 1, arbitrary: fc.constant({ t: "resync" as const }) },
    { weight: 1, arbitrary: fc.constantFrom({ t: "hide" as const }, { t: "show" as const }) },
    { weight: 4, arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.integer({ min: 0, max: 100 }) }) },
  ),
  { minLength: 1, maxLength: 32 },
);

afterEach(() => {
  cleanup();
  Reflect.deleteProperty(document, "visibilityState");
  vi.useRealTimers();
});

describe("SWR adapter, model-based", () => {
  it("test_random_mounts_changes_resyncs_and_visibility_leave_every_component_fresh", async () => {
    await fc.assert(
      fc.asyncProperty(actions, async (steps) => {
        vi.useFakeTimers();
        let visibility: DocumentVisibilityState = "visible";
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => visibility });
        const server = new Server();
        const source = new ManualSource();
        const shown: Record<number, unknown> = {};
        let setMounted: (next: (slots: number[]) => number[]) => void = () => {};
        const changes: Record<string, number> = Object.fromEntries(KEYS.map((key) => [key, 0]));
        let resyncs = 0;

        function Slot({ slot }: { slot: number }) {
          const key = KEYS[slot % KEYS.length]!;
          shown[slot] = useSWR(key, server.fetcher, { use: MIDDLEWARE[key] }).data;
          return null;
        }
        function App() {
          const [mounted, set] = useState<number[]>([]);
          setMounted = set;
          return (
            <SWRConfig value={{ provider: () => new Map(), revalidateOnFocus: false, revalidateOnReconnect: false, revalidateIfStale: false }}>
              <UpdatesProvider stream={source}>
                {mounted.map((slot) => (
                  <Slot key={slot} slot={slot} />
                ))}
              </UpdatesProvider>
            </SWRConfig>
          );
        }
        const advance = async (ms: number) => act(async () => void (await vi.advanceTimersByTimeAsync(ms)));
        const emit = (event: UpdateEvent) => act(() => source.emit(event));
        const view = render(<App />);
        try {
          for (const step of steps) {
            if (step.t === "mount") act(() => setMounted((slots) => (slots.includes(step.slot) ? slots : [...slots, step.slot])));
            else if (step.t === "unmount") act(() => setMounted((slots) => slots.filter((slot) => slot !== step.slot)));
            else if (step.t === "change") {
              const key = KEYS[step.key]!;
              server.version[key]!++;
              changes[key]!++;
              emit({ kind: "invalidate", updates: [{ type: TYPE[key] }], cursor: null });
            } else if (step.t === "resync") {
              resyncs++;
              emit({ kind: "invalidate-all", reason: "resync", cursor: null });
            } else if (step.t === "hide" || step.t === "show") {
              visibility = step.t === "hide" ? "hidden" : "visible";
              act(() => void document.dispatchEvent(new Event("visibilitychange")));
            } else if (step.t === "wait") {
              await advance(step.ms);
            }
          }
          visibility = "visible";
          act(() => void document.dispatchEvent(new Event("visibilitychange")));
          await advance(1000);

          // Only the slots still mounted are checked: an unmounted one keeps its last render.
          let current: number[] = [];
          act(() => setMounted((slots) => ((current = slots), slots)));
          for (const slot of current) {
            const key = KEYS[slot % KEYS.length]!;
            expect(shown[slot], `slot ${slot} (${key})`).toBe(server.version[key]);
          }
          expect(server.overlapping).toBe(0);
          for (const key of KEYS) expect(server.fetches[key]!).toBeLessThanOrEqual(1 + changes[key]! + resyncs);
        } finally {
          view.unmount();
          Reflect.deleteProperty(document, "visibilityState");
          vi.useRealTimers();
        }
      }),
      {
        numRuns: 300,
        // To replay a failure: MODEL_SEED=<seed> MODEL_PATH=<path> npx vitest run test/swr-model.test.tsx
        ...(process.env.MODEL_SEED ? { seed: Number(process.env.MODEL_SEED), path: process.env.MODEL_PATH } : {}),
      },
    );
  });
});
