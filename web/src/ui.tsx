// Small pieces every screen uses: loading an answer, authenticated images, formats, buttons.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, must } from "./api/client";

/** What a signed-in screen knows about its user. */
export interface Session {
  permissions: readonly string[];
  can(permission: "read" | "write" | "control" | "admin"): boolean;
  /** Limited to some sites or printers: farm-wide screens (people, audit, keys) are not shown. */
  limited: boolean;
}

/** What went wrong, in words: the API's `detail`, or the error's message. */
export const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A form's submit handler running `action`, and its last failure to show. */
export function useSubmit(action: () => Promise<unknown>) {
  const [error, setError] = useState<string | undefined>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      await action();
    } catch (err) {
      setError(message(err));
    }
  };
  return { submit, error };
}

/** Loads `load()` now and whenever `deps` change; `reload` loads again. */
export function useAnswer<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const serial = useRef(0);
  const reload = useCallback(() => {
    const mine = ++serial.current;
    load().then(
      (value) => {
        if (mine !== serial.current) return;
        setData(value);
        setError(undefined);
      },
      (e: unknown) => {
        if (mine !== serial.current) return;
        setError(message(e));
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(reload, [reload]);
  return { data, error, reload };
}

/** Calls `tick` every `ms` while the page is visible. */
export function useEvery(ms: number, tick: () => void) {
  const saved = useRef(tick);
  saved.current = tick;
  useEffect(() => {
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") saved.current();
    }, ms);
    return () => clearInterval(timer);
  }, [ms]);
}

/** Thumbnails already fetched (an archive's thumbnail never changes), newest last. */
const thumbnails = new Map<number, Promise<string | undefined>>();
const THUMBNAILS_KEPT = 300;

function thumbnail(id: number): Promise<string | undefined> {
  const known = thumbnails.get(id);
  if (known) return known;
  const loading = api
    .GET("/archives/{id}/thumbnail", { params: { path: { id } }, parseAs: "blob" })
    .then(({ data, response }) => (response.ok && data ? URL.createObjectURL(data) : undefined))
    .catch(() => undefined);
  // A failed fetch (rate limit, network) is tried again next time.
  loading.then((url) => url ?? thumbnails.delete(id));
  thumbnails.set(id, loading);
  if (thumbnails.size > THUMBNAILS_KEPT) {
    const [oldest, url] = thumbnails.entries().next().value!;
    thumbnails.delete(oldest);
    // Released a little later, in case a tile still shows it.
    url.then((u) => u && setTimeout(() => URL.revokeObjectURL(u), 60_000));
  }
  return loading;
}

/** An archive's thumbnail (fetched with the key, so not a plain <img src>). */
export function Thumb({ archiveId, alt }: { archiveId: number | null | undefined; alt: string }) {
  const [url, setUrl] = useState<string | undefined>(undefined);
  useEffect(() => {
    setUrl(undefined);
    if (!archiveId) return;
    let live = true;
    thumbnail(archiveId).then((u) => live && setUrl(u));
    return () => {
      live = false;
    };
  }, [archiveId]);
  return url ? <img class="thumb" src={url} alt={alt} /> : <div class="thumb empty" aria-hidden="true" />;
}

export function ErrorNote({ error }: { error?: string }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

/** A button that runs `action`, shows that it is busy, and reports a failure next to it. */
export function ActionButton(props: {
  action: () => Promise<unknown>;
  children: ComponentChildren;
  class?: string;
  title?: string;
  confirm?: string;
  disabled?: boolean;
}) {
  const [busy, setBusy] = useState(false);
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const run = async () => {
    setAsking(false);
    setBusy(true);
    setError(undefined);
    try {
      await props.action();
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };
  if (asking)
    return (
      <span class="confirm">
        <span>{props.confirm}</span>
        <button class="danger" onClick={run}>
          Yes
        </button>
        <button onClick={() => setAsking(false)}>No</button>
      </span>
    );
  return (
    <>
      <button
        class={props.class}
        title={props.title}
        disabled={busy || props.disabled}
        onClick={() => (props.confirm ? setAsking(true) : run())}
      >
        {props.children}
      </button>
      {error && (
        <span class="error" role="alert">
          {error}
        </span>
      )}
    </>
  );
}

export function duration(seconds: number | null | undefined): string {
  if (seconds == null) return "–";
  const h = Math.floor(seconds / 3600);
  const m = Math.round((seconds % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : `${m} min`;
}

export const when = (iso: string | null | undefined): string =>
  iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" }) : "–";

export const grams = (g: number | null | undefined): string => (g == null ? "–" : `${g.toFixed(1)} g`);

export const money = (value: number, currency: string): string => {
  try {
    return value.toLocaleString(undefined, { style: "currency", currency });
  } catch {
    return `${value.toFixed(2)} ${currency}`;
  }
};

export function ProgressBar({ percent, label }: { percent: number; label?: string }) {
  const p = Math.max(0, Math.min(100, percent));
  return (
    <div class="bar" role="progressbar" aria-valuenow={Math.round(p)} aria-valuemin={0} aria-valuemax={100} aria-label={label}>
      <div style={{ width: `${p}%` }} />
    </div>
  );
}

/** A figure with its label, in a row of cards. */
export function Card({ label, value }: { label: string; value: string }) {
  return (
    <div class="card">
      <span>{label}</span>
      <strong>{value}</strong>
    </div>
  );
}

/** A date range and a site (of the farm's printers), as the statistics screens filter. */
export interface Range {
  from: string;
  to: string;
  site: string;
}

export function useRange(): [Range, (change: Partial<Range>) => void, string[]] {
  const [range, setRange] = useState<Range>({ from: "", to: "", site: "" });
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  const sites = [...new Set((printers.data ?? []).map((p) => p.site))].sort();
  return [range, (change) => setRange((r) => ({ ...r, ...change })), sites];
}

/** The range's inputs: from, to, site. */
export function RangeFilter({ range, change, sites }: { range: Range; change: (c: Partial<Range>) => void; sites: string[] }) {
  return (
    <>
      <label>
        From <input type="date" name="from" value={range.from} onChange={(e) => change({ from: e.currentTarget.value })} />
      </label>
      <label>
        To <input type="date" name="to" value={range.to} onChange={(e) => change({ to: e.currentTarget.value })} />
      </label>
      <label>
        Site
        <select name="site" value={range.site} onChange={(e) => change({ site: e.currentTarget.value })}>
          <option value="">all</option>
          {sites.map((x) => (
            <option value={x}>{x}</option>
          ))}
        </select>
      </label>
    </>
  );
}

/** Calls `close` on Escape (a detail or dialog open over the page). */
export function useEscape(close: () => void) {
  useEffect(() => {
    const key = (e: KeyboardEvent) => {
      if (e.key === "Escape") close();
    };
    addEventListener("keydown", key);
    return () => removeEventListener("keydown", key);
  }, [close]);
}

/**
 * A choice of the farm screen remembered in this browser; `preset` (from the address, so a
 * wall display's bookmark says its view) wins over the remembered one.
 */
export function useStored<T extends string>(storageKey: string, initial: T, allowed: readonly T[], preset?: string | null): [T, (value: T) => void] {
  const [value, setValue] = useState<T>(() => {
    const stored = preset ?? localStorage.getItem(storageKey);
    return stored !== null && allowed.includes(stored as T) ? (stored as T) : initial;
  });
  return [
    value,
    (next: T) => {
      localStorage.setItem(storageKey, next);
      setValue(next);
    },
  ];
}
