// Starts the real `confab` binary (built by `make build`, or $CONFAB_BIN) on a free loopback port,
// waits until /health answers, and stops it with SIGTERM like an operator would.
import { ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";

const repoRoot = path.resolve(__dirname, "..", "..");
const binary = process.env.CONFAB_BIN ?? path.join(repoRoot, "target", "debug", "confab");

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** The password every operator account of the tests has. */
export const OPERATOR_PASSWORD = "correct horse battery";

export class ConfabServer {
  private child: ChildProcess | null = null;
  private output = "";
  /** A directory of this server's own (its API keys), removed when it stops. */
  private scratch: string | null = null;

  constructor(readonly port: number, private readonly env: Record<string, string> = {}) {}

  static async start(env: Record<string, string> = {}): Promise<ConfabServer> {
    const server = new ConfabServer(await freePort(), env);
    await server.start();
    return server;
  }

  /**
   * A server whose `--operators` names `operator`, with that account made as its
   * administrator makes it: with an API key (`confab account create`), since visitors cannot
   * register an operator's username.
   */
  static async withOperator(operator: string, env: Record<string, string> = {}): Promise<ConfabServer> {
    const key = `cfk_${randomBytes(32).toString("hex")}`;
    const dir = mkdtempSync(path.join(tmpdir(), "confab-keys-"));
    const keys = path.join(dir, "api-keys");
    writeFileSync(keys, `tests ${createHash("sha256").update(key).digest("hex")}\n`);
    const server = await ConfabServer.start({
      CONFAB_OPERATORS: operator,
      CONFAB_API_KEYS_FILE: keys,
      ...env,
    });
    server.scratch = dir;
    const created = await fetch(`${server.url}/api/accounts`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key },
      body: JSON.stringify({ username: operator, password: OPERATOR_PASSWORD }),
    });
    if (created.status !== 201) {
      throw new Error(`the operator's account was not made: ${created.status} ${await created.text()}`);
    }
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(binary, [], {
      cwd: repoRoot,
      env: { ...process.env, HOST: "127.0.0.1", PORT: String(this.port), CONFAB_LOG: "warn", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (chunk) => (this.output += chunk));
    child.stderr?.on("data", (chunk) => (this.output += chunk));
    this.child = child;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new Error(`confab exited with ${child.exitCode}:\n${this.output}`);
      }
      try {
        const response = await fetch(`${this.url}/health`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`confab did not answer /health within 20 s:\n${this.output}`);
  }

  /** SIGTERM, then wait for the process to exit (graceful shutdown). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timeout = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timeout);
    this.child = null;
    if (this.scratch) {
      rmSync(this.scratch, { recursive: true, force: true });
      this.scratch = null;
    }
  }
}

/** A real `redis-server` (Debian's) on a free loopback port, without persistence. */
export class RedisProcess {
  private child: ChildProcess | null = null;

  private constructor(readonly port: number) {}

  static async start(): Promise<RedisProcess> {
    const redis = new RedisProcess(await freePort());
    redis.child = spawn(
      "redis-server",
      ["--port", String(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (await pingRedis(redis.port)) return redis;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server did not start on port ${redis.port}`);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    await exited;
  }
}

async function pingRedis(port: number): Promise<boolean> {
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("error", () => resolve(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => {
      socket.destroy();
      resolve(data.toString().startsWith("+PONG"));
    });
  });
}
