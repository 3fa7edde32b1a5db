// A client written for the articles' generic pub/sub server, in a browser: it knows only
// `subscribe`, `unsubscribe` and `publish {channel, data}`, and reads deliveries as
// `{channel, data}` (every other field and message it ignores). Given a session token it
// works against Confab unchanged: the only addition is the `auth` message.
import { expect, test } from "@playwright/test";
import { ConfabServer } from "./server";

let server: ConfabServer;
test.beforeAll(async () => {
  server = await ConfabServer.start();
});
test.afterAll(async () => {
  await server.stop();
});

/** A guest session's token (POST /api/session), as a backend would hand it to the page. */
async function token(name: string): Promise<string> {
  const response = await fetch(`${server.url}/api/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  expect(response.status).toBe(200);
  return (await response.json()).token;
}

test("a client written for the generic pub/sub server works once it authenticates", async ({ page }) => {
  await page.goto(`${server.url}/`);
  const [readerToken, writerToken] = [await token("Reader"), await token("Writer")];
  const received = await page.evaluate(
    async ({ url, readerToken, writerToken }) => {
      // The articles' client, as a small class: connect, subscribe, publish, on message.
      class PubSubClient {
        ws: WebSocket;
        handlers = new Map<string, (data: unknown) => void>();
        opened: Promise<void>;
        constructor(url: string, token: string) {
          this.ws = new WebSocket(url);
          this.opened = new Promise((resolve) => (this.ws.onopen = () => resolve()));
          this.ws.onmessage = (event) => {
            const msg = JSON.parse(event.data);
            const handler = this.handlers.get(msg.channel);
            if (handler && "data" in msg) handler(msg.data);
          };
          this.opened.then(() => this.ws.send(JSON.stringify({ type: "auth", token })));
        }
        async subscribe(channel: string, handler: (data: unknown) => void) {
          await this.opened;
          this.handlers.set(channel, handler);
          this.ws.send(JSON.stringify({ type: "subscribe", channel }));
        }
        async publish(channel: string, data: unknown) {
          await this.opened;
          this.ws.send(JSON.stringify({ type: "publish", channel, data }));
        }
        async unsubscribe(channel: string) {
          this.handlers.delete(channel);
          this.ws.send(JSON.stringify({ type: "unsubscribe", channel }));
        }
      }
      const reader = new PubSubClient(url, readerToken);
      const writer = new PubSubClient(url, writerToken);
      const got: unknown[] = [];
      const all = new Promise<void>((resolve) =>
        reader.subscribe("scores", (data) => {
          got.push(data);
          if (got.length === 3) resolve();
        }),
      );
      // Subscriptions are answered in order: a round trip makes sure it is in place.
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (const score of [{ home: 1, away: 0 }, { home: 1, away: 1 }, "full time"]) {
        await writer.publish("scores", score);
      }
      await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      await reader.unsubscribe("scores");
      await writer.publish("scores", "after unsubscribing");
      await new Promise((resolve) => setTimeout(resolve, 300));
      return got;
    },
    { url: server.url.replace("http", "ws") + "/ws", readerToken, writerToken },
  );
  expect(received).toEqual([{ home: 1, away: 0 }, { home: 1, away: 1 }, "full time"]);
});
