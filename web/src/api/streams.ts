// Long answers read as streams: the farm's server-sent events and a camera's MJPEG. Both go
// through the generated client (so they carry the key as every other request does) and are
// parsed here, since EventSource and <img> cannot send an X-API-Key header.
import { api, type Schemas } from "./client";

/** A `printer_status` event: the printer's status record as the gateway wrote it. */
export interface StatusRecord {
  printer_id: number;
  connected: boolean;
  last_seen?: string | null;
  connection_error?: string | null;
  model?: string | null;
  status?:
    | (Pick<
        Schemas["PrinterStatusView"],
        "state" | "progress" | "remaining_time" | "current_layer" | "total_layers" | "temperatures" | "hms_status"
      > & {
        hms: { code: string; severity: string; text?: string | null }[];
        job_name?: string | null;
        gcode_file?: string | null;
        print_error?: string | null;
        /** What is loaded: AMS trays (`ams * 4 + slot`) and the external spool (254/255). */
        filaments?: LoadedFilament[];
      })
    | null;
}

/** A filament a printer has loaded, as its status reports it. */
export interface LoadedFilament {
  tray: number;
  type: string;
  /** `RRGGBBAA`. */
  color?: string | null;
  /** Percent left, when the AMS measures it. */
  remain?: number | null;
  external: boolean;
  /** A Bambu spool's RFID tag, and its weight in grams. */
  tag?: string | null;
  weight_g?: number | null;
}

/** A farm event (`print_started`, `printer_offline`, …) as `/events` sends it. */
export interface FarmEvent {
  event: string;
  timestamp: string;
  site: string;
  printer_id?: number | null;
  data: Record<string, unknown>;
}

export interface EventHandlers {
  status(record: StatusRecord): void;
  event(event: FarmEvent): void;
  /** The stream is open (true) or lost and being reopened (false). */
  live(open: boolean): void;
}

/**
 * Follows `/events` until `signal` aborts, reopening it with a growing, jittered delay when it
 * breaks, and resuming after the last event seen (`Last-Event-ID`).
 */
export async function followEvents(handlers: EventHandlers, signal: AbortSignal): Promise<void> {
  let lastId: string | undefined;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const { response } = await api.GET("/events", {
        params: { header: lastId ? { "Last-Event-ID": Number(lastId) } : undefined },
        parseAs: "stream",
        signal,
      });
      if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
      handlers.live(true);
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
          let name = "message";
          let data = "";
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trimStart();
            else if (line.startsWith("id:")) lastId = line.slice(3).trim();
          }
          if (!data) continue;
          try {
            if (name === "printer_status") handlers.status(JSON.parse(data) as StatusRecord);
            else handlers.event(JSON.parse(data) as FarmEvent);
          } catch {
            // One unreadable event is skipped, not the stream.
          }
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    handlers.live(false);
    failures += 1;
    const delay = Math.min(30_000, 500 * 2 ** Math.min(failures, 6)) * (0.5 + Math.random() / 2);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/**
 * Shows printer `id`'s camera stream: each JPEG of the `multipart/x-mixed-replace` answer is
 * handed to `frame` as an object URL (the previous one is released). Ends when `signal` aborts
 * or the stream does; rejects with the API's detail when the camera is unavailable.
 */
export async function followCamera(
  id: number,
  frame: (url: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const { response, error } = await api.GET("/printers/{id}/camera/stream", {
    params: { path: { id }, query: { fps: 5 } },
    parseAs: "stream",
    signal,
  });
  if (!response.ok || !response.body) {
    throw new Error(error?.detail ?? `camera: ${response.status}`);
  }
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  let previous: string | undefined;
  const append = (chunk: Uint8Array) => {
    const joined = new Uint8Array(buffer.length + chunk.length);
    joined.set(buffer);
    joined.set(chunk, buffer.length);
    buffer = joined;
  };
  const headerEnd = (bytes: Uint8Array): number => {
    for (let i = 0; i + 3 < bytes.length; i++) {
      if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
    }
    return -1;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      append(value);
      for (;;) {
        const end = headerEnd(buffer);
        if (end < 0) break;
        const head = new TextDecoder().decode(buffer.subarray(0, end));
        const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
        if (!Number.isFinite(length)) {
          buffer = buffer.subarray(end + 4);
          continue;
        }
        if (buffer.length < end + 4 + length) break;
        const jpeg = buffer.slice(end + 4, end + 4 + length);
        buffer = buffer.subarray(end + 4 + length);
        const url = URL.createObjectURL(new Blob([jpeg], { type: "image/jpeg" }));
        frame(url);
        if (previous) URL.revokeObjectURL(previous);
        previous = url;
      }
    }
  } finally {
    if (previous) URL.revokeObjectURL(previous);
    reader.cancel().catch(() => undefined);
  }
}
