// A mention while the tab is hidden shows a browser notification (the reader allowed them);
// one while the reader looks at the tab does not, nor does a message that is no mention.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start({ CONFAB_SEND_RATE: "0" });
});
test.afterAll(async () => {
  await server.stop();
});

test("a mention in a hidden tab notifies, once allowed", async ({ browser }) => {
  const room = uniqueRoom("notify");
  const context = await browser.newContext();
  await context.grantPermissions(["notifications"], { origin: server.url });
  // The real Notification, with a record of what was shown.
  await context.addInitScript(() => {
    const shown: { title: string; body?: string }[] = [];
    (window as unknown as { shown: typeof shown }).shown = shown;
    window.Notification = new Proxy(window.Notification, {
      construct(target, args: [string, NotificationOptions?]) {
        shown.push({ title: args[0], body: args[1]?.body });
        return Reflect.construct(target, args);
      },
    });
  });
  const shown = () => ana.evaluate(() => (window as unknown as { shown: unknown[] }).shown);
  const ana = await context.newPage();
  const bo = await browser.newPage();
  await enterRoom(ana, server.url, room, "Ana");
  await enterRoom(bo, server.url, room, "Bo");

  await send(bo, "@Ana while you are looking");
  await expect(ana.locator(".message", { hasText: "while you are looking" })).toBeVisible();
  // Seen: read once the page marked it (after the next frame and the server's answer).
  await expect(ana).toHaveTitle(`#${room} · Confab`);

  // Headless Chromium never hides a page, so the tab reports itself hidden, as it would
  // behind another tab.
  await ana.evaluate(() => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
    document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
  });
  await send(bo, "nothing for anyone in particular");
  await send(bo, "@Ana are you there?");
  await expect.poll(shown).toEqual([{ title: `Bo in #${room}`, body: "@Ana are you there?" }]);
  // Unseen while hidden: both count as unread in the tab title.
  await expect(ana).toHaveTitle(`(2) #${room} · Confab`);
  await context.close();
  await bo.close();
});
