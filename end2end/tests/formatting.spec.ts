// Messages are written in a safe subset of Markdown: formatting and links render the same on
// the server and live, and injection attempts stay inert text.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start({ CONFAB_SEND_RATE: "0" });
});
test.afterAll(async () => {
  await server.stop();
});

const formatted = "**bold** _soft_ ~~gone~~ `x < y` see [the docs](https://example.org/docs) or https://example.com/a.";
const attacks = [
  "[click](javascript:alert(1))",
  `<img src=x onerror="document.title='pwned'">`,
  "[data](data:text/html,<script>alert(1)</script>)",
];
const block = "> quoted words\n- first\n- second\n```\nfn main() { println!(\"<b>\"); }\n```";

async function expectRendered(page: Page) {
  const content = page.locator(".message .content");
  await expect(content.locator("strong")).toHaveText("bold");
  await expect(content.locator("em")).toHaveText("soft");
  await expect(content.locator("s")).toHaveText("gone");
  await expect(content.locator("p > code")).toHaveText("x < y");
  const docs = content.getByRole("link", { name: "the docs" });
  await expect(docs).toHaveAttribute("href", "https://example.org/docs");
  await expect(docs).toHaveAttribute("rel", "noopener noreferrer nofollow");
  await expect(content.getByRole("link", { name: "https://example.com/a" })).toHaveAttribute("href", "https://example.com/a");
  // Every attempt is shown as typed, and nothing of it became markup.
  for (const attack of attacks) {
    await expect(content.filter({ hasText: attack })).toHaveCount(1);
  }
  await expect(page.locator(".messages img, .messages script")).toHaveCount(0);
  await expect(page.locator('.messages a[href^="javascript"], .messages a[href^="data"]')).toHaveCount(0);
  expect(await page.title()).not.toContain("pwned");
  await expect(content.locator("blockquote")).toHaveText("quoted words");
  await expect(content.locator("ul > li")).toHaveText(["first", "second"]);
  await expect(content.locator("pre > code")).toHaveText('fn main() { println!("<b>"); }');
}

test("formatting and links render alike live and on the server; injections stay text", async ({ browser }) => {
  const room = uniqueRoom("format");
  const ana = await browser.newPage();
  const bo = await browser.newPage();
  await enterRoom(ana, server.url, room, "Ana");
  await enterRoom(bo, server.url, room, "Bo");
  await send(bo, formatted);
  for (const attack of attacks) await send(bo, attack);
  await send(bo, block);
  await expect(ana.locator(".message")).toHaveCount(2 + attacks.length);
  await expectRendered(ana); // live
  await ana.reload();
  await expect(ana.getByTestId("status")).toHaveText("Live");
  await expectRendered(ana); // server-rendered, then hydrated

  // Without JavaScript the server's HTML already carries the same elements.
  // (Less the `<!>` markers hydration finds its places by.)
  const html = (await (await ana.request.get(`${server.url}/rooms/${room}`)).text()).replaceAll("<!>", "");
  expect(html).toContain("<strong>bold</strong>");
  expect(html).toContain('rel="noopener noreferrer nofollow"');
  expect(html).not.toContain("<img src=x");
  expect(html).toContain("&lt;img src=x");
  await ana.close();
  await bo.close();
});
