// A message sent but never confirmed is not lost by a reload: the page keeps it in browser
// storage, sends it again with its original clientMsgId, and it is stored and shown once.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

/** Routes the page's WebSocket through the test; `drop` decides which frames are lost. */
async function lossyLink(page: Page, drop: { outgoingMessages: boolean; acks: boolean }) {
  await page.routeWebSocket(/\/ws$/, (client) => {
    const server = client.connectToServer();
    client.onMessage((frame) => {
      if (drop.outgoingMessages && String(frame).includes('"type":"message"')) return;
      server.send(frame);
    });
    server.onMessage((frame) => {
      if (drop.acks && String(frame).includes('"type":"ack"')) return;
      client.send(frame);
    });
  });
}

async function storedTimes(server: ConfabServer, room: string, content: string): Promise<number> {
  const page = await (await fetch(`${server.url}/api/rooms/${room}/messages`)).json();
  return page.messages.filter((m: { content: string }) => m.content === content).length;
}

test("a send lost on the way survives a reload and is stored once", async ({ page, browser }) => {
  const server = await ConfabServer.start();
  const observer = await browser.newPage();
  try {
    const room = uniqueRoom("kept");
    page.on("console", (m) => console.log("CONSOLE", m.type(), m.text()));
    const drop = { outgoingMessages: true, acks: false };
    await lossyLink(page, drop);
    await enterRoom(page, server.url, room, "Kim");
    await enterRoom(observer, server.url, room, "Obi");

    await send(page, "typed before the reload");
    await expect(page.locator(".message.pending")).toContainText("typed before the reload");
    drop.outgoingMessages = false;
    await page.reload();

    await expect(page.getByTestId("status")).toHaveText("Live");
    const mine = page.locator(".message.mine:not(.pending)", { hasText: "typed before the reload" });
    await expect(mine).toHaveCount(1);
    await expect(page.locator(".message.pending")).toHaveCount(0);
    await expect(observer.locator(".message", { hasText: "typed before the reload" })).toHaveCount(1);
    expect(await storedTimes(server, room, "typed before the reload")).toBe(1);
  } finally {
    await observer.close();
    await server.stop();
  }
});

test("a send whose ack was lost is shown once after a reload, not sent twice", async ({ page }) => {
  const server = await ConfabServer.start();
  try {
    const room = uniqueRoom("ackless");
    const drop = { outgoingMessages: false, acks: true };
    await lossyLink(page, drop);
    await enterRoom(page, server.url, room, "Ada");
    await send(page, "stored, ack lost");
    await expect(page.locator(".message.pending")).toContainText("stored, ack lost");
    drop.acks = false;
    await page.reload();
    await expect(page.getByTestId("status")).toHaveText("Live");
    await expect(page.locator(".message", { hasText: "stored, ack lost" })).toHaveCount(1);
    await expect(page.locator(".message.pending")).toHaveCount(0);
    // Nothing waits in storage any more: another reload shows it once, still.
    await page.reload();
    await expect(page.getByTestId("status")).toHaveText("Live");
    await expect(page.locator(".message", { hasText: "stored, ack lost" })).toHaveCount(1);
    expect(await storedTimes(server, room, "stored, ack lost")).toBe(1);
  } finally {
    await server.stop();
  }
});
