// Peer for scripts/bench: follows the user stream with masto.js and prints each event as one
// JSON line, exiting after COUNT events.
//
// usage: MASTODON_TOKEN=... node masto-reader.mjs STREAMING_URL COUNT
import { createStreamingAPIClient } from "masto";

const [streamingApiUrl, countText] = process.argv.slice(2);
const count = Number(countText);
if (!streamingApiUrl || !Number.isInteger(count) || count < 1) {
  console.error("usage: node masto-reader.mjs STREAMING_URL COUNT");
  process.exit(2);
}

const client = createStreamingAPIClient({
  streamingApiUrl,
  accessToken: process.env.MASTODON_TOKEN,
  retry: false,
});

let printed = 0;
for await (const event of client.user.subscribe()) {
  process.stdout.write(JSON.stringify(event) + "\n");
  printed += 1;
  if (printed >= count) {
    break;
  }
}
client.close();
process.exit(0);
