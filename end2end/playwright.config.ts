// Playwright drives Debian's Chromium (never a downloaded browser). Each test file starts its
// own Confab servers on free loopback ports (see tests/server.ts), so tests can restart them.
import { defineConfig } from "@playwright/test";

const desktop = { viewport: { width: 1280, height: 800 } };
const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };

export default defineConfig({
  testDir: "./tests",
  timeout: 60_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  // Two workers on two cores: a third off the suite's time, and stable in repeated runs
  // (each spec file starts its own servers, so workers share nothing).
  workers: 2,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: [["list"]],
  use: {
    actionTimeout: 10_000,
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  // Everything runs on a desktop in light mode; what the issue of the app's looks names
  // (scrolling, unread and mentions, formatting, signing out, no JavaScript) runs again in
  // dark mode and on a phone (narrow, touch, the sidebar a drawer). looks.spec.ts goes
  // through the four itself, with screenshots.
  projects: [
    { name: "desktop-light", use: { colorScheme: "light", ...desktop } },
    ...([
      ["desktop-dark", "dark", desktop],
      ["phone-light", "light", phone],
      ["phone-dark", "dark", phone],
    ] as const).map(([name, colorScheme, size]) => ({
      name,
      testMatch: /(timeline|sidebar|formatting|accounts|nojs)\.spec\.ts/,
      use: { colorScheme, ...size },
    })),
  ],
});
