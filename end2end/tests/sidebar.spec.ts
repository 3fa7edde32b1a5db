// Many rooms at once: the sidebar lists the reader's rooms over one connection, counts what
// is unread and what mentions them while they are in another room, and clears both once the
// messages were seen — in every tab of theirs.
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

const roomLink = (page: Page, room: string) => page.getByTestId("sidebar").locator(`a[data-room="${room}"]`);

test("unread counts and mention badges follow the reader across rooms and tabs", async ({ browser }) => {
  const general = uniqueRoom("general");
  const random = uniqueRoom("random");
  const anaContext = await browser.newContext();
  const ana = await anaContext.newPage();
  const bo = await browser.newPage();

  // Ana opens two rooms: both are in her sidebar, on one connection.
  await enterRoom(ana, server.url, general, "Ana");
  await ana.getByLabel("Join or create a room").fill(random);
  await ana.getByRole("button", { name: "Join" }).click();
  await expect(ana).toHaveURL(new RegExp(`/rooms/${random}$`));
  await expect(ana.getByTestId("status")).toHaveText("Live");
  await expect(roomLink(ana, general)).toBeVisible();
  await expect(roomLink(ana, random)).toHaveAttribute("aria-current", "page");
  const sockets: string[] = [];
  ana.on("websocket", (ws) => sockets.push(ws.url()));

  // Back in #general; Bo writes in #random, once mentioning her.
  await roomLink(ana, general).click();
  await expect(ana.getByRole("heading", { level: 1 })).toHaveText(`#${general}`);
  await enterRoom(bo, server.url, random, "Bo");
  await send(bo, "anyone here?");
  await send(bo, "@ana have a look");
  await send(bo, "@anabel is someone else");
  await expect(roomLink(ana, random).getByTestId("unread-badge")).toContainText("3");
  await expect(roomLink(ana, random).getByTestId("mention-badge")).toContainText("@1");
  await expect(roomLink(ana, general).getByTestId("unread-badge")).toHaveCount(0);
  await expect(ana).toHaveTitle(`(3) #${general} · Confab`);
  expect(sockets, "switching rooms opened no new connection").toEqual([]);

  // A second tab shows the same counts, read from the server.
  const tab = await anaContext.newPage();
  await tab.goto(`${server.url}/rooms/${general}`);
  await expect(tab.getByTestId("status")).toHaveText("Live");
  await expect(roomLink(tab, random).getByTestId("unread-badge")).toContainText("3");
  await expect(roomLink(tab, random).getByTestId("mention-badge")).toContainText("@1");

  // Reading #random in the first tab clears the badges in both; the mention stands out and
  // a divider marks where the unread messages began.
  await ana.bringToFront();
  await roomLink(ana, random).click();
  await expect(ana.getByTestId("unread-divider")).toHaveCount(1);
  await expect(ana.locator(".message.mentions-me")).toHaveCount(1);
  await expect(ana.locator(".message.mentions-me mark.mention")).toHaveText("@ana");
  await expect(roomLink(ana, random).getByTestId("unread-badge")).toHaveCount(0);
  await expect(roomLink(tab, random).getByTestId("unread-badge")).toHaveCount(0);
  await expect(roomLink(tab, random).getByTestId("mention-badge")).toHaveCount(0);
  await expect(ana).toHaveTitle(`#${random} · Confab`);

  // The divider sits above the first message that was unread.
  const order = await ana
    .getByTestId("messages")
    .locator("li.message, li.unread-divider")
    .evaluateAll((items) => items.map((item) => (item.classList.contains("unread-divider") ? "divider" : item.textContent)));
  const divider = order.indexOf("divider");
  expect(order[divider + 1]).toContain("anyone here?");

  // Leaving a room takes it off the list.
  await ana.getByRole("button", { name: `Leave #${general}` }).click();
  await expect(roomLink(ana, general)).toHaveCount(0);
  await tab.reload();
  await expect(roomLink(tab, random)).toBeVisible();
  await anaContext.close();
  await bo.close();
});

test("@ completes the names of the people in the room", async ({ browser }) => {
  const room = uniqueRoom("mentions");
  const ana = await browser.newPage();
  const bo = await browser.newPage();
  await enterRoom(bo, server.url, room, "Bo Ek");
  await enterRoom(ana, server.url, room, "Ana");
  const box = ana.getByRole("textbox", { name: "Message" });
  await expect(box).toBeFocused();
  await box.pressSequentially("hi @b");
  await expect(ana.getByTestId("mention-suggestions")).toContainText("@Bo Ek");
  await box.press("Enter");
  await expect(box).toHaveValue("hi @Bo Ek ");
  await box.press("Enter");
  await expect(bo.locator(".message.mentions-me mark.mention")).toHaveText("@Bo Ek");
  await expect(ana.locator(".message.mine .tag.you")).toHaveCount(1);
  await ana.close();
  await bo.close();
});
