// Page-level steps shared by the specs.
import { expect, Page } from "@playwright/test";

/** A room id no other test uses. */
export function uniqueRoom(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** Opens a room, picks a display name there, and waits until the live connection is up. */
export async function enterRoom(page: Page, baseUrl: string, room: string, name: string): Promise<void> {
  await page.goto(`${baseUrl}/rooms/${room}`);
  await page.getByLabel("Choose a display name to join the conversation").fill(name);
  await page.getByRole("button", { name: "Continue" }).click();
  await expect(page.getByTestId("status")).toHaveText("Live");
  await expect(page.getByTestId("me")).toHaveText(name);
}

/** Until the page has hydrated: from then on its forms dispatch their own calls (before,
 * the browser posts them, as without JavaScript). */
export async function hydrated(page: Page): Promise<void> {
  await expect(page.locator("html[data-hydrated]")).toHaveCount(1);
}

/** Types and sends a message with Enter. */
export async function send(page: Page, text: string): Promise<void> {
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill(text);
  await box.press("Enter");
}

/** The sidebar, opened first where it is a drawer (phones). */
export async function sidebar(page: Page) {
  const toggle = page.locator(".drawer-toggle");
  if ((await toggle.isVisible()) && (await toggle.getAttribute("aria-expanded")) !== "true") {
    await toggle.click();
  }
  const nav = page.getByTestId("sidebar");
  await expect(nav).toBeVisible();
  return nav;
}
