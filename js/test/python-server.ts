// The real Python server (examples/timer.py by default) on a free loopback port, for the tests
// that run against it. REFETCH_TEST_SERVER_CMD overrides the command (run from the repo root,
// with PORT and HOST set); it must serve the update stream at /api/updates, GET /api/progress
// and GET/POST /api/projects, stamping Refetch-Cursor on its API responses.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { get } from "node:http";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const defaultCommand = process.env.REFETCH_TEST_SERVER_CMD ?? ".venv/bin/python -m examples.timer";

/**
 * Whether the real server can be started here. Without ../.venv (and no REFETCH_TEST_SERVER_CMD)
 * the tests that need it are skipped, saying so, so `npm test` works on a checkout of js/ alone;
 * `make test` sets REFETCH_REQUIRE_SERVER=1, which turns that skip into a failure.
 */
export function serverAvailable(): boolean {
  if (process.env.REFETCH_TEST_SERVER_CMD || existsSync(resolve(repoRoot, ".venv/bin/python"))) return true;
  const why = "no ../.venv/bin/python and no REFETCH_TEST_SERVER_CMD (run `make .venv/.synced` at the repo root)";
  if (process.env.REFETCH_REQUIRE_SERVER) throw new Error(`the tests against the real server cannot run: ${why}`);
  console.warn(`refetch: skipping the tests against the real Python server: ${why}`);
  return false;
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => done(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The status of a GET, 0 when nothing answers. Node's HTTP, not `fetch`: under happy-dom that one is a browser's, with CORS. */
function status(url: string): Promise<number> {
  return new Promise((done) => {
    get(url, (res) => {
      res.resume();
      done(res.statusCode ?? 0);
    }).on("error", () => done(0));
  });
}

export class PythonServer {
  /** A server of its own (e.g. test/servers/sign_in.py), run from the repo root; default: the command above. */
  constructor(readonly command: string = defaultCommand) {}

  port = 0;
  base = "";
  output = "";
  #child: ChildProcess | null = null;

  async start(): Promise<void> {
    if (this.port === 0) {
      this.port = await freePort();
      this.base = `http://127.0.0.1:${this.port}`;
    }
    this.output = "";
    // Its own process group, so stopping it also stops what the shell started.
    const command = this.command;
    const child = spawn(command, {
      cwd: repoRoot,
      shell: true,
      detached: true,
      env: { ...process.env, PORT: String(this.port), HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    child.stdout?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server command exited (${command}):\n${this.output}`);
      if ((await status(`${this.base}/api/progress`)) === 200) return;
      if (Date.now() > deadline) throw new Error(`server did not answer within 20 s (${command}):\n${this.output}`);
      await new Promise((done) => setTimeout(done, 100));
    }
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child || child.pid === undefined) return;
    const group = -child.pid;
    const alive = () => {
      try {
        process.kill(group, 0);
        return true;
      } catch {
        return false;
      }
    };
    // The whole group, not just the shell: a server left draining its streams would keep the
    // client's connection open while a new server takes the port.
    if (alive()) process.kill(group, "SIGTERM");
    const deadline = Date.now() + 5000;
    while (alive()) {
      if (Date.now() > deadline) process.kill(group, "SIGKILL");
      await new Promise((done) => setTimeout(done, 50));
    }
  }
}
