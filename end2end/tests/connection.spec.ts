// Being offline is visible and recoverable: the connection state is announced, "Reconnect
// now" skips the backoff, the member list says it may be out of date; new messages are
// announced to screen readers; the keyboard moves between rooms.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

test("offline: members marked stale, and Reconnect now skips the backoff", async ({ page }) => {
  const server = await ConfabServer.start();
  try {
    await enterRoom(page, server.url, uniqueRoom("offline"), "Olu");
    await expect(page.getByTestId("members-offline")).toHaveCount(0);
    await server.stop();
    await expect(page.getByTestId("members-offline")).toBeVisible();
    // Wait until the backoff has grown to several seconds.
    await expect(page.getByTestId("status")).toHaveText(/Reconnecting in ([4-9]|1\d) s/, { timeout: 30_000 });
    await server.start();
    await page.getByTestId("reconnect-now").click();
    await expect(page.getByTestId("status")).toHaveText("Live", { timeout: 2_000 });
    await expect(page.getByTestId("members-offline")).toHaveCount(0);
    await expect(page.getByTestId("reconnect-now")).toHaveCount(0);
  } finally {
    await server.stop();
  }
});

test("new messages are announced; the keyboard switches rooms", async ({ browser }) => {
  const server = await ConfabServer.start();
  try {
    const first = uniqueRoom("keys-a");
    const second = uniqueRoom("keys-b");
    const ana = await browser.newPage();
    const bo = await browser.newPage();
    await enterRoom(ana, server.url, first, "Ana");
    await ana.goto(`${server.url}/rooms/${second}`);
    await expect(ana.getByTestId("status")).toHaveText("Live");
    await enterRoom(bo, server.url, second, "Bo");
    await send(bo, "hello from Bo");
    await expect(ana.getByTestId("announcer")).toContainText("Bo: hello from Bo");

    await ana.keyboard.press("Alt+ArrowUp");
    await expect(ana).toHaveURL(new RegExp(`/rooms/${first}$`));
    await expect(ana.getByRole("textbox", { name: "Message" })).toBeFocused();
    await ana.keyboard.press("Alt+ArrowDown");
    await expect(ana).toHaveURL(new RegExp(`/rooms/${second}$`));
  } finally {
    await server.stop();
  }
});
