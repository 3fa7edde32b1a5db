// The first-load benchmark (`make bench-first-load`): the optimized build, throttled like a
// phone network. Kept apart from the test suite, which runs against the debug build.
import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

export default defineConfig({ ...base, testDir: "./perf", timeout: 180_000 });
