// End-to-end check of the dashboard in headless Chromium against a running Printyard with a
// printing A1 mini (the test suite's farm, or `scripts/dev up`'s: `scripts/dev e2e`).
//
//   PRINTYARD_URL         the api's address (http://127.0.0.1:8080)
//   PRINTYARD_ADMIN_KEY   an admin key; PRINTYARD_READ_KEY a read-only key
//   PRINTYARD_UPLOAD      a 3MF sliced for the A1 mini, to upload and queue
//   PRINTYARD_SCREENSHOTS where the screenshots go (default e2e/screenshots)
//   CHROMIUM              the browser (default /usr/bin/chromium)
//
// Exits 0 when every check held; prints each step, and `paused <id>` for the printer it paused.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.PRINTYARD_URL ?? "http://127.0.0.1:8080";
const adminKey = process.env.PRINTYARD_ADMIN_KEY;
const readKey = process.env.PRINTYARD_READ_KEY;
const upload = process.env.PRINTYARD_UPLOAD;
const shots = process.env.PRINTYARD_SCREENSHOTS ?? "e2e/screenshots";
assert(adminKey && readKey && upload, "PRINTYARD_ADMIN_KEY, PRINTYARD_READ_KEY and PRINTYARD_UPLOAD are needed");
mkdirSync(shots, { recursive: true });

const BUDGET_JS_GZIP = 300 * 1024;
const step = (text) => console.log(`- ${text}`);

/** A request of the test's own (not through the page), answered as JSON. */
async function call(method, path, key, body) {
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { "X-API-Key": key, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body && JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  assert(response.ok, `${method} ${path}: ${response.status}`);
  return response.json();
}

// The test's own reads use a key of their own: rate limits count per key, and the page's
// budget is the page's.
const checker = await call("POST", "/api-keys", adminKey, { name: "dashboard e2e checks", permissions: ["read"] });
const apiGet = (path) => call("GET", path, checker.key);

/** Polls `check` until it returns a value, or fails after `ms` with `what`. */
async function until(what, check, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false && value !== null) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

/** Page errors and console errors (CSP refusals among them) of every page: the run fails on any. */
const pageErrors = [];

async function openPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused request (a camera that is unavailable, say) is the API's answer, shown in the page.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) pageErrors.push(`console error: ${m.text()}`);
  });
  return { context, page };
}

async function signIn(page, key) {
  await page.goto(`${base}/`);
  await page.click("button[name=use-key]");
  await page.fill("input[name=api-key]", key);
  await page.click("button[type=submit]");
  await page.waitForSelector("header.top nav");
}

async function signInAs(page, username, password) {
  await page.goto(`${base}/`);
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
}

const tile = (page, id) => page.locator(`article.tile[data-printer-id="${id}"]`);

/** The page in use, photographed when a check fails. */
let current;

try {
  const printers = await apiGet("/printers");
  assert(printers.length > 0, "the farm has printers");
  const printing = printers.filter((p) => p.status === "printing");
  assert(printing.length > 0, "a printer is printing");

  // 1. The first load: its JavaScript within budget, counted as sent (gzip).
  {
    const { context, page } = await openPage();
    let js = 0;
    page.on("requestfinished", async (request) => {
      if (request.resourceType() === "script") js += (await request.sizes()).responseBodySize;
    });
    await page.goto(`${base}/`);
    await page.waitForSelector("input[name=username]");
    await page.waitForLoadState("networkidle");
    assert.equal(await page.locator(".signin .error").count(), 0, "a first visit shows no error");
    assert(js > 0, "the page loaded its script");
    assert(js < BUDGET_JS_GZIP, `first load JavaScript ${js} B over the budget`);
    step(`first load: ${js} B of JavaScript (gzip), budget ${BUDGET_JS_GZIP} B`);
    await page.screenshot({ path: join(shots, "sign-in.png") });
    await context.close();
  }

  const { context, page } = await openPage();
  current = page;
  let navigations = 0;
  page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations++);
  await signIn(page, adminKey);

  // 2. The wall: every printer, and a printing tile moving on without a reload.
  await page.waitForSelector("article.tile");
  for (const p of printers) await tile(page, p.id).waitFor();
  const names = await page.locator("article.tile h2").allTextContents();
  assert.deepEqual([...names].sort(), printers.map((p) => p.name).sort(), "one tile per printer");
  // Printers that need someone come first.
  const problems = await page.locator("article.tile").evaluateAll((tiles) => tiles.map((t) => t.classList.contains("problem")));
  assert.deepEqual(problems, [...problems].sort((a, b) => Number(b) - Number(a)), "problem tiles first");
  const watched = printing[0].id;
  await tile(page, watched).locator('.state[data-state="printing"]').waitFor();
  const progressOf = async (id) => Number((await tile(page, id).locator(".progress").textContent()).replace("%", ""));
  const before = await progressOf(watched);
  const navigated = navigations;
  const after = await until("the printing tile's progress to advance", async () => {
    const now = await progressOf(watched);
    return now > before ? now : undefined;
  }, 90_000);
  assert.equal(navigations, navigated, "no reload");
  await tile(page, watched).locator("img.thumb").waitFor();
  step(`wall: ${printers.length} tiles, ${problems.filter(Boolean).length} with a problem first; printer ${watched} went from ${before}% to ${after}% without a reload, its print's thumbnail shown`);
  await page.screenshot({ path: join(shots, "wall.png"), fullPage: true });

  // 3. Stop asks first; pause from the tile reaches the printer, whose report shows it paused.
  await tile(page, watched).getByRole("button", { name: "Stop" }).click();
  await tile(page, watched).getByText(/Stop the print on/).waitFor();
  await tile(page, watched).getByRole("button", { name: "No" }).click();
  await tile(page, watched).getByRole("button", { name: "Pause" }).click();
  await tile(page, watched).locator('.state[data-state="paused"]').waitFor({ timeout: 30_000 });
  const status = await apiGet(`/printers/${watched}/status`);
  assert.equal(status.state, "paused", "the printer reports paused");
  console.log(`paused ${watched}`);
  step(`pause: printer ${watched} reports paused`);
  await tile(page, watched).getByRole("button", { name: "Resume" }).click();
  await tile(page, watched).locator('.state[data-state="printing"]').waitFor({ timeout: 30_000 });
  step("resume: printing again");

  // 3b. The dense view: a cell per printer in its state's colour, problems first, grouping,
  // the filter box from the keyboard, the tile's detail on hover and on a click, the counts.
  {
    await page.selectOption("select[name=view]", "cells");
    const cell = (id) => page.locator(`button.cell[data-printer-id="${id}"]`);
    for (const p of printers) await cell(p.id).waitFor();
    assert.equal(await page.locator("button.cell").count(), printers.length, "one cell per printer");
    // Each cell's category is its printer's state as the API gives it.
    const expected = (s) =>
      !s.connected ? "offline" : s.state === "failed" || s.hms_status === "error" ? "failed" : s.state === "paused" ? "paused" : ["printing", "preparing"].includes(s.state) ? "printing" : s.state === "finished" ? "plate" : "idle";
    const colours = { printing: "rgb(26, 127, 55)", failed: "rgb(207, 34, 46)", idle: "rgb(208, 215, 222)", paused: "rgb(154, 103, 0)", plate: "rgb(31, 111, 235)", offline: "rgb(66, 74, 83)" };
    const categories = {};
    for (const p of printers) {
      const want = expected(await apiGet(`/printers/${p.id}/status`));
      await until(`printer ${p.id}'s cell ${want}`, async () => (await cell(p.id).getAttribute("data-category")) === want, 15_000);
      const colour = await cell(p.id).evaluate((el) => getComputedStyle(el).backgroundColor);
      assert.equal(colour, colours[want], `a ${want} cell's colour`);
      categories[p.id] = want;
    }
    assert.ok(Object.values(categories).includes("printing"), `a printing cell: ${JSON.stringify(categories)}`);
    const order = await page.locator("button.cell").evaluateAll((cells) => cells.map((c) => c.dataset.category));
    const problem = (c) => ["failed", "offline", "plate"].includes(c);
    assert.deepEqual(order.map(problem), [...order.map(problem)].sort((a, b) => Number(b) - Number(a)), `problems first: ${order}`);
    // Grouped by model: one group per model; by state: the failed group first.
    await page.selectOption("select[name=group]", "model");
    await until("a group per model", async () => (await page.locator(".cell-group").count()) === new Set(printers.map((p) => p.model)).size || undefined, 5_000);
    await page.selectOption("select[name=group]", "state");
    const groups = await page.locator(".cell-group").evaluateAll((g) => g.map((x) => x.dataset.group));
    const rank = ["failed", "offline", "plate", "paused", "maintenance", "printing", "finished", "idle"];
    assert.deepEqual(groups, [...new Set(Object.values(categories))].sort((a, b) => rank.indexOf(a) - rank.indexOf(b)), "groups by state, problems first");
    await page.selectOption("select[name=group]", "");
    // "/" puts the cursor in the filter box; a name, then a serial, leave one cell; Escape clears.
    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("/");
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute("name")), "filter", "/ focuses the filter");
    const target = printers[printers.length - 1];
    await page.keyboard.type(target.name);
    await until("one cell for the name", async () => (await page.locator("button.cell").count()) === 1 || undefined, 5_000);
    await cell(target.id).waitFor();
    await page.keyboard.press("Escape");
    await until("every cell again", async () => (await page.locator("button.cell").count()) === printers.length || undefined, 5_000);
    await page.fill("input[name=filter]", target.serial_number);
    await until("one cell for the serial", async () => (await page.locator("button.cell").count()) === 1 || undefined, 5_000);
    await page.fill("input[name=filter]", "");
    // Hover shows the printer's tile beside the cells; a click keeps it; Escape closes it.
    await cell(watched).hover();
    await page.locator(`.cell-detail article.tile[data-printer-id="${watched}"]`).waitFor();
    await cell(watched).click();
    await page.locator(".cell-detail button.close").waitFor();
    await page.screenshot({ path: join(shots, "wall-cells.png"), fullPage: true });
    await page.keyboard.press("Escape");
    await page.locator(".cell-detail").waitFor({ state: "detached" });
    // The counts: the farm's printing and failed, each a filter.
    const countOf = async (key) => Number(await page.locator(`.counts tr[data-site=""] button[data-count="${key}"] strong`).textContent());
    const failedIds = printers.filter((p) => categories[p.id] === "failed").map((p) => p.id);
    const printingIds = printers.filter((p) => ["printing", "paused"].includes(categories[p.id])).map((p) => p.id);
    assert.equal(await countOf("failed"), failedIds.length, "the failed count");
    assert.equal(await countOf("printing"), printingIds.length, "the printing count");
    const [chip, ids] = failedIds.length > 0 ? ["failed", failedIds] : ["printing", printingIds];
    await page.click(`.counts tr[data-site=""] button[data-count="${chip}"]`);
    await until(`only the ${chip} cells`, async () => (await page.locator("button.cell").count()) === ids.length || undefined, 5_000);
    await page.click(`.counts tr[data-site=""] button[data-count="${chip}"]`);
    await until("every cell again", async () => (await page.locator("button.cell").count()) === printers.length || undefined, 5_000);
    await page.selectOption("select[name=view]", "tiles");
    step(`dense view: ${printers.length} cells (${JSON.stringify(categories)}), problems first, grouped by model and state, filtered by name and serial from the keyboard, detail on hover and click, counts as filters`);
  }

  // 4. The archive: upload, edit, search.
  await page.goto(`${base}/#/archive`);
  await page.waitForSelector("ul.archives");
  const uploadsBefore = (await apiGet("/archives?status=uploaded&limit=1")).total;
  await page.setInputFiles("input[name=upload]", upload);
  await page.getByText(/^Uploaded /).waitFor({ timeout: 30_000 });
  const uploaded = await until("the upload in the API", async () => {
    const page = await apiGet("/archives?status=uploaded&limit=1");
    return page.total > uploadsBefore ? page.archives[0] : undefined;
  });
  const row = page.locator(`li.archive[data-archive-id="${uploaded.id}"]`);
  await row.waitFor();
  step(`upload: archive ${uploaded.id} (${uploaded.name}) listed`);
  const unique = `e2e${Date.now().toString(36)}`;
  await row.getByRole("button", { name: "Edit" }).click();
  await page.fill("form.editor input[name=name]", `Bracket ${unique}`);
  await page.fill("form.editor input[name=tags]", "e2e, bracket");
  await page.fill("form.editor textarea[name=notes]", "uploaded by the browser test");
  await page.click("form.editor button[type=submit]");
  await row.getByText(`Bracket ${unique}`).waitFor();
  await row.locator(".tag", { hasText: "bracket" }).waitFor();
  const edited = await apiGet(`/archives/${uploaded.id}`);
  assert.equal(edited.name, `Bracket ${unique}`);
  assert.deepEqual([...edited.tags].sort(), ["bracket", "e2e"]);
  const total = (await apiGet("/archives?limit=1")).total;
  assert(total > 1, "more than one archive, so that a search can leave some out");
  await page.fill("input[name=search]", unique);
  await until("the search to leave one archive", async () => (await page.locator("li.archive").count()) === 1 || undefined);
  assert.equal(await page.locator("li.archive").first().getAttribute("data-archive-id"), String(uploaded.id));
  await page.getByText(/^1 archives$/).waitFor();
  step(`search "${unique}": 1 of ${total} archives`);
  await page.fill("input[name=search]", "");
  await until("the whole list again", async () => (await page.locator("li.archive").count()) === Math.min(total, 50) || undefined);
  await page.screenshot({ path: join(shots, "archive.png"), fullPage: true });

  // 5. The other screens, each with its own content.
  await page.goto(`${base}/#/cameras`);
  await page.locator("button.camera").first().waitFor();
  await until("a snapshot or the camera's reason", async () => (await page.locator("button.camera img, button.camera .noframe:not(:text('waiting'))").count()) > 0 || undefined, 30_000);
  await page.screenshot({ path: join(shots, "cameras.png"), fullPage: true });
  const withFrame = page.locator("button.camera", { has: page.locator("img") }).first();
  if ((await withFrame.count()) > 0) {
    await withFrame.click();
    const live = page.locator(".overlay img.live-frame");
    await live.waitFor({ timeout: 30_000 });
    await until("a decoded live frame", () => live.evaluate((img) => img.complete && img.naturalWidth > 0));
    await page.screenshot({ path: join(shots, "camera-live.png") });
    await page.getByRole("button", { name: "Close" }).click();
    step("cameras: snapshots in the grid, a live MJPEG stream on click");
  }
  // The queue: two jobs for a busy printer wait, with the reason; a drag swaps them. The
  // uploaded file is sliced for the A1 mini, so the printer is a printing A1 mini.
  const busy = (await apiGet("/printers")).find((p) => p.status === "printing" && p.model === "A1 mini");
  assert(busy, "a printing A1 mini, for the queue's jobs to wait for");
  await page.goto(`${base}/#/queue?archive=${uploaded.id}`);
  const form = page.locator("form[aria-label='Add a job']");
  await form.locator(`select[name=archive] option[value="${uploaded.id}"]`).waitFor({ state: "attached" });
  await form.locator("select[name=target]").selectOption(`printer:${busy.id}`);
  const queued = [];
  for (let i = 0; i < 2; i++) {
    const known = new Set((await apiGet("/queue")).map((j) => j.id));
    await form.getByRole("button", { name: "Add to queue" }).click();
    queued.push(await until("the job in the queue", async () => (await apiGet("/queue")).find((j) => !known.has(j.id))?.id, 10_000));
  }
  const waitingIds = async () => (await apiGet("/queue?status=pending")).sort((a, b) => a.position - b.position).map((j) => j.id).filter((id) => queued.includes(id));
  assert.deepEqual(await waitingIds(), queued, "added in order");
  const job = (id) => page.locator(`ol.queue li[data-job-id="${id}"]`);
  await job(queued[1]).locator(".waiting").waitFor({ timeout: 15_000 });
  await job(queued[1]).dragTo(job(queued[0]));
  await until("the drag saved", async () => JSON.stringify(await waitingIds()) === JSON.stringify([queued[1], queued[0]]) || undefined, 15_000);
  step(`queue: jobs ${queued.join(", ")} waiting ("${await job(queued[0]).locator(".waiting").textContent()}"), swapped by a drag`);
  await page.screenshot({ path: join(shots, "queue.png"), fullPage: true });
  for (const id of queued) {
    await job(id).getByRole("button", { name: "Remove" }).click();
    await job(id).getByRole("button", { name: "Yes" }).click();
    await job(id).waitFor({ state: "detached" });
  }
  await page.goto(`${base}/#/statistics`);
  await page.locator(".cards .card").first().waitFor();
  const totals = await apiGet("/statistics");
  const card = (label) => page.locator(".card", { has: page.locator("span", { hasText: new RegExp(`^${label}$`) }) }).locator("strong");
  assert.equal(await card("Prints").textContent(), String(totals.total_prints), "the prints card is the API's total");
  assert.equal(await card("Successful").textContent(), String(totals.successful_prints));
  assert.equal(await card("Failed").textContent(), String(totals.failed_prints));
  if (totals.total_prints > 0) {
    assert.equal(await page.locator(".chart svg g").count(), totals.by_day.length, "a bar per day");
    assert.equal(await page.locator("table").first().locator("tbody tr").count(), totals.by_printer.length, "a row per printer");
  }
  await page.screenshot({ path: join(shots, "statistics.png"), fullPage: true });

  // Utilisation: a row per printer with its bar of hours by state, the farm's card and trend.
  await page.goto(`${base}/#/utilisation`);
  await page.locator("table.utilisation tbody tr").first().waitFor();
  const used = await apiGet("/statistics/utilisation");
  await page.waitForFunction((n) => document.querySelectorAll("table.utilisation tbody tr").length >= n, used.printers.length);
  for (const row of used.printers) {
    const line = page.locator(`table.utilisation tbody tr[data-printer="${row.printer_id}"]`);
    assert.ok((await line.locator("svg rect").count()) >= 1, `${row.name} has a bar of its hours`);
  }
  const utilisationCard = await card("Utilisation").textContent();
  assert.match(utilisationCard, /^\d+\.\d %$/, "the farm's utilisation in percent");
  assert.ok((await page.locator(".chart svg g").count()) >= 1, "the farm's trend has a bar");
  await page.screenshot({ path: join(shots, "utilisation.png"), fullPage: true });
  step(`utilisation: ${used.printers.length} printers, farm ${used.farm.utilisation} % printing`);

  // Filament: the X1C's tagged spools registered themselves; one row each, a card per material;
  // a spool added in the page and loaded into a tray there.
  const tagged = await until("the AMS's spools in the inventory", async () => {
    const list = await apiGet("/spools?limit=1000");
    return list.spools.filter((s) => s.tag).length >= 12 && list;
  });
  await page.goto(`${base}/#/filament`);
  await page.locator("table.spools tbody tr").nth(tagged.total - 1).waitFor();
  assert.equal(await page.locator("table.spools tbody tr").count(), tagged.total, "a row per spool");
  const stock = await apiGet("/spools/summary");
  assert.equal(await page.locator(".card.material").count(), stock.materials.length, "a card per material and colour");
  const amsPrinter = tagged.spools.find((s) => s.tag).printer_id;
  const amsTile = await apiGet(`/printers/${amsPrinter}/status`);
  const addForm = page.locator("form.add-spool");
  await addForm.locator("input[name=material]").fill("PETG");
  await addForm.locator("input[name=grams]").fill("250");
  await addForm.getByRole("button", { name: "Add spool" }).click();
  const added = await until("the spool added in the page", async () =>
    (await apiGet("/spools?material=PETG")).spools.find((s) => s.nominal_g === 250),
  );
  const spoolRow = page.locator(`tr[data-spool-id="${added.id}"]`);
  await spoolRow.locator("select[name=printer]").selectOption(String(amsPrinter));
  await spoolRow.locator("select[name=tray]").selectOption("254");
  await spoolRow.getByRole("button", { name: "Load" }).click();
  await until("the spool loaded", async () => {
    const spool = await apiGet(`/spools/${added.id}`);
    return spool.printer_id === amsPrinter && spool.tray === 254;
  });
  await until("its row saying where", async () => (await spoolRow.locator("td.where").textContent()).includes("external"));
  // Weighed and corrected in the page: under 150 g it is low.
  await spoolRow.getByRole("button", { name: "Edit" }).click();
  const edit = page.locator(`form[aria-label="Edit spool ${added.id}"]`);
  await edit.locator("input[name=remaining]").fill("120");
  await edit.locator("input[name=price]").fill("18.5");
  await edit.getByRole("button", { name: "Save" }).click();
  await until("the edit saved", async () => {
    const spool = await apiGet(`/spools/${added.id}`);
    return spool.remaining_g === 120 && spool.price === 18.5 && spool.low;
  });
  await spoolRow.locator(".badge.low").waitFor();
  await page.screenshot({ path: join(shots, "filament.png"), fullPage: true });
  step(`filament: ${tagged.total} spools (the AMS's tags registered), ${stock.materials.length} materials; a spool added, loaded and corrected from the page`);
  await page.goto(`${base}/#/wall`);
  const trays = page.locator(`article.tile[data-printer-id="${amsPrinter}"] ul.trays li`);
  await until("the AMS tile's trays", async () => (await trays.count()) === amsTile.filaments.length);
  step(`wall: the AMS printer's tile shows its ${amsTile.filaments.length} trays`);
  await page.goto(`${base}/#/settings`);
  // A key made in the page is shown once, works, and is revoked from the page.
  const keys = page.locator("section[aria-label='API keys']");
  await keys.locator("table tbody tr").first().waitFor();
  const keyName = `wall display ${unique}`;
  await keys.locator("input[name=key-name]").fill(keyName);
  await keys.getByRole("button", { name: "Create key" }).click();
  const secret = (await keys.locator("code.new-key").textContent()).trim();
  const made = await fetch(`${base}/api/v1/api-keys/current`, { headers: { "X-API-Key": secret } });
  assert.equal(made.status, 200, "the key shown works");
  assert.deepEqual((await made.json()).permissions, ["read"]);
  await page.screenshot({ path: join(shots, "settings.png"), fullPage: true });
  await keys.getByRole("button", { name: "Done" }).click();
  assert.equal(await page.getByText(secret).count(), 0, "the secret is shown only once");
  const keyRow = keys.locator("tbody tr", { hasText: keyName });
  await keyRow.getByRole("button", { name: "Revoke" }).click();
  await keyRow.getByRole("button", { name: "Yes" }).click();
  await keyRow.waitFor({ state: "detached" });
  const revoked = await fetch(`${base}/api/v1/api-keys/current`, { headers: { "X-API-Key": secret } });
  assert.equal(revoked.status, 401, "the revoked key is refused");
  step("settings: a key created (shown once, works) and revoked");
  // People: a user limited to one printer, made from the page, and the audit log naming who.
  await page.goto(`${base}/#/people`);
  const usersSection = page.locator("section[aria-label='Users']");
  const personName = `op-${unique}`;
  const personPassword = `a long passphrase ${unique}`;
  await usersSection.locator("input[name=user-name]").fill(personName);
  await usersSection.locator("input[name=user-password]").fill(personPassword);
  await usersSection.locator("select[name=user-role]").selectOption("operator");
  await usersSection.locator("input[name=user-printers]").fill(String(printing[0].id));
  await usersSection.getByRole("button", { name: "Add user" }).click();
  const personRow = usersSection.locator(`tr[data-user="${personName}"]`);
  await personRow.waitFor();
  await page.screenshot({ path: join(shots, "people.png"), fullPage: true });
  await page.goto(`${base}/#/audit`);
  const created = page.locator("table.audit tr[data-action=createUser]").first();
  await created.waitFor();
  assert.match(await created.textContent(), /key pyk_/, "the audit log names the key that created the user");
  await page.screenshot({ path: join(shots, "audit.png"), fullPage: true });
  step(`people: ${personName} (operator, printer ${printing[0].id}) added; the audit log names who added them`);
  step("cameras, queue, statistics, settings shown");
  // Maintenance mode from a tile: asked first, shown on the tile, in the API, and ended.
  {
    const idle = printers.find((p) => p.status !== "printing" && p.status !== "paused") ?? printers[0];
    await page.goto(`${base}/#/wall`);
    const idleTile = tile(page, idle.id);
    await idleTile.getByRole("button", { name: "Maintenance" }).click();
    await idleTile.getByRole("button", { name: "Yes" }).click();
    await idleTile.locator(".badge.maintenance").waitFor();
    assert.equal((await apiGet(`/printers/${idle.id}`)).maintenance, true, "the API has it in maintenance");
    await page.screenshot({ path: join(shots, "wall-maintenance.png"), fullPage: true });
    await idleTile.getByRole("button", { name: "End maintenance" }).click();
    await idleTile.locator(".badge.maintenance").waitFor({ state: "detached" });
    assert.equal((await apiGet(`/printers/${idle.id}`)).maintenance, false);
    step(`maintenance mode on ${idle.name} from its tile, shown, and ended`);
    // A maintenance task added on the Care page, and marked done there.
    await page.goto(`${base}/#/maintenance`);
    await page.locator("input[name=task-name]").fill(`Check belts ${unique}`);
    await page.locator("input[name=task-target]").fill(String(idle.id));
    await page.locator("input[name=task-days]").fill("30");
    await page.getByRole("button", { name: "Add task" }).click();
    const careRow = page.locator("table.maintenance tbody tr", { hasText: `Check belts ${unique}` });
    await careRow.waitFor();
    assert.equal(await careRow.getAttribute("data-state"), "ok");
    await careRow.getByRole("button", { name: "Done" }).click();
    await page.locator("table.maintenance tbody tr", { hasText: "key pyk_" }).first().waitFor();
    await page.screenshot({ path: join(shots, "maintenance.png"), fullPage: true });
    const care = await apiGet("/maintenance");
    const done = care.find((i) => i.task === `Check belts ${unique}`);
    assert(done?.last_done_by?.startsWith("key pyk_"), "done is recorded with who did it");
    await page.locator("table.firmware tbody tr").first().waitFor();
    const firmware = await apiGet("/printers/firmware");
    assert.equal(await page.locator("table.firmware tbody tr").count(), firmware.groups.length, "a row per model and version");
    // The first printer's errors, as the API lists them.
    const firstPrinter = (await apiGet("/printers"))[0];
    const history = await apiGet(`/printers/${firstPrinter.id}/errors`);
    await page.locator("section[aria-label='Printer errors']").waitFor();
    if (history.length > 0) await page.locator("table.errors tbody tr").first().waitFor();
    assert.equal(await page.locator("table.errors tbody tr").count(), history.length, "a row per error of the printer");
    step(`care: a task for ${idle.name} added, marked done (by the page's key); firmware: ${firmware.groups.length} model/version rows; ${history.length} errors on ${firstPrinter.name}`);
  }
  await context.close();

  // 6. A read-only key: the same farm, no control or editing.
  {
    const { context, page } = await openPage();
    await signIn(page, readKey);
    await page.waitForSelector("article.tile");
    for (const p of printers) await tile(page, p.id).waitFor();
    assert.equal(await page.locator("footer.controls").count(), 0, "no control buttons for a read key");
    assert.equal(await page.getByRole("button", { name: /^(Pause|Resume|Stop|Clear plate)$/ }).count(), 0);
    await page.screenshot({ path: join(shots, "wall-read-only.png"), fullPage: true });
    await page.goto(`${base}/#/archive`);
    await page.locator("li.archive").first().waitFor();
    assert.equal(await page.locator("input[name=upload]").count(), 0, "no upload for a read key");
    assert.equal(await page.getByRole("button", { name: /^(Edit|Delete)$/ }).count(), 0, "no editing for a read key");
    await page.goto(`${base}/#/settings`);
    await page.locator("section[aria-label='Costs']").waitFor();
    assert.equal(await page.locator("section[aria-label='API keys']").count(), 0, "no key management for a read key");
    await page.goto(`${base}/#/filament`);
    await page.locator("table.spools tbody tr").first().waitFor();
    assert.equal(await page.locator("form.add-spool, form.assign").count(), 0, "no spool editing for a read key");
    assert.equal(await page.getByRole("button", { name: "Edit" }).count(), 0, "no spool editing for a read key");
    step("read-only key: no control, upload, edit or key management");
    await context.close();
  }

  // 6b. A person signs in with a password: one printer in reach, no farm-wide screens; a
  // disabled account's session ends on its next request.
  {
    const { context, page } = await openPage();
    current = page;
    const personName = `op-${unique}`;
    await signInAs(page, personName, "not the password at all");
    await page.locator(".signin .error").waitFor();
    await signInAs(page, personName, `a long passphrase ${unique}`);
    await page.waitForSelector("article.tile");
    const tiles = await page.locator("article.tile").count();
    assert.equal(tiles, 1, "the operator sees the one printer in reach");
    await tile(page, printing[0].id).waitFor();
    const nav = await page.locator("header.top nav a").allTextContents();
    assert(!nav.includes("People") && !nav.includes("Audit"), `no admin screens: ${nav}`);
    const cookies = await context.cookies();
    const sessionCookie = cookies.find((c) => c.name === "printyard_session");
    assert(sessionCookie?.httpOnly, "the session cookie is HttpOnly");
    assert.equal(sessionCookie.sameSite, "Strict");
    assert.equal(await page.evaluate(() => document.cookie.includes("printyard_session")), false, "the page cannot read the session");
    await page.screenshot({ path: join(shots, "wall-operator.png"), fullPage: true });
    const users = await call("GET", "/users", adminKey);
    const person = users.find((u) => u.username === personName);
    const disabled = await fetch(`${base}/api/v1/users/${person.id}`, {
      method: "PATCH",
      headers: { "X-API-Key": adminKey, "Content-Type": "application/json" },
      body: JSON.stringify({ enabled: false }),
    });
    assert.equal(disabled.status, 200);
    await page.goto(`${base}/#/archive`);
    await page.reload();
    await page.locator("input[name=username]").waitFor();
    step(`${personName} signed in with a password: one tile, no admin screens, HttpOnly cookie; disabled, sent back to sign-in`);
    await context.close();
  }

  // 7. A phone in the dark: one column, nothing wider than the screen.
  {
    const { context, page } = await openPage({ viewport: { width: 390, height: 844 }, colorScheme: "dark", isMobile: true, hasTouch: true });
    await signIn(page, adminKey);
    await page.waitForSelector("article.tile");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 1, `the wall is ${overflow}px wider than a phone`);
    await page.screenshot({ path: join(shots, "wall-phone-dark.png"), fullPage: true });
    step("phone, dark theme: fits the screen");
    await context.close();
  }
  // 8. A wall display: larger type, many tiles a row.
  {
    const { context, page } = await openPage({ viewport: { width: 2560, height: 1440 } });
    await signIn(page, adminKey);
    await page.waitForSelector("article.tile");
    const size = await page.evaluate(() => getComputedStyle(document.body).fontSize);
    assert.equal(size, "18px", "larger type on a wall display");
    await page.screenshot({ path: join(shots, "wall-display.png") });
    step("wall display (2560×1440): larger type");
    await context.close();
  }
  assert.deepEqual(pageErrors, [], "no errors in the pages");
  console.log(`ok: screenshots in ${shots}`);
} catch (e) {
  if (current && !current.isClosed()) await current.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`failed; the page as it was: ${join(shots, "failure.png")}`);
  throw e;
} finally {
  await browser.close();
  await call("DELETE", `/api-keys/${checker.id}`, adminKey).catch(() => {});
}
