// Accounts in the browser: sign up, chat, sign out (which also ends the other tab's live
// connection), wrong password and taken username errors, sign in again; markup stays text.
import { expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { hydrated, send, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start();
});
test.afterAll(async () => {
  await server.stop();
});

function uniqueUser(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
}

async function signUp(page: Page, username: string, password: string): Promise<void> {
  await page.goto(`${server.url}/signin`);
  const form = page.getByTestId("register-form");
  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill(password);
  await form.getByRole("button", { name: "Create account" }).click();
}

async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto(`${server.url}/signin`);
  const form = page.getByTestId("sign-in-form");
  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
}

test("sign up, chat, sign out, sign in again", async ({ browser }) => {
  const room = uniqueRoom("accounts");
  const ana = uniqueUser("ana");
  const ben = uniqueUser("ben");
  const anaContext = await browser.newContext();
  const benContext = await browser.newContext();
  const anaPage = await anaContext.newPage();
  const benPage = await benContext.newPage();

  await signUp(anaPage, ana, "correct horse battery");
  await expect(anaPage.getByTestId("signed-in-as")).toContainText(ana);
  await expect(anaPage.getByTestId("me")).toHaveText(ana);
  await expect(anaPage.locator(".user-badge .tag")).toHaveCount(0); // not a guest
  await signUp(benPage, ben, "another horse staple");
  await expect(benPage.getByTestId("me")).toHaveText(ben);

  // Both chat in a room under their account names.
  for (const page of [anaPage, benPage]) {
    await page.goto(`${server.url}/rooms/${room}`);
    await expect(page.getByTestId("status")).toHaveText("Live");
  }
  await expect(anaPage.getByTestId("members")).toContainText(ben);
  await send(anaPage, "hello from my account");
  await expect(benPage.getByTestId("messages")).toContainText("hello from my account");
  await expect(benPage.locator(".message").last()).toContainText(ana);

  // An XSS payload is shown as text, live and after a reload (server-rendered).
  const payload = `<img src=x onerror="document.title='pwned'"><b>bold?</b>`;
  await send(benPage, payload);
  await expect(anaPage.locator(".message .content").last()).toHaveText(payload);
  await anaPage.reload();
  await expect(anaPage.locator(".message .content").last()).toHaveText(payload);
  await expect(anaPage.locator(".messages img, .messages b")).toHaveCount(0);
  expect(await anaPage.title()).not.toBe("pwned");
  await expect(anaPage.getByTestId("status")).toHaveText("Live");

  // A second tab of Ana's; signing out in the first ends the second's live connection.
  const secondTab = await anaContext.newPage();
  await secondTab.goto(`${server.url}/rooms/${room}`);
  await expect(secondTab.getByTestId("status")).toHaveText("Live");
  await anaPage.getByTestId("sign-out").click();
  await expect(anaPage.getByTestId("sign-in-link")).toBeVisible();
  await expect(anaPage.getByRole("textbox", { name: "Message" })).toHaveCount(0);
  // The other tab is told at once: signed out, with a way to sign in again, no composer.
  await expect(secondTab.getByTestId("status")).toHaveText("Signed out");
  await expect(secondTab.getByTestId("sign-in-link")).toBeVisible();
  await expect(secondTab.getByRole("textbox", { name: "Message" })).toHaveCount(0);
  await expect(anaPage.getByTestId("status")).toHaveText("Signed out");
  await expect(benPage.getByTestId("members")).not.toContainText(ana);

  // Mistakes get clear errors; the right password signs in again.
  await signIn(anaPage, ana, "wrong horse");
  await expect(anaPage.getByTestId("sign-in-form").getByRole("alert")).toHaveText("wrong username or password");
  await signUp(anaPage, ana.toUpperCase(), "correct horse battery");
  await expect(anaPage.getByTestId("register-form").getByRole("alert")).toHaveText("that username is taken");
  await signIn(anaPage, ana, "correct horse battery");
  await expect(anaPage.getByTestId("me")).toHaveText(ana);
  await anaPage.goto(`${server.url}/rooms/${room}`);
  await expect(anaPage.getByTestId("status")).toHaveText("Live");
  await expect(anaPage.getByTestId("messages")).toContainText("hello from my account");

  await anaContext.close();
  await benContext.close();
});

test("a sign-in the network drops or a proxy refuses says so, and the form still works", async ({ page }) => {
  await page.goto(`${server.url}/signin`);
  await hydrated(page);
  const form = page.getByTestId("sign-in-form");
  await form.getByLabel("Username").fill(uniqueUser("nobody"));
  await form.getByLabel("Password").fill("any password at all");

  // The browser's call to the server function fails as on a lost connection.
  await page.route("**/fn/sign_in", (route) => route.abort("internetdisconnected"));
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(form.getByRole("alert")).toContainText("the server could not be reached");
  await expect(page).toHaveURL(`${server.url}/signin`);

  // A proxy in front answers with an error page of its own: not shown as the reason.
  await page.unroute("**/fn/sign_in");
  await page.route("**/fn/sign_in", (route) =>
    route.fulfill({ status: 502, contentType: "text/html", body: "<html><h1>502 Bad Gateway</h1></html>" }),
  );
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(form.getByRole("alert")).toHaveText("the request could not be completed (HTTP 502)");

  await page.unroute("**/fn/sign_in");
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(form.getByRole("alert")).toHaveText("wrong username or password");
});
