// Two browsers on two Confab instances that share one Redis chat as if on one server.
import { expect, test } from "@playwright/test";
import { ConfabServer, RedisProcess } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

test("people on two instances chat, see each other, and share history", async ({ browser }) => {
  const redis = await RedisProcess.start();
  const shared = { REDIS_URL: redis.url, CONFAB_REDIS_PREFIX: "e2e" };
  const first = await ConfabServer.start(shared);
  const second = await ConfabServer.start(shared);
  try {
    const room = uniqueRoom("two-instances");
    const anaContext = await browser.newContext();
    const benContext = await browser.newContext();
    const ana = await anaContext.newPage();
    const ben = await benContext.newPage();
    await enterRoom(ana, first.url, room, "Ana");
    await enterRoom(ben, second.url, room, "Ben");

    await expect(ana.getByTestId("members")).toContainText("Ben");
    await expect(ben.getByTestId("members")).toContainText("Ana");

    await send(ana, "hello from instance one");
    await expect(ben.getByTestId("messages")).toContainText("hello from instance one");
    await send(ben, "hello from instance two");
    await expect(ana.getByTestId("messages")).toContainText("hello from instance two");

    // A reload, on either instance, shows the same history.
    for (const page of [ana, ben]) {
      await page.reload();
      await expect(page.getByTestId("status")).toHaveText("Live");
      const texts = await page.locator(".message .content").allTextContents();
      expect(texts).toEqual(["hello from instance one", "hello from instance two"]);
    }
    await anaContext.close();
    await benContext.close();
  } finally {
    await first.stop();
    await second.stop();
    await redis.stop();
  }
});
