// Every page in light and dark, on a phone and a desktop: no serious accessibility violation
// (axe-core: WCAG 2.2 A/AA, contrast included), nothing wider than the screen, and in a room
// the composer on screen without scrolling. Screenshots land in test-results/looks/ for people
// to look at.
import AxeBuilder from "@axe-core/playwright";
import { Browser, expect, Page, test } from "@playwright/test";
import { ConfabServer } from "./server";
import { enterRoom, send, uniqueRoom } from "./helpers";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start({ CONFAB_SEND_RATE: "0" });
});
test.afterAll(async () => {
  await server.stop();
});

// A long name (the most a name may have is 32 characters): the top bar must still fit a phone.
const reader = "Ana Maria Gonzalez-Lindqvist";

const sizes = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
};

// Both checks wait for the page's load event: until then its stylesheet may not apply yet (a
// form posted before hydration loads a new page, and its text is there before its styles).
async function seriousViolations(page: Page): Promise<string[]> {
  await page.waitForLoadState("load");
  const results = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"])
    .analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

async function fitsTheScreen(page: Page) {
  await page.waitForLoadState("load");
  const wide = await page.evaluate(() =>
    [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
      .map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`),
  );
  expect(wide, "nothing is wider than the screen").toEqual([]);
}

/** A room with some history: a mention, a long line, a second room with unread messages. */
async function busyRoom(browser: Browser): Promise<{ room: string; other: string }> {
  const room = uniqueRoom("looks");
  const other = uniqueRoom("elsewhere");
  const bo = await browser.newPage();
  await enterRoom(bo, server.url, other, "Bo");
  await bo.goto(`${server.url}/rooms/${room}`);
  await expect(bo.getByTestId("status")).toHaveText("Live");
  await send(bo, "Morning! The build is green again.");
  await send(bo, `@${reader} could you look at the release notes before lunch?`);
  await send(bo, "A long line without spaces: " + "x".repeat(120));
  await bo.close();
  return { room, other };
}

for (const scheme of ["light", "dark"] as const) {
  for (const [size, viewport] of Object.entries(sizes)) {
    test(`the home and room pages in ${scheme} on a ${size}`, async ({ browser }) => {
      const { room, other } = await busyRoom(browser);
      const context = await browser.newContext({ colorScheme: scheme, viewport });
      const page = await context.newPage();

      await page.goto(server.url);
      await fitsTheScreen(page);
      expect(await seriousViolations(page)).toEqual([]);
      await page.screenshot({ path: `test-results/looks/home-${scheme}-${size}.png` });

      await enterRoom(page, server.url, other, reader);
      await page.goto(`${server.url}/rooms/${room}`);
      await expect(page.getByTestId("status")).toHaveText("Live");
      await send(page, "On it after the stand-up.");
      await expect(page.locator(".message.mine:not(.pending)")).toHaveCount(1);
      await fitsTheScreen(page);
      await expect(page.getByRole("textbox", { name: "Message" })).toBeInViewport();
      expect(await seriousViolations(page)).toEqual([]);
      await page.screenshot({ path: `test-results/looks/room-${scheme}-${size}.png` });

      if (size === "phone") {
        // The sidebar is a drawer behind the "Rooms" button.
        await expect(page.getByTestId("sidebar")).toBeHidden();
        await page.getByRole("button", { name: /Rooms/ }).click();
        await expect(page.getByTestId("sidebar")).toBeVisible();
        expect(await seriousViolations(page)).toEqual([]);
        await page.screenshot({ path: `test-results/looks/drawer-${scheme}-${size}.png` });
      }

      // The sign-in page, with the error a wrong password gets (the form's own dispatch, or the
      // browser's post when the click comes before hydration).
      await page.goto(`${server.url}/signin`);
      const form = page.getByTestId("sign-in-form");
      await form.getByLabel("Username").fill("nobody_here");
      await form.getByLabel("Password").fill("not the password");
      await form.getByRole("button", { name: "Sign in" }).click();
      await expect(form.getByRole("alert")).toHaveText("wrong username or password");
      await fitsTheScreen(page);
      expect(await seriousViolations(page)).toEqual([]);
      await page.screenshot({ path: `test-results/looks/signin-${scheme}-${size}.png`, fullPage: true });
      await context.close();
    });
  }
}
