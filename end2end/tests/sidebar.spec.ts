// Many rooms at once: the sidebar lists the reader's rooms over one connection, counts what
// is unread and what mentions them while they are in another room, and clears both once the
// messages were seen — in every tab of theirs.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, sidebar, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start({ CONFAB_SEND_RATE: "0" });
});
test.afterAll(async () => {
  await server.stop();
});

const roomLink = (page: Page, room: string) => page.getByTestId("sidebar").locator(`a[data-room="${room}"]`);

/** Opens a room from the sidebar (a drawer on phones). */
async function openFromSidebar(page: Page, room: string) {
  await (await sidebar(page)).locator(`a[data-room="${room}"]`).click();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`#${room}`);
}

/** Joins (or creates) a room with the sidebar's form. */
async function joinFromSidebar(page: Page, room: string) {
  const nav = await sidebar(page);
  await nav.getByLabel("Join or create a room").fill(room);
  await nav.getByRole("button", { name: "Join" }).click();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.getByTestId("status")).toHaveText("Live");
}

test("unread counts and mention badges follow the reader across rooms and tabs", async ({ browser }) => {
  const general = uniqueRoom("general");
  const random = uniqueRoom("random");
  const anaContext = await browser.newContext();
  const ana = await anaContext.newPage();
  const bo = await browser.newPage();

  // Ana opens two rooms: both are in her sidebar, on one connection.
  await enterRoom(ana, server.url, general, "Ana");
  await joinFromSidebar(ana, random);
  await expect(roomLink(ana, general)).toHaveCount(1);
  await expect(roomLink(ana, random)).toHaveAttribute("aria-current", "page");
  const sockets: string[] = [];
  ana.on("websocket", (ws) => sockets.push(ws.url()));

  // Back in #general; Bo writes in #random, once mentioning her.
  await openFromSidebar(ana, general);
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
  await openFromSidebar(ana, random);
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

  // A room joined in one tab is in the other tab's list at once, and counts there live;
  // leaving a room takes it off both lists.
  const third = uniqueRoom("third");
  await joinFromSidebar(ana, third);
  await expect(roomLink(tab, third)).toHaveCount(1);
  await openFromSidebar(ana, random);
  await joinFromSidebar(bo, third);
  await send(bo, "news in the third room");
  await expect(roomLink(tab, third).getByTestId("unread-badge")).toContainText("1");
  await expect(roomLink(ana, third).getByTestId("unread-badge")).toContainText("1");
  await openFromSidebar(tab, random);
  await (await sidebar(ana)).getByRole("button", { name: `Leave #${general}` }).click();
  await expect(roomLink(ana, general)).toHaveCount(0);
  await expect(roomLink(tab, general)).toHaveCount(0);
  await tab.reload();
  await expect(roomLink(tab, random)).toHaveCount(1);
  await expect(roomLink(tab, general)).toHaveCount(0);
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
