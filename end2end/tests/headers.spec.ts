// The app runs whole under its Content-Security-Policy: hydration, the WebAssembly bundle and
// the WebSocket are allowed, and the browser reports no violation.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

test("the app hydrates, connects and chats under its CSP with no violation", async ({ page }) => {
  const server = await ConfabServer.start();
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  try {
    const response = await page.goto(`${server.url}/rooms/${uniqueRoom("csp")}`);
    const policy = response?.headers()["content-security-policy"] ?? "";
    expect(policy).toContain("frame-ancestors 'none'");
    expect(policy).toMatch(/script-src 'self' 'nonce-[^']+' 'wasm-unsafe-eval'/);
    await page.goBack().catch(() => {});
    await enterRoom(page, server.url, uniqueRoom("csp"), "Cyd");
    await send(page, "allowed by the policy");
    await expect(page.locator(".message.mine:not(.pending)")).toContainText("allowed by the policy");
    expect(violations).toEqual([]);
  } finally {
    await server.stop();
  }
});
