// The scroll position is the reader's: a new message does not pull a reader who scrolled up
// back to the bottom (a "new messages" button counts them instead), and older messages load
// above what is on screen without moving it.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

async function sendMany(page: Page, prefix: string, count: number) {
  for (let n = 0; n < count; n++) await send(page, `${prefix} ${n}`);
  await expect(page.locator(".message.mine:not(.pending)", { hasText: `${prefix} ${count - 1}` })).toHaveCount(1);
}

const list = (page: Page) => page.getByTestId("messages");
const gapToBottom = (page: Page) =>
  list(page).evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight);

test("a reader who scrolled up keeps their place; new messages are counted, not forced on them", async ({ browser }) => {
  const server = await ConfabServer.start({ CONFAB_SEND_RATE: "0" });
  const writer = await browser.newPage();
  const reader = await browser.newPage();
  try {
    const room = uniqueRoom("scroll");
    await enterRoom(writer, server.url, room, "Wes");
    await enterRoom(reader, server.url, room, "Rae");
    await sendMany(writer, "filler", 30);
    await expect(reader.locator(".message", { hasText: "filler 29" })).toBeVisible();
    expect(await gapToBottom(reader)).toBeLessThan(40); // at the bottom, it follows

    // Scrolled up, and the page has seen it: scroll events are dispatched before the next
    // animation frame (without this wait, a loaded machine once delivered the next message
    // first, which found the reader still at the bottom and followed).
    await list(reader).evaluate(async (el) => {
      el.scrollTo(0, 0);
      await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
    });
    await send(writer, "while you were reading");
    await send(writer, "and another");
    await expect(reader.getByTestId("new-messages")).toHaveText("2 new messages ↓");
    expect(await list(reader).evaluate((el) => el.scrollTop)).toBe(0);

    await reader.getByTestId("new-messages").click();
    await expect(reader.getByTestId("new-messages")).toHaveCount(0);
    expect(await gapToBottom(reader)).toBeLessThan(40);
    await send(writer, "at the bottom again");
    await expect(reader.locator(".message", { hasText: "at the bottom again" })).toBeInViewport();
  } finally {
    await server.stop();
  }
});

test("scrolling up loads older messages and keeps what the reader was looking at in place", async ({ page }) => {
  const server = await ConfabServer.start({ CONFAB_SEND_RATE: "0" });
  try {
    const room = uniqueRoom("older");
    await enterRoom(page, server.url, room, "Oda");
    await sendMany(page, "line", 70);
    await page.reload(); // the newest 50, with older ones to load
    await expect(page.getByTestId("status")).toHaveText("Live");
    const oldestShown = page.locator(".message", { hasText: /line 20$/ });
    const oldest = page.locator(".message", { hasText: /line 0$/ });
    await expect(oldest).toHaveCount(0);
    // Scrolling up to the top loads the older ones by itself, above what is on screen.
    await list(page).evaluate((el) => el.scrollTo(0, 0));
    await expect(oldest).toHaveCount(1);
    await expect(oldestShown).toBeInViewport();
    await expect(oldest).not.toBeInViewport();
    await expect(page.getByRole("button", { name: "Load older messages" })).toHaveCount(0);
  } finally {
    await server.stop();
  }
});
