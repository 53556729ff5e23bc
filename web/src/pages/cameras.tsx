// The camera grid: one snapshot per printer, refreshed one request at a time (so the grid
// never holds more than one of the browser's six connections to this host, however many
// printers it shows), and never spending the last quarter of the key's read budget; a click
// opens that printer's live MJPEG stream.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, must, readPause, type Printer } from "../api/client";
import { followCamera } from "../api/streams";
import { ErrorNote, message, useAnswer } from "../ui";

/** Seconds between two refreshes of the same tile, at least. */
const ROUND_SECONDS = 5;

export function Cameras() {
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  const [frames, setFrames] = useState<Map<number, string>>(new Map());
  const [failures, setFailures] = useState<Map<number, string>>(new Map());
  const [open, setOpen] = useState<Printer | undefined>(undefined);
  const [throttled, setThrottled] = useState(false);
  const online = (printers.data ?? []).filter((p) => p.status !== "offline");
  const ids = online.map((p) => p.id).join(",");
  const paused = useRef(false);
  paused.current = open !== undefined;

  useEffect(() => {
    const stop = new AbortController();
    const urls = new Map<number, string>();
    (async () => {
      while (!stop.signal.aborted) {
        const started = Date.now();
        for (const id of ids ? ids.split(",").map(Number) : []) {
          if (stop.signal.aborted) return;
          if (paused.current || document.visibilityState !== "visible") continue;
          // Most of the key's read budget spent: wait for the next window.
          for (let pause = readPause(); pause > 0 && !stop.signal.aborted; pause = readPause()) {
            setThrottled(true);
            await new Promise((resolve) => setTimeout(resolve, Math.min(pause, 5_000)));
          }
          setThrottled(false);
          try {
            const { data, response, error } = await api.GET("/printers/{id}/camera/snapshot", {
              params: { path: { id } },
              parseAs: "blob",
              signal: stop.signal,
            });
            if (response.ok && data) {
              const url = URL.createObjectURL(data);
              const old = urls.get(id);
              urls.set(id, url);
              setFrames((m) => new Map(m).set(id, url));
              setFailures((m) => {
                const next = new Map(m);
                next.delete(id);
                return next;
              });
              if (old) URL.revokeObjectURL(old);
            } else {
              const detail = error?.detail ?? `camera: ${response.status}`;
              setFailures((m) => new Map(m).set(id, detail));
            }
          } catch {
            if (stop.signal.aborted) return;
          }
        }
        const wait = Math.max(1000, ROUND_SECONDS * 1000 - (Date.now() - started));
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    })();
    return () => {
      stop.abort();
      urls.forEach((u) => URL.revokeObjectURL(u));
    };
  }, [ids]);

  return (
    <>
      <ErrorNote error={printers.error} />
      {throttled && <p class="hint">Snapshots wait for the API key's next rate-limit window (most of its read budget is spent).</p>}
      <section class="cameras" aria-label="Cameras">
        {online.map((p) => (
          <button class="camera" key={p.id} onClick={() => setOpen(p)} aria-label={`${p.name} camera`}>
            {frames.get(p.id) ? <img src={frames.get(p.id)} alt={`${p.name} snapshot`} /> : <div class="noframe">{failures.get(p.id) ?? "waiting for a frame…"}</div>}
            <span>{p.name}</span>
          </button>
        ))}
      </section>
      {printers.data && online.length === 0 && <p>No printer is online.</p>}
      {open && <LiveCamera printer={open} onClose={() => setOpen(undefined)} />}
    </>
  );
}

function LiveCamera({ printer, onClose }: { printer: Printer; onClose: () => void }) {
  const [frame, setFrame] = useState<string | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEffect(() => {
    const stop = new AbortController();
    followCamera(printer.id, setFrame, stop.signal).catch((e: unknown) => {
      if (!stop.signal.aborted) setError(message(e));
    });
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    addEventListener("keydown", onKey);
    return () => {
      stop.abort();
      removeEventListener("keydown", onKey);
    };
  }, [printer.id]);
  return (
    <div class="overlay" role="dialog" aria-label={`${printer.name} live camera`} onClick={onClose}>
      <figure onClick={(e) => e.stopPropagation()}>
        {frame ? <img class="live-frame" src={frame} alt={`${printer.name} live`} /> : <div class="noframe">{error ?? "connecting…"}</div>}
        <figcaption>
          {printer.name} · live <button onClick={onClose}>Close</button>
        </figcaption>
      </figure>
    </div>
  );
}
