// The farm at a glance: a small cell per printer coloured by its category (a bar for a print's
// progress), grouped by site, model or state, with the tile's detail on hover or tap; and the
// counts at the top of the farm screen, per site, each a filter.
import { memo } from "preact/compat";
import type { Printer } from "../api/client";
import type { StatusRecord } from "../api/streams";
import { CATEGORIES, CATEGORY_LABELS, COUNTS, inCount, natural, type Category, type Count, type FarmPrinter } from "./farm";

export type Grouping = "" | "site" | "model" | "state";

/** The counts' filter: a count, at one site or all. */
export interface CountFilter {
  count: Count;
  site?: string;
}

export function passesCount(filter: CountFilter | undefined, p: FarmPrinter): boolean {
  if (!filter) return true;
  if (filter.site !== undefined && p.printer.site !== filter.site) return false;
  return filter.count === "work" ? p.work : inCount(filter.count, p.category);
}

/** Printing, waiting for plate clear, failed, idle with work queued and offline: the farm's and each site's. */
export function Counts(props: {
  printers: FarmPrinter[];
  active?: CountFilter;
  onPick: (filter: CountFilter | undefined) => void;
}) {
  const sites = [...new Set(props.printers.map((p) => p.printer.site))].sort(natural.compare);
  const rows: { site?: string; title: string }[] = [{ title: "Farm" }];
  if (sites.length > 1) rows.push(...sites.map((site) => ({ site, title: site })));
  return (
    <table class="counts" aria-label="Counts">
      <tbody>
        {rows.map((row) => {
          const here = row.site === undefined ? props.printers : props.printers.filter((p) => p.printer.site === row.site);
          return (
            <tr data-site={row.site ?? ""}>
              <th scope="row">
                {row.title} <span class="count">{here.length}</span>
              </th>
              {COUNTS.map(({ key, label }) => {
                const n = here.filter((p) => passesCount({ count: key }, p)).length;
                const on = props.active?.count === key && props.active.site === row.site;
                return (
                  <td>
                    <button
                      type="button"
                      class={`count-chip c-${key}${on ? " on" : ""}${n === 0 ? " none" : ""}`}
                      data-count={key}
                      aria-pressed={on}
                      title={`Show only the printers ${label}${row.site ? ` at ${row.site}` : ""}`}
                      onClick={() => props.onPick(on ? undefined : { count: key, site: row.site })}
                    >
                      <strong>{n}</strong> {label}
                    </button>
                  </td>
                );
              })}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function groupKey(grouping: Grouping, p: FarmPrinter): string {
  if (grouping === "site") return p.printer.site;
  if (grouping === "model") return p.printer.model ?? p.record?.model ?? "unknown model";
  if (grouping === "state") return p.category;
  return "";
}

/** The printers (already filtered and in order) as cells, in groups. */
export function Cells(props: {
  printers: FarmPrinter[];
  grouping: Grouping;
  label: (name: string) => string;
  /** The printer whose detail is shown. */
  selected?: number;
  onSelect: (id: number | undefined, pinned: boolean) => void;
}) {
  const { grouping } = props;
  const groups = new Map<string, FarmPrinter[]>();
  for (const p of props.printers) {
    const key = groupKey(grouping, p);
    const list = groups.get(key) ?? [];
    list.push(p);
    groups.set(key, list);
  }
  const keys = [...groups.keys()];
  if (grouping === "state") keys.sort((a, b) => CATEGORIES.indexOf(a as Category) - CATEGORIES.indexOf(b as Category));
  else keys.sort(natural.compare);
  return (
    <div class="cell-groups">
      {keys.map((key) => (
        <section class="cell-group" data-group={key} aria-label={key || "Printers"}>
          {grouping && (
            <h2>
              {grouping === "state" ? CATEGORY_LABELS[key as Category] : key} <span class="count">{groups.get(key)!.length}</span>
            </h2>
          )}
          <div class="cells">
            {groups.get(key)!.map((p) => (
              <Cell
                key={p.printer.id}
                printer={p.printer}
                record={p.record}
                category={p.category}
                problem={p.problem}
                work={p.work}
                label={props.label(p.printer.name)}
                selected={props.selected === p.printer.id}
                onSelect={props.onSelect}
              />
            ))}
          </div>
        </section>
      ))}
    </div>
  );
}

/** One printer's cell; rendered again only when one of its props changes (its status among them). */
const Cell = memo(function Cell(props: {
  printer: Printer;
  record?: StatusRecord;
  category: Category;
  problem?: string;
  work: boolean;
  label: string;
  selected: boolean;
  onSelect: (id: number | undefined, pinned: boolean) => void;
}) {
  const { printer, category, onSelect } = props;
  const active = category === "printing" || category === "paused";
  const progress = props.record?.status?.progress ?? printer.current_print?.progress ?? 0;
  const title = `${printer.name}: ${props.problem ?? CATEGORY_LABELS[category]}${active ? `, ${progress}%` : ""}${props.work ? ", work queued for it" : ""}`;
  return (
    <button
      type="button"
      class={`cell c-${category}${props.work ? " work" : ""}${props.selected ? " selected" : ""}`}
      data-printer-id={printer.id}
      data-category={category}
      aria-label={title}
      title={title}
      onMouseEnter={() => onSelect(printer.id, false)}
      onFocus={() => onSelect(printer.id, false)}
      onClick={() => onSelect(printer.id, true)}
    >
      <span class="label">{props.label}</span>
      {/* Whole percents as text; the bar by transform, which needs no layout as it grows. */}
      {active && <span class="pct">{progress}%</span>}
      {active && <span class="bar" style={{ transform: `scaleX(${Math.max(0, Math.min(100, progress)) / 100})` }} />}
    </button>
  );
});

/** The colours, explained. */
export function Legend() {
  return (
    <ul class="legend" aria-label="Colours">
      {CATEGORIES.map((c) => (
        <li>
          <span class={`swatch c-${c}`} /> {CATEGORY_LABELS[c]}
        </li>
      ))}
    </ul>
  );
}
