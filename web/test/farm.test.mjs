// The farm screen's derivations: natural order, attention order, categories, the filter box,
// "idle with work queued" and the cells' short labels.
import { test } from "node:test";
import assert from "node:assert/strict";
import { byAttention, categoryOf, matches, natural, shortNames, workIndex } from "../src/pages/farm.ts";

const printer = (id, name, extra = {}) => ({
  id,
  name,
  serial_number: `01P00A0000000${id}`,
  site: "default",
  model: "P1S",
  status: "idle",
  maintenance: false,
  auto_clear_plate: false,
  ip_address: "127.0.0.1",
  ...extra,
});
const record = (id, state, extra = {}) => ({
  printer_id: id,
  connected: true,
  status: { state, progress: 0, hms: [], hms_status: "ok", ...extra },
});

test("names sort as people count them", () => {
  const names = ["wall A1 #104", "wall A1 #14", "Wall A1 #2", "wall A1 #1", "wall P1S #3"];
  assert.deepEqual([...names].sort(natural.compare), ["wall A1 #1", "Wall A1 #2", "wall A1 #14", "wall A1 #104", "wall P1S #3"]);
});

test("each state has its category, problems before the rest", () => {
  const p = printer(1, "a");
  assert.equal(categoryOf(p, record(1, "printing"), false), "printing");
  assert.equal(categoryOf(p, record(1, "preparing"), false), "printing");
  assert.equal(categoryOf(p, record(1, "paused"), false), "paused");
  assert.equal(categoryOf(p, record(1, "failed"), false), "failed");
  assert.equal(categoryOf(p, record(1, "printing", { hms_status: "error" }), false), "failed", "an HMS error is a failure to see");
  assert.equal(categoryOf(p, record(1, "finished"), false), "plate");
  assert.equal(categoryOf(p, record(1, "finished"), true), "finished", "marked cleared here");
  assert.equal(categoryOf({ ...p, auto_clear_plate: true }, record(1, "finished"), false), "finished");
  assert.equal(categoryOf(p, { printer_id: 1, connected: false }, false), "offline");
  assert.equal(categoryOf({ ...p, maintenance: true }, record(1, "idle"), false), "maintenance");
  assert.equal(categoryOf(p, record(1, "idle"), false), "idle");
  assert.equal(categoryOf({ ...p, status: "offline" }, undefined, false), "offline", "before any live status: the list's");
  const shown = [
    { printer: printer(1, "P #10"), category: "idle" },
    { printer: printer(2, "P #9"), category: "printing" },
    { printer: printer(3, "P #2"), category: "idle" },
    { printer: printer(4, "P #11"), category: "failed", problem: "print failed" },
  ].sort(byAttention);
  assert.deepEqual(shown.map((p) => p.printer.id), [4, 2, 3, 1]);
});

test("the filter box matches name, serial or file, case aside", () => {
  const p = { printer: printer(7, "Bay 7 P1S"), file: "Bracket.gcode.3mf", category: "idle" };
  assert.ok(matches("bay 7", p));
  assert.ok(matches("0000007", p));
  assert.ok(matches("BRACKET", p));
  assert.ok(matches("  ", p));
  assert.ok(!matches("bay 8", p));
});

test("idle with work queued: asked for by id, or of its site and model", () => {
  const job = (extra) => ({ status: "pending", printer_id: null, site: null, model: null, sliced_for: null, scheduled_time: null, ...extra });
  const p1s = printer(1, "a", { site: "north", model: "P1S" });
  const a1mini = printer(2, "b", { site: "north", model: "A1 mini" });
  const unknown = printer(3, "c", { site: "south", model: null });
  const has = (jobs, p) => workIndex(jobs)(p);
  assert.ok(has([job({ printer_id: 1 })], p1s));
  assert.ok(!has([job({ printer_id: 1 })], a1mini));
  assert.ok(has([job({})], a1mini), "any printer");
  assert.ok(has([job({ sliced_for: "A1 mini" })], a1mini));
  assert.ok(has([job({ model: "A1mini" })], a1mini), "model names compared without spaces and case");
  assert.ok(!has([job({ sliced_for: "A1 mini" })], p1s));
  assert.ok(!has([job({ site: "south" })], p1s));
  assert.ok(has([job({ site: "north", model: "P1S" })], p1s));
  assert.ok(!has([job({ model: "P1S", sliced_for: "A1 mini" })], p1s), "no printer is both");
  assert.ok(has([job({ sliced_for: "X1C" })], unknown), "a printer of no known model may take it");
  assert.ok(!has([job({ status: "printing", printer_id: 1 })], p1s), "only pending jobs");
  const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
  assert.ok(!has([job({ printer_id: 1, scheduled_time: tomorrow })], p1s), "not before its time");
  assert.ok(!has([], p1s));
});

test("cells are labelled without the words every name starts with", () => {
  const label = shortNames(["Wall A1 #104", "Wall A1 #14", "Wall P1S #3"]);
  assert.equal(label("Wall A1 #104"), "A1 #104");
  assert.equal(label("Wall P1S #3"), "P1S #3");
  assert.equal(shortNames(["A1 #1", "A1 #2"])("A1 #2"), "#2");
  assert.equal(shortNames(["Alpha", "Beta"])("Alpha"), "Alpha");
  assert.equal(shortNames(["Solo printer"])("Solo printer"), "Solo printer");
});
