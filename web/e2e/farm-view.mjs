// The farm screen of a big farm in headless Chromium on a wall display (2560×1440): how long
// every printer takes to show, the page's JavaScript heap, and what the live stream costs the
// browser (layouts, style, script per second) while statuses change, for the dense view
// (cells) and the tile view. `scripts/bench farm 2000` runs it against a farm of 2,000 printing
// printers; it can run against any Printyard (`scripts/dev up`).
//
//   PRINTYARD_URL         the api's address (http://127.0.0.1:8080)
//   PRINTYARD_KEY         a key that may read
//   PRINTYARD_PRINTERS    how many printers the farm has (the page must show them all)
//   PRINTYARD_LIVE_SECS   the live window measured per view (30)
//   PRINTYARD_SCREENSHOTS where the screenshots go (default e2e/screenshots)
//   CHROMIUM              the browser (default /usr/bin/chromium)
//
// Prints one line of figures per view; exits 1 when a view does not show every printer or the
// dense view's order is wrong.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.PRINTYARD_URL ?? "http://127.0.0.1:8080";
const key = process.env.PRINTYARD_KEY;
const expected = Number(process.env.PRINTYARD_PRINTERS ?? NaN);
const liveSecs = Number(process.env.PRINTYARD_LIVE_SECS ?? 30);
const shots = process.env.PRINTYARD_SCREENSHOTS ?? "e2e/screenshots";
assert(key && Number.isFinite(expected), "PRINTYARD_KEY and PRINTYARD_PRINTERS are needed");
mkdirSync(shots, { recursive: true });
const width = 2560;
const height = 1440;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-precise-memory-info"],
});

const printers = await (await fetch(`${base}/api/v1/printers`, { headers: { "X-API-Key": key }, signal: AbortSignal.timeout(30_000) })).json();
assert.equal(printers.length, expected, "the farm's printers");
const names = new Map(printers.map((p) => [String(p.id), p.name]));
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** Chromium's own counters for the page (CDP `Performance.getMetrics`). */
async function metrics(cdp) {
  const { metrics } = await cdp.send("Performance.getMetrics");
  return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
}

async function measure(view, selector) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/`);
  await page.click("button[name=use-key]");
  await page.fill("input[name=api-key]", key);
  await page.click("button[type=submit]");
  await page.waitForSelector("header.top nav");
  // From the farm screen's address to every printer on it.
  const started = Date.now();
  await page.goto(`${base}/#/wall?view=${view}`);
  await page.waitForFunction(([s, n]) => document.querySelectorAll(s).length === n, [selector, expected], { timeout: 120_000, polling: 50 });
  const rendered = Date.now() - started;
  const onScreen = await page.locator(selector).evaluateAll((els, h) => els.filter((e) => e.getBoundingClientRect().bottom <= h).length, height);
  if (view === "cells") {
    // Within each category the names are in natural order (`#9` before `#10`).
    const order = await page.locator(selector).evaluateAll((els) => els.map((e) => [e.dataset.category, e.dataset.printerId]));
    for (let i = 1; i < order.length; i++) {
      const [[ca, a], [cb, b]] = [order[i - 1], order[i]];
      if (ca === cb) {
        assert(collator.compare(names.get(a), names.get(b)) <= 0, `${names.get(a)} before ${names.get(b)}`);
      }
    }
  }
  await page.screenshot({ path: join(shots, `farm-${expected}-${view}.png`) });
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  // Settle, then the live window: statuses keep arriving, in batches, as the farm prints.
  await page.waitForTimeout(3_000);
  await cdp.send("HeapProfiler.collectGarbage");
  const before = await metrics(cdp);
  await page.waitForTimeout(liveSecs * 1000);
  const after = await metrics(cdp);
  const per = (name) => (after[name] - before[name]) / liveSecs;
  // What the page holds (after a collection), and the most it reached meanwhile.
  await cdp.send("HeapProfiler.collectGarbage");
  const heap = (await metrics(cdp)).JSHeapUsedSize / 1048576;
  const peak = after.JSHeapTotalSize / 1048576;
  assert.deepEqual(errors, [], "no page errors");
  console.log(
    `${view.padEnd(5)}: ${expected} shown in ${(rendered / 1000).toFixed(2)} s, ${onScreen} of them on one ${width}×${height} screen; ` +
      `JS heap ${heap.toFixed(1)} MB (${peak.toFixed(0)} MB allocated); live ${liveSecs} s: ${per("LayoutCount").toFixed(1)} layouts/s (${(per("LayoutDuration") * 1000).toFixed(1)} ms/s), ` +
      `style ${(per("RecalcStyleDuration") * 1000).toFixed(1)} ms/s, script ${(per("ScriptDuration") * 1000).toFixed(1)} ms/s, ` +
      `main thread busy ${(per("TaskDuration") * 100).toFixed(1)} % of a core`,
  );
  await context.close();
}

try {
  await measure("cells", "button.cell");
  await measure("tiles", "article.tile");
} finally {
  await browser.close();
}
