// The composer never loses a draft (not to hydration, a reload or a refusal), counts down near
// the length limit, and a refused message stays with its reason and Retry / Discard. The
// timeline groups one author's run of messages and separates days.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start({ CONFAB_SEND_RATE: "0", CONFAB_MAX_CONTENT_BYTES: "100" });
});
test.afterAll(async () => {
  await server.stop();
});

const box = (page: Page) => page.getByRole("textbox", { name: "Message" });

test("a draft survives a reload, and text typed before hydration is kept", async ({ page }) => {
  const room = uniqueRoom("draft");
  await enterRoom(page, server.url, room, "Dee");
  await box(page).fill("half a thought");
  await page.reload();
  await expect(page.getByTestId("status")).toHaveText("Live");
  await expect(box(page)).toHaveValue("half a thought");

  // Hold the WebAssembly back, type into the server-rendered composer, then let it load.
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  await page.route(/\/pkg\/.*\.wasm$/, async (route) => {
    await gate;
    await route.continue();
  });
  await box(page).fill("");
  await page.reload();
  await box(page).fill("typed early");
  release();
  await expect(page.getByTestId("status")).toHaveText("Live");
  await expect(box(page)).toHaveValue("typed early");
  await box(page).press("Enter");
  await expect(page.locator(".message.mine:not(.pending)", { hasText: "typed early" })).toHaveCount(1);
  await expect(box(page)).toHaveValue("");
  await page.reload();
  await expect(page.getByTestId("status")).toHaveText("Live");
  await expect(box(page)).toHaveValue("", { timeout: 2_000 });
});

test("near the limit a counter shows what is left; past it nothing is sent", async ({ page }) => {
  await enterRoom(page, server.url, uniqueRoom("limit"), "Lim");
  await box(page).fill("x".repeat(80));
  await expect(page.getByTestId("counter")).toHaveCount(0);
  await box(page).fill("x".repeat(95));
  await expect(page.getByTestId("counter")).toHaveText("5 left");
  await box(page).fill("x".repeat(110));
  await expect(page.getByTestId("counter")).toHaveText("10 bytes too long");
  await box(page).press("Enter");
  await expect(page.getByTestId("pending")).toHaveCount(0);
  await expect(box(page)).toHaveValue("x".repeat(110));
});

test("a refused message keeps its reason, and can be retried or discarded", async ({ page }) => {
  // The first answer to a message is replaced by a refusal, as from a service that failed.
  let refuse = true;
  await page.routeWebSocket(/\/ws$/, (client) => {
    const upstream = client.connectToServer();
    client.onMessage((frame) => upstream.send(frame));
    upstream.onMessage((frame) => {
      const event = JSON.parse(String(frame));
      if (refuse && event.type === "ack") {
        refuse = false;
        client.send(
          JSON.stringify({
            type: "error",
            code: "unavailable",
            error: "the chat service is unavailable, try again shortly",
            roomId: event.roomId,
            clientMsgId: event.clientMsgId,
          }),
        );
        return;
      }
      client.send(frame);
    });
  });
  const room = uniqueRoom("retry");
  await enterRoom(page, server.url, room, "Rex");
  await send(page, "first try");
  const failed = page.getByTestId("pending");
  await expect(failed).toContainText("not sent: the chat service is unavailable");
  await failed.getByRole("button", { name: "Retry" }).click();
  await expect(failed).toHaveCount(0);
  await expect(page.locator(".message.mine", { hasText: "first try" })).toHaveCount(1);

  // A message with a control character is refused by the server for good: discard it.
  await send(page, "bell \u0007");
  await expect(failed).toContainText("not sent");
  await failed.getByRole("button", { name: "Discard" }).click();
  await expect(failed).toHaveCount(0);
  // The rate-limit and error notice sits over the timeline: it moves nothing.
});

test("one author's run of messages is grouped; each message has its full date", async ({ page }) => {
  await enterRoom(page, server.url, uniqueRoom("group"), "Gus");
  for (const text of ["one", "two", "three"]) await send(page, text);
  const messages = page.locator(".message:not(.pending)");
  await expect(messages).toHaveCount(3);
  await expect(messages.nth(0)).not.toHaveClass(/grouped/);
  await expect(messages.nth(1)).toHaveClass(/grouped/);
  await expect(messages.nth(2)).toHaveClass(/grouped/);
  await expect(page.getByTestId("day-separator")).toHaveCount(1);
  const title = await messages.nth(0).locator("time").getAttribute("title");
  expect(title).toMatch(/^\w+day, \d{1,2} \w+ \d{4} at \d\d:\d\d$/);
  await expect(messages.nth(0).locator("time")).toHaveAttribute("datetime", /^\d{4}-\d\d-\d\dT\d\d:\d\d$/);
});
