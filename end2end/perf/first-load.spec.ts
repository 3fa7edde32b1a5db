// How fast a room is live on a first visit over a phone network, with the optimized build
// (`make release`; CONFAB_BIN=target/release/confab). Chromium's own network throttling;
// a fresh browser context (empty cache) for every run; the median of five is reported and
// held to the targets: WASM at most 250 KB on the wire, the room live within 1.5 s on 4G.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "../tests/server";

const networks = {
  // Chrome DevTools' presets.
  "4G": { latency: 60, downloadThroughput: (9_000 * 1024) / 8, uploadThroughput: (1_500 * 1024) / 8 },
  "slow 4G": { latency: 150, downloadThroughput: (1_600 * 1024) / 8, uploadThroughput: (750 * 1024) / 8 },
  "3G": { latency: 300, downloadThroughput: (1_600 * 1024) / 8 / 2.5, uploadThroughput: (750 * 1024) / 8 },
};
const RUNS = 5;

test("first load of a room: bytes on the wire and time until live", async ({ browser }) => {
  const server = await ConfabServer.start();
  try {
    // A session cookie, so the room page connects (as for a returning reader).
    const created = await (
      await fetch(`${server.url}/api/session`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: "Perf" }),
      })
    ).json();
    const report: string[] = [];
    for (const [name, conditions] of Object.entries(networks)) {
      const times: number[] = [];
      let wasmBytes = 0;
      let totalBytes = 0;
      for (let run = 0; run < RUNS; run++) {
        const context = await browser.newContext();
        await context.addCookies([{ name: "confab_session", value: created.token, url: server.url }]);
        const page = await context.newPage();
        const cdp = await context.newCDPSession(page);
        await cdp.send("Network.enable");
        await cdp.send("Network.emulateNetworkConditions", { offline: false, ...conditions });
        const sizes = new Map<string, number>();
        cdp.on("Network.loadingFinished", (event) => sizes.set(event.requestId, event.encodedDataLength));
        const urls = new Map<string, string>();
        cdp.on("Network.requestWillBeSent", (event) => urls.set(event.requestId, event.request.url));
        const started = Date.now();
        await page.goto(`${server.url}/rooms/perf-room`, { waitUntil: "commit" });
        await expect(page.getByTestId("status")).toHaveText("Live", { timeout: 60_000 });
        times.push(Date.now() - started);
        wasmBytes = [...sizes].filter(([id]) => urls.get(id)?.endsWith(".wasm")).reduce((n, [, b]) => n + b, 0);
        totalBytes = [...sizes.values()].reduce((n, b) => n + b, 0);
        await context.close();
      }
      times.sort((a, b) => a - b);
      const median = times[Math.floor(times.length / 2)];
      report.push(
        `${name}: live in ${median} ms (median of ${RUNS}; ${times.join(", ")}), ` +
          `WASM ${(wasmBytes / 1024).toFixed(0)} KB, all ${(totalBytes / 1024).toFixed(0)} KB on the wire`,
      );
      if (name === "4G") {
        // Soft: every network is still measured and reported when a target is missed.
        expect.soft(wasmBytes, "WASM on the wire").toBeLessThanOrEqual(250 * 1024);
        expect.soft(median, "room live on 4G").toBeLessThanOrEqual(1_500);
      }
    }
    console.log(report.join("\n"));
  } finally {
    await server.stop();
  }
});
