// Two people in two browser contexts chat in one room: messages, typing, members.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start();
});
test.afterAll(async () => {
  await server.stop();
});

test("two people chat and see each other typing", async ({ browser }) => {
  const room = uniqueRoom("duo");
  const anaContext = await browser.newContext();
  const benContext = await browser.newContext();
  const ana = await anaContext.newPage();
  const ben = await benContext.newPage();
  await enterRoom(ana, server.url, room, "Ana");
  await enterRoom(ben, server.url, room, "Ben");

  // Each sees the other in the member list.
  await expect(ana.getByTestId("members")).toContainText("Ben");
  await expect(ben.getByTestId("members")).toContainText("Ana");

  // Typing shows on the other side, then clears when the message arrives.
  await ana.getByRole("textbox", { name: "Message" }).pressSequentially("Hello Ben", { delay: 20 });
  await expect(ben.getByTestId("typing")).toHaveText("Ana is typing…");
  await ana.getByRole("textbox", { name: "Message" }).press("Enter");
  await expect(ben.getByTestId("messages")).toContainText("Hello Ben");
  await expect(ben.getByTestId("typing")).toHaveText("");
  // The sender sees it confirmed (no longer "sending…") and the composer is empty.
  await expect(ana.locator(".message.mine:not(.pending)")).toContainText("Hello Ben");
  await expect(ana.getByRole("textbox", { name: "Message" })).toHaveValue("");

  // Shift+Enter makes a new line; Enter sends.
  const box = ben.getByRole("textbox", { name: "Message" });
  await box.pressSequentially("line one");
  await box.press("Shift+Enter");
  await box.pressSequentially("line two");
  await box.press("Enter");
  await expect(ana.locator(".message .content").last()).toHaveText("line one\nline two");

  // Markup is text, never HTML.
  await send(ana, `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>`);
  await expect(ben.locator(".message .content").last()).toHaveText(
    `<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>`,
  );
  await expect(ben.locator(".messages img")).toHaveCount(0);
  expect(await ben.title()).not.toBe("pwned");

  // Ben leaves: Ana's member list follows.
  await benContext.close();
  await expect(ana.getByTestId("members")).not.toContainText("Ben");
  await anaContext.close();
});

test("history is rendered on the server and readable without JavaScript", async ({ browser }) => {
  const room = uniqueRoom("ssr");
  const writerContext = await browser.newContext();
  const writer = await writerContext.newPage();
  await enterRoom(writer, server.url, room, "Writer");
  await send(writer, "first message");
  await send(writer, "<b>second</b> message");
  await expect(writer.locator(".message.mine:not(.pending)")).toHaveCount(2);

  const readerContext = await browser.newContext({ javaScriptEnabled: false });
  const reader = await readerContext.newPage();
  await reader.goto(`${server.url}/rooms/${room}`);
  const messages = reader.getByTestId("messages");
  await expect(messages).toContainText("first message");
  await expect(messages).toContainText("<b>second</b> message");
  await expect(reader.locator(".messages b")).toHaveCount(0);
  await expect(reader.getByTestId("members")).toContainText("Writer");
  await readerContext.close();
  await writerContext.close();
});

test("the home page lists rooms and validates room names", async ({ page }) => {
  const room = uniqueRoom("listed");
  await enterRoom(page, server.url, room, "Lister");
  await page.goto(server.url);
  await expect(page.getByRole("main").getByRole("link", { name: `#${room}` })).toBeVisible();
  await expect(page.getByText("You chat as")).toContainText("Lister");

  const input = page.getByLabel("Room name");
  await input.fill("café");
  await page.getByRole("button", { name: "Open" }).click();
  await expect(page.getByRole("alert")).toContainText("cannot be part of a room name");
  await input.fill("Book Club");
  await page.getByRole("button", { name: "Open" }).click();
  await expect(page).toHaveURL(/\/rooms\/book-club$/);
  await expect(page.getByTestId("status")).toHaveText("Live");
});

test("a burst past the rate limit is delayed, not lost", async ({ browser }) => {
  // A burst of 3, then one message every 2 s: however slowly this machine types the seven
  // messages (the default's 1 per second refilled the burst when it was busy), some of them
  // are held back, and the notice stays up for seconds.
  const limited = await ConfabServer.start({ CONFAB_SEND_RATE: "0.5", CONFAB_SEND_BURST: "3" });
  const room = uniqueRoom("burst");
  const anaContext = await browser.newContext();
  const benContext = await browser.newContext();
  try {
    const ana = await anaContext.newPage();
    const ben = await benContext.newPage();
    await enterRoom(ana, limited.url, room, "Ana");
    await enterRoom(ben, limited.url, room, "Ben");
    for (let n = 1; n <= 7; n++) {
      await send(ana, `burst ${n}`);
    }
    await expect(ana.getByRole("status")).toContainText("sending fast");
    const expected = Array.from({ length: 7 }, (_, i) => `burst ${i + 1}`);
    await expect(ben.locator(".message .content")).toHaveText(expected, { timeout: 20_000 });
    await expect(ana.locator(".message.pending")).toHaveCount(0);
    await expect(ana.getByRole("status")).toHaveCount(0);
  } finally {
    await anaContext.close();
    await benContext.close();
    await limited.stop();
  }
});
