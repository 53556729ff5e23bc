// The farm screen: counts per site at the top (each a filter), then every printer as a tile or,
// for a farm of hundreds, as a small cell (`cells.tsx`), the ones that need a person first,
// kept live by the `/events` stream (statuses as they change) with the printer list re-read now
// and then for printers added or removed elsewhere. The address may preset the view
// (`#/wall?view=cells&group=site&site=…&q=…`), so a wall display's bookmark keeps its own.
import { memo } from "preact/compat";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, must, type Archive, type Printer } from "../api/client";
import { followEvents, type StatusRecord } from "../api/streams";
import { ActionButton, ErrorNote, ProgressBar, Thumb, duration, useAnswer, useEscape, useEvery, useStored, type Session } from "../ui";
import { Cells, Counts, Legend, passesCount, type CountFilter, type Grouping } from "./cells";
import { byAttention, categoryOf, fileOf, liveState, matches, natural, problemOf, shortNames, workIndex, type FarmPrinter } from "./farm";
import { Swatch, trayName } from "./filament";

/** The longest a status change waits to be shown, in milliseconds. */
const FLUSH_MS = 250;

const STATES = ["idle", "preparing", "printing", "paused", "finished", "failed", "offline"];
const VIEWS = ["tiles", "cells"] as const;
const GROUPINGS: readonly Grouping[] = ["", "site", "model", "state"];

export function Wall({ session, query }: { session: Session; query: URLSearchParams }) {
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  const printing = useAnswer(
    () => must(api.GET("/archives", { params: { query: { status: "printing", limit: 1000 } } })),
    [],
  );
  // Pending jobs, for "idle with work queued".
  const pending = useAnswer(
    () => must(api.GET("/queue", { params: { query: { status: "pending", limit: 10000 } } })).catch(() => undefined),
    [],
  );
  useEvery(15_000, pending.reload);
  const [records, setRecords] = useState<Map<number, StatusRecord>>(new Map());
  const [live, setLive] = useState(false);
  const [site, setSite] = useState(query.get("site") ?? "");
  const [state, setState] = useState("");
  const [text, setText] = useState(query.get("q") ?? "");
  const [counted, setCounted] = useState<CountFilter | undefined>(undefined);
  const [view, setView] = useStored("printyard.wall.view", "tiles", VIEWS, query.get("view"));
  const [grouping, setGrouping] = useStored<Grouping>("printyard.wall.group", "", GROUPINGS, query.get("group"));
  const [cleared, setCleared] = useState<Set<number>>(new Set());
  // The printer whose detail shows beside the cells; pinned by a click or tap, else the hovered one.
  const [detail, setDetail] = useState<{ id: number; pinned: boolean } | undefined>(undefined);
  const filterBox = useRef<HTMLInputElement>(null);
  // The address and the choices follow each other: a link or a bookmark opened (or the address
  // changed by hand) sets them; a choice made here is written back without a new history entry,
  // so the address is the wall display's bookmark.
  const asked = query.toString();
  // What the first render took from the address already (the states above start from it).
  const applied = useRef(asked);
  useEffect(() => {
    if (applied.current === asked) return;
    applied.current = asked;
    const view = query.get("view");
    if (view && (VIEWS as readonly string[]).includes(view)) setView(view as (typeof VIEWS)[number]);
    const group = query.get("group");
    if (group !== null && (GROUPINGS as readonly string[]).includes(group)) setGrouping(group as Grouping);
    if (query.has("site")) setSite(query.get("site") ?? "");
    if (query.has("q")) setText(query.get("q") ?? "");
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [asked]);
  useEffect(() => {
    const params = new URLSearchParams();
    params.set("view", view);
    if (grouping) params.set("group", grouping);
    if (site) params.set("site", site);
    if (text) params.set("q", text);
    const wanted = `#/wall?${params}`;
    // Only while the address still shows the farm screen: never over a navigation under way.
    const here = location.hash.replace(/^#\/?/, "").split("?")[0];
    if ((here === "" || here === "wall") && location.hash !== wanted) history.replaceState(null, "", wanted);
  }, [view, grouping, site, text]);

  useEffect(() => {
    const stop = new AbortController();
    // Statuses are applied in batches, at most every FLUSH_MS: a farm of thousands sends
    // hundreds a second (and all of them when the stream opens), and one render per batch
    // keeps the page responsive; only the tiles whose status changed render again.
    let pending = new Map<number, StatusRecord>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      const batch = pending;
      pending = new Map();
      setRecords((old) => {
        const next = new Map(old);
        batch.forEach((record, id) => next.set(id, record));
        return next;
      });
    };
    void followEvents(
      {
        status: (record) => {
          pending.set(record.printer_id, record);
          timer ??= setTimeout(flush, FLUSH_MS);
        },
        event: (event) => {
          if (event.event.startsWith("print_") && event.event !== "print_progress") printing.reload();
        },
        live: setLive,
      },
      stop.signal,
    );
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  // "/" puts the cursor in the filter box (unless one is typing elsewhere).
  useEffect(() => {
    const key = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT");
      if (e.key === "/" && !typing) {
        e.preventDefault();
        filterBox.current?.focus();
      }
    };
    addEventListener("keydown", key);
    return () => removeEventListener("keydown", key);
  }, []);
  const closeDetail = useCallback(() => setDetail(undefined), []);
  useEscape(closeDetail);
  const select = useCallback(
    (id: number | undefined, pinned: boolean) =>
      setDetail((old) => {
        if (id === undefined) return old?.pinned ? old : undefined;
        if (pinned) return old?.pinned && old.id === id ? undefined : { id, pinned: true };
        return old?.pinned ? old : { id, pinned: false };
      }),
    [],
  );
  const markCleared = useCallback((id: number) => setCleared((old) => new Set(old).add(id)), []);
  // The inventory's grams in each loaded tray (spools without a tag have no other measure).
  const loaded = useAnswer(
    () => must(api.GET("/spools", { params: { query: { loaded: true, limit: 1000 } } })).catch(() => undefined),
    [],
  );
  useEvery(30_000, loaded.reload);
  const stock = useMemo(() => {
    const byPrinter = new Map<number, Map<number, number>>();
    for (const spool of loaded.data?.spools ?? []) {
      if (spool.printer_id == null || spool.tray == null) continue;
      const trays = byPrinter.get(spool.printer_id) ?? new Map<number, number>();
      trays.set(spool.tray, spool.remaining_g);
      byPrinter.set(spool.printer_id, trays);
    }
    return byPrinter;
  }, [loaded.data]);
  // New and removed printers; statuses too, when the stream is down.
  useEvery(live ? 30_000 : 5_000, printers.reload);

  const current = useMemo(() => {
    const byPrinter = new Map<number, Archive>();
    // Newest first: a printer's newest open print is its current one.
    for (const a of printing.data?.archives ?? []) {
      if (a.printer_id != null && !byPrinter.has(a.printer_id)) byPrinter.set(a.printer_id, a);
    }
    return byPrinter;
  }, [printing.data]);

  const all = printers.data ?? [];
  const hasWork = useMemo(() => workIndex(pending.data ?? []), [pending.data]);
  const farm: FarmPrinter[] = useMemo(
    () =>
      all.map((printer) => {
        const record = records.get(printer.id);
        const category = categoryOf(printer, record, cleared.has(printer.id));
        return {
          printer,
          record,
          state: liveState(printer, record),
          category,
          problem: cleared.has(printer.id) ? undefined : problemOf(printer, record),
          work: category === "idle" && hasWork(printer),
          file: fileOf(printer, record, current.get(printer.id)),
        };
      }),
    [all, records, cleared, hasWork, current],
  );
  const label = useMemo(() => shortNames(all.map((p) => p.name)), [all]);
  const sites = [...new Set(all.map((p) => p.site))].sort(natural.compare);
  const shown = farm
    .filter((p) => (!site || p.printer.site === site) && (!state || p.state === state) && passesCount(counted, p) && matches(text, p))
    .sort(byAttention);
  const detailed = detail && farm.find((p) => p.printer.id === detail.id);
  const tile = (p: FarmPrinter) => (
    <Tile
      key={p.printer.id}
      printer={p.printer}
      record={p.record}
      state={p.state}
      problem={p.problem}
      archive={current.get(p.printer.id)}
      stock={stock.get(p.printer.id)}
      session={session}
      onCleared={markCleared}
      onChanged={printers.reload}
    />
  );

  return (
    <>
      <Counts printers={farm} active={counted} onPick={setCounted} />
      <div class="toolbar wrap">
        <label class="grow">
          Filter
          <input
            ref={filterBox}
            type="search"
            name="filter"
            placeholder="name, serial or file  ( / )"
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Escape") {
                setText("");
                e.currentTarget.blur();
              } else if (e.key === "Enter" && shown.length > 0) {
                setDetail({ id: shown[0].printer.id, pinned: true });
              }
            }}
          />
        </label>
        <label>
          Site
          <select value={site} onChange={(e) => setSite(e.currentTarget.value)} name="site">
            <option value="">all</option>
            {sites.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          State
          <select value={state} onChange={(e) => setState(e.currentTarget.value)} name="state">
            <option value="">all</option>
            {STATES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          View
          <select value={view} onChange={(e) => setView(e.currentTarget.value as (typeof VIEWS)[number])} name="view">
            <option value="tiles">tiles</option>
            <option value="cells">cells (dense)</option>
          </select>
        </label>
        {view === "cells" && (
          <label>
            Group by
            <select value={grouping} onChange={(e) => setGrouping(e.currentTarget.value as Grouping)} name="group">
              <option value="">nothing</option>
              <option value="site">site</option>
              <option value="model">model</option>
              <option value="state">state</option>
            </select>
          </label>
        )}
        <span class={`live ${live ? "on" : "off"}`} title="Updates from /events">
          {live ? "live" : "reconnecting…"}
        </span>
        <span class="count">
          {shown.length} of {all.length} printers
        </span>
      </div>
      <ErrorNote error={printers.error} />
      {view === "cells" ? (
        <div class={`dense${detailed ? " with-detail" : ""}`}>
          <Legend />
          <Cells printers={shown} grouping={grouping} label={label} selected={detail?.id} onSelect={select} />
          {detailed && (
            <aside class="cell-detail" aria-label={`${detailed.printer.name} detail`} onMouseLeave={() => !detail?.pinned && closeDetail()}>
              {detail?.pinned && (
                <button type="button" class="quiet close" onClick={closeDetail} aria-label="Close the detail">
                  ×
                </button>
              )}
              {tile(detailed)}
            </aside>
          )}
        </div>
      ) : (
        <section class="tiles" aria-label="Printers">
          {shown.map(tile)}
        </section>
      )}
      {printers.data && all.length === 0 && <p>No printers yet: add them with POST /api/v1/printers.</p>}
    </>
  );
}

/** A printer's tile; rendered again only when one of its props changes. */
const Tile = memo(function Tile(props: {
  printer: Printer;
  record?: StatusRecord;
  state: string;
  problem?: string;
  archive?: Archive;
  /** Grams the inventory knows in each tray. */
  stock?: Map<number, number>;
  session: Session;
  onCleared: (id: number) => void;
  /** The printer's record changed (maintenance mode): read the list again. */
  onChanged: () => void;
}) {
  const { printer, record, state, problem, archive, session } = props;
  const status = record?.status;
  const progress = status?.progress ?? printer.current_print?.progress ?? 0;
  const remaining = status?.remaining_time ?? printer.current_print?.remaining_time ?? 0;
  const active = state === "printing" || state === "paused" || state === "preparing";
  const file = status?.job_name ?? printer.current_print?.filename ?? archive?.name;
  const id = { params: { path: { id: printer.id } } };
  const hms = (status?.hms ?? []).map((h) => h.text ?? `HMS ${h.code}`);
  return (
    <article class={`tile state-${state}${problem ? " problem" : ""}${printer.maintenance ? " maintenance" : ""}`} data-printer-id={printer.id} aria-label={printer.name}>
      <header>
        <h2>{printer.name}</h2>
        <span class="state" data-state={state}>
          {state}
        </span>
        {printer.maintenance && (
          <span class="badge maintenance" title="In maintenance: the queue sends it nothing">
            maintenance
          </span>
        )}
      </header>
      <p class="meta">
        {printer.site} · {printer.model ?? record?.model ?? "unknown model"}
      </p>
      {problem && <p class="problem-text">{problem}</p>}
      {hms.length > 0 && (
        <ul class="hms">
          {hms.map((text) => (
            <li>{text}</li>
          ))}
        </ul>
      )}
      <div class="job">
        {active && <Thumb archiveId={archive?.has_thumbnail ? archive.id : undefined} alt={file ?? "current print"} />}
        <div>
          {active && file && <p class="file">{file}</p>}
          {active && (status || printer.current_print) && (
            <>
              <ProgressBar percent={progress} label={`${printer.name} progress`} />
              <p class="numbers">
                <span class="progress">{progress}%</span> · {duration(remaining)} left
                {status && status.total_layers > 0 && (
                  <>
                    {" "}
                    · layer {status.current_layer}/{status.total_layers}
                  </>
                )}
              </p>
            </>
          )}
          {status?.filaments && status.filaments.length > 0 && (
            <ul class="trays" aria-label={`${printer.name} trays`}>
              {status.filaments.map((f) => {
                const grams = props.stock?.get(f.tray) ?? (f.weight_g && f.remain != null ? (f.weight_g * f.remain) / 100 : undefined);
                // An AMS measures only tagged spools: another's `remain` means nothing.
                const left = grams != null ? `${Math.round(grams)} g` : f.tag && f.remain != null ? `${f.remain}%` : "";
                return (
                  <li data-tray={f.tray} title={`${trayName(f.tray)}: ${f.type}${left ? `, ${left} left` : ""}`}>
                    <Swatch color={f.color} />
                    {f.type} {left}
                  </li>
                );
              })}
            </ul>
          )}
          {status && state !== "offline" && (
            <p class="temps">
              Nozzle {Math.round(status.temperatures.nozzle)}°/{Math.round(status.temperatures.nozzle_target)}° · Bed{" "}
              {Math.round(status.temperatures.bed)}°/{Math.round(status.temperatures.bed_target)}°
              {status.temperatures.chamber != null && <> · Chamber {Math.round(status.temperatures.chamber)}°</>}
            </p>
          )}
        </div>
      </div>
      {session.can("control") && (
        <footer class="controls">
          {state === "printing" && (
            <ActionButton action={() => must(api.POST("/printers/{id}/pause", id))}>Pause</ActionButton>
          )}
          {state === "paused" && (
            <ActionButton action={() => must(api.POST("/printers/{id}/resume", id))}>Resume</ActionButton>
          )}
          {active && (
            <ActionButton class="danger" confirm={`Stop the print on ${printer.name}?`} action={() => must(api.POST("/printers/{id}/stop", id))}>
              Stop
            </ActionButton>
          )}
          {session.can("write") && (
            <ActionButton
              class="quiet"
              confirm={printer.maintenance ? undefined : `Put ${printer.name} in maintenance? The queue sends it nothing until it ends.`}
              action={async () => {
                await must(api.PATCH("/printers/{id}", { ...id, body: { maintenance: !printer.maintenance } }));
                props.onChanged();
              }}
            >
              {printer.maintenance ? "End maintenance" : "Maintenance"}
            </ActionButton>
          )}
          {(state === "finished" || state === "failed") && !printer.auto_clear_plate && (
            <ActionButton
              action={async () => {
                await must(api.POST("/printers/{id}/clear-plate", id));
                props.onCleared(printer.id);
              }}
            >
              Clear plate
            </ActionButton>
          )}
        </footer>
      )}
    </article>
  );
});
