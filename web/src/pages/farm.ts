// What the farm screen derives from printers, their live statuses and the queue: each printer's
// category (the colour of its cell, the count it falls in), the order printers are shown in, the
// filter box's match, and short labels for cells. Pure functions, shared by the tile and cell
// views.
import type { Archive, Printer, QueueJob } from "../api/client";
import type { StatusRecord } from "../api/streams";

/** Where a printer stands, as the cells colour it and the counts count it. */
export type Category = "failed" | "offline" | "plate" | "paused" | "maintenance" | "printing" | "finished" | "idle";

/** Categories in the order they are shown: those that need someone first. */
export const CATEGORIES: readonly Category[] = ["failed", "offline", "plate", "paused", "maintenance", "printing", "finished", "idle"];

export const CATEGORY_LABELS: Record<Category, string> = {
  failed: "failed or printer error",
  offline: "offline",
  plate: "waiting for plate clear",
  paused: "paused",
  maintenance: "maintenance",
  printing: "printing",
  finished: "finished",
  idle: "idle",
};

/** The counts at the top, each a filter: `work` is idle printers a pending job could go to. */
export type Count = "printing" | "plate" | "failed" | "work" | "offline";
export const COUNTS: readonly { key: Count; label: string }[] = [
  { key: "printing", label: "printing" },
  { key: "plate", label: "waiting for plate clear" },
  { key: "failed", label: "failed" },
  { key: "work", label: "idle with work queued" },
  { key: "offline", label: "offline" },
];

/** A printer's state from its live record, else from the list. */
export function liveState(printer: Printer, record: StatusRecord | undefined): string {
  if (!record) return printer.status;
  if (!record.connected) return "offline";
  return record.status?.state ?? "idle";
}

/** Why a printer needs someone, or `undefined` when it does not. */
export function problemOf(printer: Printer, record: StatusRecord | undefined): string | undefined {
  const state = liveState(printer, record);
  const status = record?.status;
  if (state === "offline") return record?.connection_error ?? "offline";
  if (state === "failed") return status?.print_error ? `print failed (${status.print_error})` : "print failed";
  if (status?.hms_status === "error") return "printer error";
  if (state === "finished" && !printer.auto_clear_plate) return "waiting for plate clear";
  return undefined;
}

export function categoryOf(printer: Printer, record: StatusRecord | undefined, cleared: boolean): Category {
  const state = liveState(printer, record);
  if (state === "offline") return "offline";
  if (state === "failed" || record?.status?.hms_status === "error") return "failed";
  if (printer.maintenance) return "maintenance";
  if (state === "paused") return "paused";
  if (state === "printing" || state === "preparing") return "printing";
  if (state === "finished") return printer.auto_clear_plate || cleared ? "finished" : "plate";
  return "idle";
}

/** Whether a printer of `category` falls in the count `count` (`work` is decided apart). */
export function inCount(count: Count, category: Category): boolean {
  if (count === "printing") return category === "printing" || category === "paused";
  return count === category;
}

/** One printer as the farm screen shows it. */
export interface FarmPrinter {
  printer: Printer;
  record?: StatusRecord;
  state: string;
  category: Category;
  problem?: string;
  /** Idle, and a pending job could go to it. */
  work: boolean;
  /** The current print's file, for the filter. */
  file?: string;
}

/** Names in the order people count: `#9` before `#10`, case aside. */
export const natural = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

/** Problems first, then printing, then by name (natural order). */
export function byAttention(a: FarmPrinter, b: FarmPrinter): number {
  return (
    Number(!a.problem) - Number(!b.problem) ||
    Number(a.category !== "printing") - Number(b.category !== "printing") ||
    natural.compare(a.printer.name, b.printer.name)
  );
}

/** Whether the filter box's text matches the printer's name, serial or current file. */
export function matches(text: string, p: FarmPrinter): boolean {
  const wanted = text.trim().toLowerCase();
  if (!wanted) return true;
  return [p.printer.name, p.printer.serial_number, p.file].some((field) => field?.toLowerCase().includes(wanted));
}

/** The current print's file name, from the live status, the list or the open archive. */
export function fileOf(printer: Printer, record: StatusRecord | undefined, archive: Archive | undefined): string | undefined {
  return record?.status?.job_name ?? printer.current_print?.filename ?? archive?.name ?? undefined;
}

const squash = (model: string | null | undefined) => (model ?? "").toLowerCase().replace(/[^a-z0-9]/g, "");

/**
 * Whether a pending job could go to a printer: one asked for it by id, or one for any printer of
 * its site (or any site) and model (or any model). Built once per queue read, so that asking for
 * each of thousands of printers costs a few lookups.
 */
export function workIndex(jobs: readonly QueueJob[]): (printer: Printer) => boolean {
  const asked = new Set<number>();
  const open = new Set<string>();
  const now = Date.now();
  for (const job of jobs) {
    if (job.status !== "pending") continue;
    if (job.scheduled_time && Date.parse(job.scheduled_time) > now) continue;
    if (job.printer_id != null) {
      asked.add(job.printer_id);
      continue;
    }
    const models = [job.model, job.sliced_for].map(squash).filter(Boolean);
    if (models.length === 2 && models[0] !== models[1]) continue; // no printer is both
    const site = job.site ?? "*";
    open.add(`${site}|${models[0] ?? "*"}`);
    open.add(`${site}|?`); // for printers of no known model
  }
  return (printer) => {
    if (asked.has(printer.id)) return true;
    const model = squash(printer.model);
    const keys = model ? [`${printer.site}|${model}`, `*|${model}`, `${printer.site}|*`, "*|*"] : [`${printer.site}|?`, "*|?"];
    return keys.some((key) => open.has(key));
  };
}

/**
 * Labels for cells: each name without the words every name starts with ("Wall A1 #104" among
 * "Wall …" names is "A1 #104"), so a small cell shows what tells printers apart.
 */
export function shortNames(names: readonly string[]): (name: string) => string {
  if (names.length < 2) return (name) => name;
  let prefix = names[0];
  for (const name of names) {
    let i = 0;
    while (i < prefix.length && i < name.length && prefix[i] === name[i]) i++;
    prefix = prefix.slice(0, i);
    if (!prefix) break;
  }
  // Whole words only.
  const cut = prefix.lastIndexOf(" ") + 1;
  return (name) => (cut > 0 && name.length > cut ? name.slice(cut) : name);
}
