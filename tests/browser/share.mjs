// A real browser opens share links and must obtain exactly the original bytes.
//
// Usage: node share.mjs ORIGINAL ARTIFACTS NAME=URL [NAME=URL ...]
// For each link: headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// opens the page, waits for the image to be displayed inline, clicks Save, and compares the
// saved file with ORIGINAL byte for byte. It also checks that no request the page made
// carried the key of the URL fragment. A screenshot of each page goes to ARTIFACTS/NAME.png.
// Exits non-zero on the first difference.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(process.env.PLAYWRIGHT_CORE_DIR ? join(process.env.PLAYWRIGHT_CORE_DIR, "x.js") : import.meta.url);
const { chromium } = require("playwright-core");

const [original, artifacts, ...links] = process.argv.slice(2);
if (!original || !artifacts || links.length === 0) {
  console.error("usage: node share.mjs ORIGINAL ARTIFACTS NAME=URL...");
  process.exit(2);
}
const expected = readFileSync(original);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  for (const link of links) {
    const at = link.indexOf("=");
    const name = link.slice(0, at), url = link.slice(at + 1);
    const key = new URL(url).hash.replace(/^#k=/, "");
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    const requests = [];
    page.on("request", (r) => requests.push(r.url() + " " + JSON.stringify(r.headers())));
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url);
    // The image is shown inline once fetched (and, end to end, decrypted here).
    await page.waitForSelector("#preview:not([hidden])", { timeout: 60_000 });
    const width = await page.$eval("#preview", (img) => img.decode().then(() => img.naturalWidth));
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#save")]);
    const saved = join(artifacts, name + ".download");
    await download.saveAs(saved);
    await page.screenshot({ path: join(artifacts, name + ".png"), fullPage: true });
    const got = readFileSync(saved);
    const status = await page.textContent("#status");
    const leaked = key && requests.some((r) => r.includes(key));
    const same = got.equals(expected);
    console.log(`${name}: image ${width} px wide, saved ${got.length} bytes, ${same ? "identical" : "DIFFERENT"} ` +
                `to the original (${expected.length}); status "${status}"; ${requests.length} requests` +
                (key ? (leaked ? ", KEY SENT TO THE SERVER" : ", fragment key never sent") : ""));
    if (!same || leaked || width === 0 || errors.length) {
      if (errors.length) console.log(`${name}: page errors: ${errors.join("; ")}`);
      failed = true;
    }
    await context.close();
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
