// The live dashboard: an operator's page whose numbers and charts follow the deployment
// while a scripted load runs; everyone else is refused. Screenshots in light and dark, on a
// desktop and a phone.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer, OPERATOR_PASSWORD } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

const operator = `ops_${Date.now().toString(36)}`;
let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.withOperator(operator);
});
test.afterAll(async () => {
  await server.stop();
});

async function signIn(page: Page, username: string): Promise<void> {
  await page.goto(`${server.url}/signin`);
  const form = page.getByTestId("sign-in-form");
  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill(OPERATOR_PASSWORD);
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("me")).toHaveText(username);
}

/** The points of a chart's line. */
async function points(page: Page, testid: string): Promise<number> {
  const value = (await page.getByTestId(`${testid}-line`).getAttribute("points")) ?? "";
  return value.split(" ").filter(Boolean).length;
}

test("the dashboard follows a scripted load, for operators only", async ({ browser }) => {
  const opsContext = await browser.newContext();
  const ops = await opsContext.newPage();
  await signIn(ops, operator);
  const dashboard = await ops.goto(`${server.url}/dashboard`);
  expect(dashboard?.status()).toBe(200);
  await expect(ops.getByRole("heading", { name: "Dashboard" })).toBeVisible();
  await expect(ops.getByTestId("dashboard-status")).toHaveText("Live");
  await expect(ops.getByTestId("instances")).toHaveText("1");
  await expect(ops.getByTestId("health")).toHaveText("ok");

  // A guest chats for a few seconds to another: the figures and the charts follow.
  const room = uniqueRoom("load");
  const guestContext = await browser.newContext();
  const guest = await guestContext.newPage();
  await enterRoom(guest, server.url, room, "Loader");
  const listenerContext = await browser.newContext();
  await enterRoom(await listenerContext.newPage(), server.url, room, "Listener");
  const before = await points(ops, "messages");
  const load = (async () => {
    for (let n = 0; n < 8; n++) {
      await send(guest, `load ${n}`);
      await guest.waitForTimeout(500);
    }
  })();
  await expect
    .poll(async () => Number(await ops.getByTestId("messages").textContent()), { timeout: 10_000 })
    .toBeGreaterThan(0);
  await expect
    .poll(async () => Number(await ops.getByTestId("deliveries").textContent()), { timeout: 10_000 })
    .toBeGreaterThan(0);
  await expect(ops.getByTestId("p99")).toHaveText(/^\d+ ms$/, { timeout: 10_000 });
  await load;
  expect(Number(await ops.getByTestId("connections").textContent())).toBeGreaterThanOrEqual(3);
  await expect.poll(() => points(ops, "messages")).toBeGreaterThan(before + 2);
  // The numbers are in each chart's accessible name, for screen readers.
  await expect(ops.getByRole("img", { name: /Messages per second: \d+ now/ })).toBeVisible();
  await expect(ops.getByRole("row")).toHaveCount(2);

  // Light and dark, desktop and phone.
  for (const [scheme, size, viewport] of [
    ["light", "desktop", { width: 1280, height: 800 }],
    ["dark", "desktop", { width: 1280, height: 800 }],
    ["light", "phone", { width: 390, height: 844 }],
    ["dark", "phone", { width: 390, height: 844 }],
  ] as const) {
    await ops.emulateMedia({ colorScheme: scheme });
    await ops.setViewportSize(viewport);
    await ops.screenshot({ path: `test-results/looks/dashboard-${scheme}-${size}.png`, fullPage: true });
  }

  // A guest is no operator; nobody signed in is told to sign in.
  const refused = await guest.goto(`${server.url}/dashboard`);
  expect(refused?.status()).toBe(403);
  await expect(guest.getByRole("heading", { name: "Operators only" })).toBeVisible();
  await expect(guest.getByTestId("dashboard")).toHaveCount(0);
  const anonymous = await browser.newPage();
  const signedOut = await anonymous.goto(`${server.url}/dashboard`);
  expect(signedOut?.status()).toBe(401);
  await expect(anonymous.getByRole("link", { name: "Sign in" }).first()).toBeVisible();
  await anonymous.close();
  await opsContext.close();
  await guestContext.close();
  await listenerContext.close();
});
