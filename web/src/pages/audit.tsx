// The audit log (admin): who changed what, from where, with what outcome; filtered by actor,
// action, printer and dates, and exported as CSV.
import { useState } from "preact/hooks";
import { api, must, saveBlob } from "../api/client";
import { ActionButton, ErrorNote, useAnswer, when } from "../ui";

const PAGE = 100;

export function Audit() {
  const [actor, setActor] = useState("");
  const [action, setAction] = useState("");
  const [printer, setPrinter] = useState("");
  const [outcome, setOutcome] = useState("");
  const [offset, setOffset] = useState(0);
  const query = {
    actor: actor.trim() || undefined,
    action: action.trim() || undefined,
    printer_id: printer.trim() ? Number(printer) : undefined,
    outcome: outcome || undefined,
  };
  const page = useAnswer(
    () => must(api.GET("/audit", { params: { query: { ...query, limit: PAGE, offset } } })),
    [actor, action, printer, outcome, offset],
  );
  const total = page.data?.total ?? 0;
  return (
    <section aria-label="Audit log">
      <h2>Audit log</h2>
      <form class="toolbar wrap" onSubmit={(e) => e.preventDefault()}>
        <label>
          Who <input name="audit-actor" placeholder="username or key" value={actor} onInput={(e) => (setActor(e.currentTarget.value), setOffset(0))} />
        </label>
        <label>
          Action <input name="audit-action" placeholder="pausePrinter" value={action} onInput={(e) => (setAction(e.currentTarget.value), setOffset(0))} />
        </label>
        <label>
          Printer <input name="audit-printer" inputMode="numeric" value={printer} onInput={(e) => (setPrinter(e.currentTarget.value), setOffset(0))} />
        </label>
        <label>
          Outcome
          <select name="audit-outcome" value={outcome} onChange={(e) => (setOutcome(e.currentTarget.value), setOffset(0))}>
            <option value="">any</option>
            <option value="success">success</option>
            <option value="denied">denied</option>
            <option value="failed">failed</option>
          </select>
        </label>
        <ActionButton
          action={async () => {
            const { data, response } = await api.GET("/audit/export", { params: { query }, parseAs: "blob" });
            if (!response.ok || !data) throw new Error(`export failed: ${response.status}`);
            saveBlob(data, "audit.csv");
          }}
        >
          Export CSV
        </ActionButton>
        <ErrorNote error={page.error} />
      </form>
      <div class="scroll">
        <table class="audit">
          <thead>
            <tr>
              <th>When</th>
              <th>Who</th>
              <th>From</th>
              <th>Action</th>
              <th>Object</th>
              <th>Printer</th>
              <th>Outcome</th>
            </tr>
          </thead>
          <tbody>
            {(page.data?.entries ?? []).map((e) => (
              <tr key={e.id} data-action={e.action}>
                <td>{when(e.at)}</td>
                <td>{e.actor}</td>
                <td>{e.ip ?? "–"}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>{e.object_id ?? "–"}</td>
                <td>{e.printer_id ?? "–"}</td>
                <td class={`outcome-${e.outcome}`}>
                  {e.outcome} ({e.status})
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p class="toolbar">
        <button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Newer
        </button>
        <span>
          {total === 0 ? "No entries" : `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}`}
        </span>
        <button disabled={offset + PAGE >= total} onClick={() => setOffset(offset + PAGE)}>
          Older
        </button>
      </p>
    </section>
  );
}
