// The UI recovers its connection after the server restarts.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

test("the room reconnects after a server restart and chat goes on", async ({ page }) => {
  const server = await ConfabServer.start();
  try {
    const room = uniqueRoom("restart");
    await enterRoom(page, server.url, room, "Rita");
    await send(page, "before the restart");
    await expect(page.locator(".message.mine:not(.pending)")).toContainText("before the restart");

    await server.stop();
    await expect(page.getByTestId("status")).not.toHaveText("Live");
    await server.start();

    // Backoff is at most a few seconds for the first attempts.
    await expect(page.getByTestId("status")).toHaveText("Live", { timeout: 20_000 });
    await send(page, "after the restart");
    await expect(page.locator(".message.mine:not(.pending)").last()).toContainText("after the restart");
    // What was on screen is still there.
    await expect(page.getByTestId("messages")).toContainText("before the restart");
  } finally {
    await server.stop();
  }
});
