// Printer care: every maintenance task on every printer it applies to, overdue and due first,
// with how much of its interval is used; Done (control) starts the next cycle; tasks are
// added (write) per printer, per model or for every printer; the farm's firmware.
import { useState } from "preact/hooks";
import { api, must, type Schemas } from "../api/client";
import { ActionButton, ErrorNote, ProgressBar, useAnswer, useSubmit, when, type Session } from "../ui";

type Item = Schemas["MaintenanceItem"];

const number = (text: string): number | undefined => (text.trim() === "" ? undefined : Number(text));

function intervals(i: Item): string {
  return [
    i.every_prints != null && `${i.prints}/${i.every_prints} prints`,
    i.every_print_hours != null && `${i.print_hours.toFixed(1)}/${i.every_print_hours} h`,
    i.every_filament_g != null && `${Math.round(i.filament_g)}/${i.every_filament_g} g`,
    i.every_days != null && `${Math.floor(i.days)}/${i.every_days} days`,
  ]
    .filter(Boolean)
    .join(" · ");
}

export function Maintenance({ session }: { session: Session }) {
  const items = useAnswer(() => must(api.GET("/maintenance")), []);
  const tasks = useAnswer(() => must(api.GET("/maintenance/tasks")), []);
  const reload = () => (items.reload(), tasks.reload());
  return (
    <>
      <section aria-label="Maintenance">
        <h2>Maintenance</h2>
        <ErrorNote error={items.error} />
        {items.data && items.data.length === 0 && <p>No maintenance tasks yet.</p>}
        <div class="scroll">
          <table class="maintenance">
            <thead>
              <tr>
                <th>Printer</th>
                <th>Task</th>
                <th>State</th>
                <th>Used</th>
                <th>Since</th>
                <th>Last done</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {(items.data ?? []).map((i) => (
                <tr key={`${i.task_id}-${i.printer_id}`} data-state={i.state}>
                  <td>{i.printer_name}</td>
                  <td>{i.task}</td>
                  <td class={`care-${i.state}`}>{i.state}</td>
                  <td>
                    <ProgressBar percent={Math.min(100, Math.round(i.progress * 100))} label={`${i.task} on ${i.printer_name}`} />
                    <span class="hint">{intervals(i)}</span>
                  </td>
                  <td>{when(i.since)}</td>
                  <td>{i.last_done_by ? `${i.last_done_by}${i.last_notes ? `: ${i.last_notes}` : ""}` : "–"}</td>
                  <td>
                    {session.can("control") && (
                      <ActionButton
                        action={async () => {
                          await must(
                            api.POST("/maintenance/{id}/done", {
                              params: { path: { id: i.task_id } },
                              body: { printer_id: i.printer_id },
                            }),
                          );
                          reload();
                        }}
                      >
                        Done
                      </ActionButton>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {session.can("write") && <NewTask onAdded={reload} />}
      <PrinterErrors session={session} />
      <Firmware />
      <section aria-label="Tasks">
        <h2>Tasks</h2>
        <ErrorNote error={tasks.error} />
        <ul class="plain">
          {(tasks.data ?? []).map((t) => (
            <li key={t.id}>
              {t.name} ({t.printer_id != null ? `printer ${t.printer_id}` : t.model ?? "every printer"})
              {session.can("write") && (
                <ActionButton
                  class="danger"
                  confirm={`Delete “${t.name}” and its history?`}
                  action={async () => (await must(api.DELETE("/maintenance/tasks/{id}", { params: { path: { id: t.id } } })), reload())}
                >
                  Delete
                </ActionButton>
              )}
            </li>
          ))}
        </ul>
      </section>
    </>
  );
}

/** A printer's errors (HMS and print), newest first, with what the printer allows about each
 * now (resume, stop, retry), and the farm's most frequent codes. */
function PrinterErrors({ session }: { session: Session }) {
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  const [printer, setPrinter] = useState<number | undefined>(undefined);
  const chosen = printer ?? printers.data?.[0]?.id;
  const errors = useAnswer(
    () =>
      chosen == null
        ? Promise.resolve([])
        : must(api.GET("/printers/{id}/errors", { params: { path: { id: chosen } } })),
    [chosen],
  );
  const counts = useAnswer(() => must(api.GET("/statistics/errors")), []);
  const act = async (id: number, action: string, errorId: number) => {
    const path = { params: { path: { id } } };
    if (action === "resume") await must(api.POST("/printers/{id}/resume", path));
    else if (action === "stop") await must(api.POST("/printers/{id}/stop", path));
    else await must(api.POST("/printers/{id}/errors/{error_id}/retry", { params: { path: { id, error_id: errorId } } }));
    errors.reload();
  };
  return (
    <section aria-label="Printer errors">
      <h2>Printer errors</h2>
      <label>
        Printer{" "}
        <select name="errors-printer" value={chosen} onChange={(e) => setPrinter(Number(e.currentTarget.value))}>
          {(printers.data ?? []).map((p) => (
            <option value={p.id}>{p.name}</option>
          ))}
        </select>
      </label>
      <ErrorNote error={errors.error} />
      {errors.data && errors.data.length === 0 && <p>No errors on this printer.</p>}
      <div class="scroll">
        <table class="errors">
          <tbody>
            {(errors.data ?? []).map((e) => (
              <tr key={e.id} data-code={e.code}>
                <td>{when(e.raised_at)}</td>
                <td>
                  <code>{e.code}</code> {e.severity ?? e.source}
                </td>
                <td>{e.text ?? "–"}</td>
                <td>{e.cleared_at ? `cleared ${when(e.cleared_at)}` : "standing"}</td>
                <td>{e.archive_id != null ? `print #${e.archive_id} (${e.print_status})` : "no print"}</td>
                <td>
                  {session.can("control") &&
                    (e.actions ?? []).map((a) => (
                      <ActionButton
                        action={() => act(e.printer_id, a, e.id)}
                        confirm={a === "stop" ? "Stop the print?" : undefined}
                      >
                        {a === "resume" ? "Resume" : a === "stop" ? "Stop" : "Retry"}
                      </ActionButton>
                    ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {counts.data && counts.data.by_code.length > 0 && (
        <>
          <h3>Most frequent</h3>
          <div class="scroll">
            <table class="error-counts">
              <tbody>
                {counts.data.by_code.slice(0, 10).map((c) => (
                  <tr>
                    <td>
                      <code>{c.code}</code>
                    </td>
                    <td>{c.text ?? "–"}</td>
                    <td>
                      {c.count} × on {c.printers} printer{c.printers === 1 ? "" : "s"}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}

/** The farm's firmware by model and version, and who is behind. */
function Firmware() {
  const table = useAnswer(() => must(api.GET("/printers/firmware")), []);
  return (
    <section aria-label="Firmware">
      <h2>Firmware</h2>
      <ErrorNote error={table.error} />
      <div class="scroll">
        <table class="firmware">
          <thead>
            <tr>
              <th>Model</th>
              <th>Version</th>
              <th>Printers</th>
            </tr>
          </thead>
          <tbody>
            {(table.data?.groups ?? []).map((g) => (
              <tr key={`${g.model}-${g.version}`} data-newest={g.newest ? "yes" : "no"}>
                <td>{g.model ?? "unknown model"}</td>
                <td>
                  {g.version ?? "not reported yet"}
                  {g.newest && <span class="hint"> (newest in the farm)</span>}
                </td>
                <td>{g.printer_ids.length}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {table.data && table.data.behind.length > 0 && (
        <p class="behind">
          Behind:{" "}
          {table.data.behind.map((b) => `${b.name} (${b.version} → ${b.newest})`).join(", ")}
        </p>
      )}
    </section>
  );
}

function NewTask({ onAdded }: { onAdded: () => void }) {
  const [name, setName] = useState("");
  const [target, setTarget] = useState("");
  const [prints, setPrints] = useState("");
  const [hours, setHours] = useState("");
  const [days, setDays] = useState("");
  const [grams, setGrams] = useState("");
  const { submit, error } = useSubmit(async () => {
    const printer = /^\d+$/.test(target.trim()) ? Number(target) : undefined;
    await must(
      api.POST("/maintenance/tasks", {
        body: {
          name,
          printer_id: printer,
          model: printer == null && target.trim() ? target.trim() : undefined,
          every_prints: number(prints),
          every_print_hours: number(hours),
          every_days: number(days),
          every_filament_g: number(grams),
        },
      }),
    );
    setName("");
    onAdded();
  });
  return (
    <section aria-label="New task">
      <h2>New task</h2>
      <form class="toolbar wrap" onSubmit={submit}>
        <label class="grow">
          Task <input name="task-name" value={name} placeholder="Lubricate the rods" onInput={(e) => setName(e.currentTarget.value)} required maxLength={200} />
        </label>
        <label>
          For <input name="task-target" value={target} placeholder="printer id, model, or empty: all" onInput={(e) => setTarget(e.currentTarget.value)} />
        </label>
        <label>
          Every prints <input name="task-prints" inputMode="numeric" value={prints} onInput={(e) => setPrints(e.currentTarget.value)} />
        </label>
        <label>
          Every print hours <input name="task-hours" inputMode="decimal" value={hours} onInput={(e) => setHours(e.currentTarget.value)} />
        </label>
        <label>
          Every days <input name="task-days" inputMode="numeric" value={days} onInput={(e) => setDays(e.currentTarget.value)} />
        </label>
        <label>
          Every grams <input name="task-grams" inputMode="decimal" value={grams} onInput={(e) => setGrams(e.currentTarget.value)} />
        </label>
        <button type="submit">Add task</button>
        <ErrorNote error={error} />
      </form>
    </section>
  );
}
