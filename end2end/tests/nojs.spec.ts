// Without JavaScript the app still works: the composer posts as a form, sign-in and other form
// errors are shown, and signing in returns to the page the reader came from (with JavaScript
// too).
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start();
});
test.afterAll(async () => {
  await server.stop();
});

async function account(prefix: string): Promise<string> {
  const username = `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  const created = await fetch(`${server.url}/api/accounts`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password: "correct horse battery" }),
  });
  expect(created.status).toBe(201);
  return username;
}

test("without JavaScript: sign-in errors show, signing in returns to the room, the composer posts", async ({ browser }) => {
  const username = await account("nojs");
  const room = uniqueRoom("nojs");
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const watcher = await browser.newPage();
  await enterRoom(watcher, server.url, room, "Wat");

  await page.goto(`${server.url}/rooms/${room}`);
  await page.getByTestId("sign-in-link").click();
  await expect(page).toHaveURL(new RegExp(`/signin\\?next=/rooms/${room}$`));
  const form = page.getByTestId("sign-in-form");
  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill("wrong words here");
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(form.getByRole("alert")).toContainText(/password/i);
  await expect(page).toHaveURL(/next=(%2F|\/)rooms(%2F|\/)/);

  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill("correct horse battery");
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.getByTestId("me")).toHaveText(username);

  // The composer is a form: the message is stored and shown after the redirect, and reaches
  // the others live.
  await page.getByRole("textbox", { name: "Message" }).fill("sent **without** JavaScript");
  await page.getByRole("button", { name: "Send" }).click();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.getByTestId("messages")).toContainText("sent without JavaScript");
  await expect(page.locator(".messages strong")).toHaveText("without");
  await expect(watcher.getByTestId("messages")).toContainText("sent without JavaScript");

  // A refusal is shown at the composer.
  await page.getByRole("button", { name: "Send" }).click();
  await expect(page.getByRole("alert")).toContainText("Not sent: the message is empty");
  await context.close();
  await watcher.close();
});

test("with JavaScript, signing in from a room returns to it", async ({ page }) => {
  const username = await account("js");
  const room = uniqueRoom("back");
  await page.goto(`${server.url}/rooms/${room}`);
  await page.getByTestId("sign-in-link").click();
  const form = page.getByTestId("sign-in-form");
  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill("correct horse battery");
  await form.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(new RegExp(`/rooms/${room}$`));
  await expect(page.getByTestId("status")).toHaveText("Live");
});
