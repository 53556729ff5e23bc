// Settings: who is signed in, API keys (admin: create, shown once, revoke), webhooks with
// their delivery log (admin), and the cost settings statistics price prints with.
import { useState } from "preact/hooks";
import { api, must, type CostSettings, type Me, type Permission, type Schemas, type Webhook } from "../api/client";
import { ActionButton, ErrorNote, useAnswer, when, type Session, useSubmit } from "../ui";

const PERMISSIONS: Permission[] = ["read", "write", "control", "admin"];
const EVENTS: Schemas["WebhookEvent"][] = [
  "print_started", "print_progress", "print_complete", "print_failed", "print_stopped", "print_unknown", "printer_online",
  "printer_offline", "printer_error", "archive_created", "queue_job_started", "queue_job_completed", "queue_job_failed",
  "spool_low", "maintenance_due",
];
const FORMATS: Schemas["WebhookFormat"][] = ["printyard", "discord", "slack", "ntfy"];

export function Settings({ session, me }: { session: Session; me: Me }) {
  const farmAdmin = session.can("admin") && !session.limited;
  return (
    <>
      <section aria-label="Signed in">
        <h2>Signed in</h2>
        <p>
          {me.name} ({me.kind === "key" ? "API key" : `role ${me.role}`}): {me.permissions.join(", ")}
          {me.printer_ids != null && `; limited to printers ${me.printer_ids.join(", ") || "(none yet)"}`}
        </p>
      </section>
      {farmAdmin && <Keys />}
      {farmAdmin && <Webhooks />}
      <Costs editable={farmAdmin} />
    </>
  );
}

function Keys() {
  const keys = useAnswer(() => must(api.GET("/api-keys")), []);
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<Permission[]>(["read"]);
  const [shown, setShown] = useState<{ name: string; key: string } | undefined>(undefined);
  const { submit: create, error } = useSubmit(async () => {
    const created = await must(api.POST("/api-keys", { body: { name, permissions: chosen } }));
    setShown({ name: created.name, key: created.key });
    setName("");
    keys.reload();
  });
  return (
    <section aria-label="API keys">
      <h2>API keys</h2>
      {shown && (
        <div class="secret" role="status">
          <p>
            The key <strong>{shown.name}</strong>, shown only now:
          </p>
          <code class="new-key">{shown.key}</code>
          <button onClick={() => navigator.clipboard?.writeText(shown.key)}>Copy</button>
          <button onClick={() => setShown(undefined)}>Done</button>
        </div>
      )}
      <form class="toolbar wrap" onSubmit={create}>
        <label class="grow">
          Name <input name="key-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} />
        </label>
        <fieldset>
          <legend>Permissions</legend>
          {PERMISSIONS.map((p) => (
            <label class="check">
              <input
                type="checkbox"
                name={`perm-${p}`}
                checked={chosen.includes(p)}
                onChange={(e) => setChosen(e.currentTarget.checked ? [...chosen, p] : chosen.filter((x) => x !== p))}
              />
              {p}
            </label>
          ))}
        </fieldset>
        <button type="submit">Create key</button>
        <ErrorNote error={error ?? keys.error} />
      </form>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Prefix</th>
              <th>Permissions</th>
              <th>Created</th>
              <th>Last used</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(keys.data ?? []).map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td>
                  <code>{k.prefix}</code>
                </td>
                <td>{k.permissions.join(", ")}</td>
                <td>{when(k.created_at)}</td>
                <td>{when(k.last_used_at)}</td>
                <td>
                  <ActionButton class="danger" confirm={`Revoke ${k.name}?`} action={async () => (await must(api.DELETE("/api-keys/{id}", { params: { path: { id: k.id } } })), keys.reload())}>
                    Revoke
                  </ActionButton>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Webhooks() {
  const hooks = useAnswer(() => must(api.GET("/webhooks")), []);
  const [url, setUrl] = useState("");
  const [format, setFormat] = useState<Schemas["WebhookFormat"]>("printyard");
  const [events, setEvents] = useState<Schemas["WebhookEvent"][]>(["print_complete", "print_failed", "printer_error"]);
  const [secret, setSecret] = useState<string | undefined>(undefined);
  const [log, setLog] = useState<number | undefined>(undefined);
  const { submit: create, error } = useSubmit(async () => {
    const created = await must(api.POST("/webhooks", { body: { url, format, events } }));
    setSecret(created.secret);
    setUrl("");
    hooks.reload();
  });
  return (
    <section aria-label="Webhooks">
      <h2>Webhooks</h2>
      {secret && (
        <div class="secret" role="status">
          <p>The signing secret (Standard Webhooks), shown only now:</p>
          <code>{secret}</code>
          <button onClick={() => setSecret(undefined)}>Done</button>
        </div>
      )}
      <form class="toolbar wrap" onSubmit={create}>
        <label class="grow">
          URL <input name="webhook-url" type="url" value={url} onInput={(e) => setUrl(e.currentTarget.value)} required placeholder="https://…" />
        </label>
        <label>
          Format
          <select name="webhook-format" value={format} onChange={(e) => setFormat(e.currentTarget.value as Schemas["WebhookFormat"])}>
            {FORMATS.map((f) => (
              <option value={f}>{f}</option>
            ))}
          </select>
        </label>
        <fieldset class="events">
          <legend>Events</legend>
          {EVENTS.map((ev) => (
            <label class="check">
              <input type="checkbox" checked={events.includes(ev)} onChange={(e) => setEvents(e.currentTarget.checked ? [...events, ev] : events.filter((x) => x !== ev))} />
              {ev}
            </label>
          ))}
        </fieldset>
        <button type="submit">Add webhook</button>
        <ErrorNote error={error ?? hooks.error} />
      </form>
      <ul class="webhooks">
        {(hooks.data ?? []).map((w) => (
          <WebhookRow key={w.id} hook={w} open={log === w.id} onToggleLog={() => setLog(log === w.id ? undefined : w.id)} onChanged={hooks.reload} />
        ))}
      </ul>
    </section>
  );
}

function WebhookRow({ hook, open, onToggleLog, onChanged }: { hook: Webhook; open: boolean; onToggleLog: () => void; onChanged: () => void }) {
  const id = { params: { path: { id: hook.id } } };
  return (
    <li>
      <p>
        <code>{hook.url}</code> · {hook.format} · {hook.enabled ? "enabled" : `disabled${hook.disabled_reason ? ` (${hook.disabled_reason})` : ""}`}
        {hook.failing_since && <span class="error"> failing since {when(hook.failing_since)}</span>}
      </p>
      <p class="meta">{hook.events.join(", ")}</p>
      <span class="actions">
        <ActionButton action={async () => (await must(api.PATCH("/webhooks/{id}", { ...id, body: { enabled: !hook.enabled } })), onChanged())}>
          {hook.enabled ? "Disable" : "Enable"}
        </ActionButton>
        <ActionButton action={async () => (await must(api.POST("/webhooks/{id}/test", id)), onChanged())}>Send test</ActionButton>
        <button onClick={onToggleLog}>{open ? "Hide deliveries" : "Deliveries"}</button>
        <ActionButton class="danger" confirm="Delete this webhook?" action={async () => (await must(api.DELETE("/webhooks/{id}", id)), onChanged())}>
          Delete
        </ActionButton>
      </span>
      {open && <Deliveries id={hook.id} />}
    </li>
  );
}

function Deliveries({ id }: { id: number }) {
  const deliveries = useAnswer(() => must(api.GET("/webhooks/{id}/deliveries", { params: { path: { id }, query: { limit: 50 } } })), [id]);
  return (
    <div class="scroll">
      <ErrorNote error={deliveries.error} />
      <table class="deliveries">
        <thead>
          <tr>
            <th>When</th>
            <th>Event</th>
            <th>Status</th>
            <th>Attempts</th>
            <th>Answer</th>
            <th>Latency</th>
          </tr>
        </thead>
        <tbody>
          {(deliveries.data ?? []).map((d) => (
            <tr key={d.id}>
              <td>{when(d.created_at)}</td>
              <td>{d.event}</td>
              <td>{d.status}</td>
              <td>{d.attempts}</td>
              <td>{d.response_code ?? d.last_error ?? "–"}</td>
              <td>{d.latency_ms != null ? `${d.latency_ms} ms` : "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {deliveries.data?.length === 0 && <p>No deliveries yet.</p>}
    </div>
  );
}

/** `{PLA: 25, default: 20}` as `PLA=25, default=20`, and back. */
const showPrices = (prices: Record<string, number>) => Object.entries(prices).map(([k, v]) => `${k}=${v}`).join(", ");
function readPrices(text: string): Record<string, number> {
  const prices: Record<string, number> = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [name, value] = part.split("=").map((p) => p.trim());
    const number = Number(value);
    if (!name || value === undefined || !Number.isFinite(number)) throw new Error(`Not a price: "${part}" (write type=number)`);
    prices[name] = number;
  }
  return prices;
}

function Costs({ editable }: { editable: boolean }) {
  const costs = useAnswer(() => must(api.GET("/settings/costs")), []);
  return (
    <section aria-label="Costs">
      <h2>Costs</h2>
      <ErrorNote error={costs.error} />
      {costs.data && <CostForm key={JSON.stringify(costs.data)} costs={costs.data} editable={editable} onSaved={costs.reload} />}
    </section>
  );
}

function CostForm({ costs, editable, onSaved }: { costs: CostSettings; editable: boolean; onSaved: () => void }) {
  const [currency, setCurrency] = useState(costs.currency);
  const [filament, setFilament] = useState(showPrices(costs.filament_cost_per_kg));
  const [energy, setEnergy] = useState(String(costs.energy_cost_per_kwh));
  const [power, setPower] = useState(showPrices(costs.printer_power_watts));
  const [saved, setSaved] = useState(false);
  const { submit: save, error } = useSubmit(async () => {
    setSaved(false);
    await must(
      api.PUT("/settings/costs", {
        body: {
          currency,
          filament_cost_per_kg: readPrices(filament),
          energy_cost_per_kwh: Number(energy),
          printer_power_watts: readPrices(power),
        },
      }),
    );
    setSaved(true);
    onSaved();
  });
  return (
    <form class="costs" onSubmit={save}>
      <label>
        Currency <input name="currency" value={currency} disabled={!editable} onInput={(e) => setCurrency(e.currentTarget.value)} pattern="[A-Z]{3}" />
      </label>
      <label class="wide">
        Filament per kg by type <input name="filament" value={filament} disabled={!editable} onInput={(e) => setFilament(e.currentTarget.value)} />
      </label>
      <label>
        Energy per kWh <input name="energy" type="number" step="any" min={0} value={energy} disabled={!editable} onInput={(e) => setEnergy(e.currentTarget.value)} />
      </label>
      <label class="wide">
        Power (W) by model <input name="power" value={power} disabled={!editable} onInput={(e) => setPower(e.currentTarget.value)} />
      </label>
      {editable && <button type="submit">Save costs</button>}
      {saved && <span role="status">Saved: later prints are priced with these.</span>}
      <ErrorNote error={error} />
    </form>
  );
}
