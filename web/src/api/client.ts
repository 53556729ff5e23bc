// The dashboard's only way to the API: the client generated from /api/v1/openapi.json
// (src/api/schema.d.ts, `npm run generate`). A person signed in with a password or single
// sign-on is known by the session cookie (sent by the browser itself); every change then
// carries the session's CSRF token (from the `printyard_csrf` cookie) as X-CSRF-Token. Signed
// in with an API key instead, the key is sent as X-API-Key.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Printer = Schemas["Printer"];
export type Archive = Schemas["Archive"];
export type Project = Schemas["Project"];
export type QueueJob = Schemas["QueueJob"];
export type ApiKey = Schemas["ApiKey"];
export type Permission = Schemas["Permission"];
export type Statistics = Schemas["Statistics"];
export type Webhook = Schemas["Webhook"];
export type Delivery = Schemas["Delivery"];
export type CostSettings = Schemas["CostSettings"];
export type StatusView = Schemas["PrinterStatusView"];
export type Me = Schemas["Me"];
export type User = Schemas["User"];
export type Role = Schemas["Role"];
export type AuditEntry = Schemas["AuditEntry"];

/** The session's CSRF token, from the cookie the sign-in set (absent when signed in by key). */
export function csrfToken(): string | null {
  const pair = document.cookie
    .split(";")
    .map((c) => c.trim())
    .find((c) => c.startsWith("printyard_csrf="));
  return pair ? decodeURIComponent(pair.slice("printyard_csrf=".length)) : null;
}

const KEY_STORAGE = "printyard.apiKey";

export const storedKey = (): string | null => localStorage.getItem(KEY_STORAGE);

export function storeKey(key: string | null): void {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export const api = createClient<paths>({ baseUrl: "/api/v1" });

/** The read budget as the API's last answer to a GET told it (`X-RateLimit-*`). */
const readBudget = { limit: 0, remaining: 0, resetAt: 0 };

api.use({
  onRequest({ request }) {
    const key = storedKey();
    if (key) request.headers.set("X-API-Key", key);
    else if (request.method !== "GET" && request.method !== "HEAD") {
      const csrf = csrfToken();
      if (csrf) request.headers.set("X-CSRF-Token", csrf);
    }
    return request;
  },
  onResponse({ request, response }) {
    if (request.method !== "GET") return;
    const limit = Number(response.headers.get("X-RateLimit-Limit"));
    const reset = Number(response.headers.get("X-RateLimit-Reset"));
    if (!limit || !reset) return;
    readBudget.limit = limit;
    readBudget.remaining = Number(response.headers.get("X-RateLimit-Remaining"));
    readBudget.resetAt = reset * 1000;
    if (response.status === 429) readBudget.remaining = 0;
  },
});

/**
 * How long a background poller (the camera grid) should wait before its next read: until the
 * window ends when less than a quarter of the key's read budget is left, so that what a person
 * clicks still gets through; 0 otherwise.
 */
export function readPause(): number {
  const now = Date.now();
  if (now >= readBudget.resetAt || readBudget.remaining >= readBudget.limit / 4) return 0;
  return readBudget.resetAt - now + 250;
}

/** An answer in the API's `{detail, code}` form (or a failure to reach it at all). */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(detail);
  }
}

/** Listeners told when the key or the session is refused (revoked, ended, never valid). */
const refusedListeners = new Set<() => void>();
export const onKeyRefused = (listener: () => void): (() => void) => {
  refusedListeners.add(listener);
  return () => refusedListeners.delete(listener);
};

/** The data of an answer, or an [`ApiFailure`] with the API's own detail. */
export async function must<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let answer;
  try {
    answer = await call;
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiFailure(0, "UNREACHABLE", "The API could not be reached");
  }
  const { data, error, response } = answer;
  if (response.ok && data !== undefined) return data;
  const body = (error ?? {}) as { detail?: string; code?: string };
  if (response.status === 401) refusedListeners.forEach((l) => l());
  throw new ApiFailure(
    response.status,
    body.code ?? "HTTP_" + response.status,
    body.detail ?? `${response.status} ${response.statusText}`,
  );
}

/** What `permission` lets a key do: admin implies every other. */
export const grants = (held: readonly string[], permission: Permission): boolean =>
  held.includes("admin") || held.includes(permission);

/** Saves `blob` as a download named `name`. */
export function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
