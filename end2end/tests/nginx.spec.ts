// deploy/nginx.conf, as shipped (ports changed), in front of two instances sharing Redis:
// two browsers chat through it, one instance stops mid-conversation, and they go on; and the
// reader's address (not nginx's, not a forged one) is what Confab counts.
import { expect, test } from "@playwright/test";
import { spawn, ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { ConfabServer, RedisProcess, freePort } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

const example = path.resolve(__dirname, "..", "..", "deploy", "nginx.conf");

/** Debian's nginx with the example's server block, on `port`, proxying to `upstreams`. */
async function startNginx(port: number, upstreams: number[]): Promise<{ stop: () => Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), "confab-nginx-"));
  const site = readFileSync(example, "utf8")
    .replace(/listen 8080;/, `listen 127.0.0.1:${port};`)
    .replace(/(upstream confab \{[^}]*?)(\s*server 127\.0\.0\.1:3000[^\n]*\n\s*server 127\.0\.0\.1:3001[^\n]*\n)/, (_all, head) =>
      head + "\n" + upstreams.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=10s;`).join("\n") + "\n");
  expect(site, "the example's upstreams were replaced").toContain(`127.0.0.1:${upstreams[0]}`);
  writeFileSync(path.join(dir, "confab.conf"), site);
  writeFileSync(
    path.join(dir, "nginx.conf"),
    `daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events {}
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  include ${dir}/confab.conf;
}
`,
  );
  const child: ChildProcess = spawn(process.env.NGINX_PATH ?? "/usr/sbin/nginx", ["-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr?.on("data", (chunk) => (output += chunk));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${output}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`nginx did not answer: ${output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        // SIGTERM: a fast shutdown (SIGQUIT would wait for the open WebSockets).
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test("two browsers chat through nginx; an instance stopped mid-conversation loses nothing", async ({ browser }) => {
  const redis = await RedisProcess.start();
  const shared = {
    REDIS_URL: redis.url,
    CONFAB_REDIS_PREFIX: "nginx",
    CONFAB_CLIENT_IP_HEADER: "X-Forwarded-For",
    CONFAB_SEND_RATE: "0",
  };
  const first = await ConfabServer.start(shared);
  const second = await ConfabServer.start(shared);
  const port = await freePort();
  const nginx = await startNginx(port, [first.port, second.port]);
  const url = `http://127.0.0.1:${port}`;
  try {
    const room = uniqueRoom("behind-nginx");
    const ana = await (await browser.newContext()).newPage();
    const ben = await (await browser.newContext()).newPage();
    await enterRoom(ana, url, room, "Ana");
    await enterRoom(ben, url, room, "Ben");
    await expect(ana.getByTestId("members")).toContainText("Ben");
    await send(ana, "one");
    await send(ben, "two");
    await expect(ana.getByTestId("messages")).toContainText("two");

    // Round robin, no stickiness: requests through nginx reach both instances.
    const servers = new Set<string>();
    for (let n = 0; n < 4; n++) servers.add((await (await fetch(`${url}/health`)).json()).serverId);
    expect(servers.size).toBe(2);

    // An instance holding at least one of the two sockets stops (SIGTERM: its sockets are
    // told to reconnect); whoever was on it comes back through nginx on the other, and the
    // conversation goes on.
    const sockets = async (server: ConfabServer) => (await (await fetch(`${server.url}/health`)).json()).connections;
    const stopping = (await sockets(first)) > 0 ? first : second;
    expect(await sockets(stopping)).toBeGreaterThan(0);
    await stopping.stop();
    await send(ana, "three");
    // Confirmed first (sent again after a reconnect if Ana was on the stopped instance), so
    // that the order of the two senders' messages is known.
    await expect(ana.locator(".message:not(.pending) .content").last()).toHaveText("three");
    await send(ben, "four");
    for (const page of [ana, ben]) {
      await expect(page.getByTestId("status")).toHaveText("Live");
      await expect(page.locator(".message:not(.pending) .content")).toHaveText(["one", "two", "three", "four"]);
    }
    // And after a reload, the same history from the instance that is left.
    await ana.reload();
    await expect(ana.locator(".message .content")).toHaveText(["one", "two", "three", "four"]);
    await ana.context().close();
    await ben.context().close();
  } finally {
    await nginx.stop();
    await first.stop();
    await second.stop();
    await redis.stop();
  }
});

/** POST /api/session (a guest) from a given local address, with extra headers. */
function startGuest(url: string, localAddress: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ name: "Probe" });
    const request = httpRequest(
      `${url}/api/session`,
      {
        method: "POST",
        localAddress,
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers },
      },
      (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode ?? 0));
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

test("the reader's address reaches Confab through nginx, and a forged one does not", async () => {
  // One guest session per address: whose address Confab counts decides who is refused.
  const instance = await ConfabServer.start({
    CONFAB_CLIENT_IP_HEADER: "X-Forwarded-For",
    CONFAB_GUESTS_PER_ADDRESS: "1",
  });
  const port = await freePort();
  const nginx = await startNginx(port, [instance.port]);
  const url = `http://127.0.0.1:${port}`;
  try {
    expect(await startGuest(url, "127.0.0.1")).toBe(200);
    // The same reader again, claiming another address: nginx appends the one it saw, and
    // Confab trusts only that last entry.
    expect(await startGuest(url, "127.0.0.1", { "X-Forwarded-For": "10.1.2.3" })).toBe(429);
    // Another reader (another source address) through the same nginx is someone else, not
    // nginx's own address a second time.
    expect(await startGuest(url, "127.0.0.2")).toBe(200);
  } finally {
    await nginx.stop();
    await instance.stop();
  }
});
