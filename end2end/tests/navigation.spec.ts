// Moving between pages: the app's own router (app/src/routing.rs) changes the page in place
// for a plain click on a link of the site and for back and forward, keeps the one live
// connection, leaves clicks with a modifier to the browser, and shows unknown paths as the
// 404 page. Sign-in and the operators' dashboard are in the full WASM bundle only: the
// readers' bundle leaves them to the browser, the full one has every page.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer, OPERATOR_PASSWORD } from "./server";
import { enterRoom, sidebar, uniqueRoom } from "./helpers";

const operator = `navops_${Date.now().toString(36)}`;
let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.withOperator(operator);
});
test.afterAll(async () => {
  await server.stop();
});

/** Marks this document: the mark is gone if the page was loaded again. */
async function markDocument(page: Page) {
  await page.evaluate(() => ((window as unknown as { confabMark: number }).confabMark = 1));
}
async function sameDocument(page: Page): Promise<boolean> {
  return page.evaluate(() => (window as unknown as { confabMark?: number }).confabMark === 1);
}

async function showsRoom(page: Page, room: string) {
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(`#${room}`);
  await expect(page).toHaveTitle(`#${room} · Confab`);
}

test("links, back and forward change the page in place on one connection", async ({ page, context }) => {
  const first = uniqueRoom("nav-a");
  const second = uniqueRoom("nav-b");
  await enterRoom(page, server.url, first, "Ana");
  const nav = await sidebar(page);
  await nav.getByLabel("Join or create a room").fill(second);
  await nav.getByRole("button", { name: "Join" }).click();
  await showsRoom(page, second);
  await expect(page.getByTestId("status")).toHaveText("Live");
  await markDocument(page);
  const sockets: string[] = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));

  // Back and forward between the two rooms, and to the home page by the brand link.
  await page.goBack();
  await showsRoom(page, first);
  await expect(page.getByTestId("status")).toHaveText("Live");
  await expect(page.getByRole("textbox", { name: "Message" })).toBeVisible();
  await page.goForward();
  await showsRoom(page, second);
  await expect((await sidebar(page)).locator(`a[data-room="${second}"]`)).toHaveAttribute("aria-current", "page");
  await page.getByRole("link", { name: "Confab" }).click();
  await expect(page).toHaveURL(`${server.url}/`);
  await expect(page.getByRole("heading", { name: "Talk in real time." })).toBeVisible();
  await page.goBack();
  await showsRoom(page, second);
  await expect(page.getByTestId("status")).toHaveText("Live");
  expect(await sameDocument(page), "no page was loaded again").toBe(true);
  expect(sockets, "no new connection").toEqual([]);

  // A click with a modifier is the browser's: a new tab, this page stays.
  const link = (await sidebar(page)).locator(`a[data-room="${first}"]`);
  const [opened] = await Promise.all([context.waitForEvent("page"), link.click({ modifiers: ["Control"] })]);
  await opened.waitForLoadState();
  await expect(opened).toHaveURL(new RegExp(`/rooms/${first}$`));
  await showsRoom(page, second);
  await opened.close();
});

test("an unknown path is the 404 page, from which the rooms are a click away", async ({ page }) => {
  await enterRoom(page, server.url, uniqueRoom("nav"), "Ana");
  // Hydrated once the page opened its live connection (Ana is signed in as a guest).
  const [, response] = await Promise.all([
    page.waitForEvent("websocket"),
    page.goto(`${server.url}/rooms/${uniqueRoom("nav")}/extra`),
  ]);
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Not found" })).toBeVisible();
  await markDocument(page);
  await page.getByRole("link", { name: "Back to the rooms" }).click();
  await expect(page).toHaveURL(`${server.url}/`);
  await expect(page.getByRole("heading", { name: "Talk in real time." })).toBeVisible();
  expect(await sameDocument(page), "changed in place").toBe(true);
});

test("sign-in and the dashboard load the full bundle, which goes on to every page in place", async ({ page }) => {
  const bundles: string[] = [];
  page.on("request", (request) => {
    const file = new URL(request.url()).pathname;
    if (file.endsWith(".wasm")) bundles.push(file.replace(/\.[0-9a-f]+\.wasm$/, ".wasm"));
  });
  const preloaded = page.locator("link[rel=preload][href$='.wasm']");

  // The readers' bundle (hydrated: the room is live) leaves sign-in to the browser, which
  // loads the full bundle.
  const room = uniqueRoom("nav-full");
  await enterRoom(page, server.url, room, "Guest");
  await expect(preloaded).toHaveAttribute("href", /\/pkg\/confab(\.[0-9a-f]+)?\.wasm$/);
  await markDocument(page);
  await page.getByTestId("sign-out").click();
  bundles.length = 0;
  await page.getByTestId("sign-in-link").click();
  await expect(page).toHaveURL(`${server.url}/signin?next=/rooms/${room}`);
  await expect(page.getByRole("heading", { name: "Your account" })).toBeVisible();
  await expect(preloaded).toHaveAttribute("href", /\/pkg\/confab-full(\.[0-9a-f]+)?\.wasm$/);
  expect(await sameDocument(page), "a new document").toBe(false);
  await expect.poll(() => bundles).toEqual(["/pkg/confab-full.wasm"]);

  // Signing in on the way to the dashboard.
  await page.goto(`${server.url}/signin?next=/dashboard`);
  const form = page.getByTestId("sign-in-form");
  await form.getByLabel("Username").fill(operator);
  await form.getByLabel("Password").fill(OPERATOR_PASSWORD);
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(`${server.url}/dashboard`);
  await expect(page.getByRole("heading", { name: "Dashboard" })).toBeVisible();
  await expect(page.getByTestId("dashboard-status")).toHaveText("Live");
  await expect(page.getByTestId("me")).toHaveText(operator);

  // From the full bundle, the rest of the app is in place too.
  await markDocument(page);
  await page.getByRole("link", { name: "Confab" }).click();
  await expect(page.getByRole("heading", { name: "Talk in real time." })).toBeVisible();
  expect(await sameDocument(page), "changed in place").toBe(true);
  expect(new Set(bundles)).toEqual(new Set(["/pkg/confab-full.wasm"]));
});
