// The load generator of bench/deploy_return.py: N pages in one Node process, each the real
// refetch-sse client (js/dist, built from js/src): a TanStack QueryClient with one query tagged
// `projects` and `queryUpdates(client).connect()`, its stream over Node's fetch (undici).
//
//   node bench/deploy_return_clients.mjs --url http://127.0.0.1:8000 --clients 1000 --mode after
//
// --mode before: the same client code, but every stream's bytes pass a filter that drops the
// server's `reconnect` frame, so the client sees exactly what a server without the drain notice
// sends (main's wire) and follows its error backoff, as main's client does.
//
// Protocol on stdout (one JSON object a line): {"event":"ready"} once every page shows its data
// with its stream open; {"event":"all-shown"} once every page shows the changed data; the report
// after "report" arrives on stdin. Times are wall-clock milliseconds (performance.timeOrigin +
// performance.now()), the orchestrator's time.time() clock, on one machine.
import { get } from "node:http";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const require = createRequire(new URL("../js/package.json", import.meta.url));
// The ESM build of query-core that js/dist imports too: one copy of its managers.
const queryCore = require.resolve("@tanstack/query-core").replace(/index\.cjs$/, "index.js");
const { QueryClient, QueryObserver } = await import(pathToFileURL(queryCore).href);
const { queryUpdates } = await import(new URL("../js/dist/query-updates.js", import.meta.url).href);

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    clients: { type: "string", default: "1000" },
    mode: { type: "string", default: "after" },
  },
});
const base = values.url;
const count = Number(values.clients);
const before = values.mode === "before";
if (!base || !/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(base)) throw new Error("--url must be http://127.0.0.1:PORT");

const now = () => performance.timeOrigin + performance.now();
const say = (object) => process.stdout.write(`${JSON.stringify(object)}\n`);
const quiet = { warn: () => {}, error: (...args) => console.error(...args), info: () => {} };

/** Every attempt to open a stream: [client, time]. */
const attempts = [];
const pages = [];

/** The page's API call: a fresh connection (the old server's keep-alive sockets are gone). */
function getVersion() {
  return new Promise((resolve, reject) => {
    get(`${base}/api/projects`, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(body).version) : reject(new Error(`${res.statusCode}`))));
    }).on("error", reject);
  });
}

/** main's wire: the stream's bytes without any `reconnect` frame (a block of lines). */
function withoutDrainNotice(response) {
  if (!response.ok || !response.body) return response;
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let buffer = "";
  const body = response.body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        buffer += decoder.decode(chunk, { stream: true });
        const blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        const kept = blocks.filter((block) => !/(^|\n)event: reconnect(\n|$)/.test(block));
        if (kept.length > 0) controller.enqueue(encoder.encode(kept.map((block) => `${block}\n\n`).join("")));
      },
    }),
  );
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

function page(index) {
  const state = { index, initial: undefined, shownAt: null, reopenedAt: null, closedAt: null, invalidateAll: 0 };
  const client = new QueryClient({ defaultOptions: { queries: { staleTime: Infinity, retry: 3, retryDelay: 50 } } });
  const observer = new QueryObserver(client, {
    queryKey: ["projects"],
    queryFn: getVersion,
    meta: { updates: ["projects"] },
  });
  observer.subscribe((result) => {
    if (result.data === undefined) return;
    if (state.initial === undefined) state.initial = result.data;
    else if (result.data !== state.initial && state.shownAt === null) {
      state.shownAt = now();
      if (++shown === count) say({ event: "all-shown" });
    }
  });
  const streamFetch = (input, init) => {
    attempts.push([index, now()]);
    const response = fetch(input, init);
    return before ? response.then(withoutDrainNotice) : response;
  };
  const updates = queryUpdates(client, { logger: quiet });
  updates.connect({ url: `${base}/api/updates`, types: ["projects"], share: false, fetch: streamFetch, logger: quiet });
  const source = updates.source;
  source.onStatus((status) => {
    if (status === "reconnecting" && state.closedAt === null) state.closedAt = now();
    if (status === "open" && state.closedAt !== null && state.reopenedAt === null) state.reopenedAt = now();
  });
  source.subscribe((event) => {
    if (event.kind === "invalidate-all") state.invalidateAll++;
  });
  state.ready = () => source.status === "open" && state.initial !== undefined;
  pages.push(state);
}

let shown = 0;
// Open the pages a few at a time, as visitors arrive, not in one burst.
for (let i = 0; i < count; i++) {
  page(i);
  if (i % 50 === 49) await new Promise((done) => setTimeout(done, 20));
}
const cpuAtReady = { value: null };
await new Promise((done) => {
  const check = setInterval(() => {
    if (pages.every((p) => p.ready())) {
      clearInterval(check);
      done();
    }
  }, 20);
});
cpuAtReady.value = process.cpuUsage();
const attemptsAtReady = attempts.length;
say({ event: "ready", attempts: attemptsAtReady });

process.stdin.setEncoding("utf8");
process.stdin.on("data", (text) => {
  if (!text.includes("report")) return;
  const cpu = process.cpuUsage(cpuAtReady.value);
  const line = JSON.stringify({
    event: "report",
    mode: values.mode,
    clients: count,
    pages: pages.map(({ index, shownAt, reopenedAt, closedAt, invalidateAll }) => ({
      index,
      shownAt,
      reopenedAt,
      closedAt,
      invalidateAll,
    })),
    attempts: attempts.slice(attemptsAtReady),
    cpu_s: (cpu.user + cpu.system) / 1e6,
  });
  // Exit once the (large) line is out: process.exit() would cut a pipe write short.
  process.stdout.write(`${line}\n`, () => process.exit(0));
});
