// The print queue: jobs in order with why each waits, dragged (or moved with the arrows, on a
// touch screen) into a new order; a job added from an archive for a printer, a model or any.
import { useEffect, useState } from "preact/hooks";
import { api, must, type QueueJob } from "../api/client";
import { ActionButton, ErrorNote, Thumb, useAnswer, useEvery, when, type Session, useSubmit, message } from "../ui";

export function Queue({ session, preset }: { session: Session; preset: string | null }) {
  const jobs = useAnswer(() => must(api.GET("/queue", { params: { query: { limit: 500 } } })), []);
  const [order, setOrder] = useState<QueueJob[] | undefined>(undefined);
  const [dragged, setDragged] = useState<number | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  useEvery(5_000, () => dragged === undefined && jobs.reload());
  useEffect(() => setOrder(undefined), [jobs.data]);

  const all = order ?? jobs.data ?? [];
  const waiting = all.filter((j) => j.status === "pending");
  const others = all.filter((j) => j.status !== "pending");
  const canWrite = session.can("write");

  const move = (from: number, to: number) => {
    if (from === to || to < 0 || to >= waiting.length) return;
    const next = [...waiting];
    const [job] = next.splice(from, 1);
    next.splice(to, 0, job);
    setOrder([...next, ...others]);
    return next;
  };
  const save = async (next: QueueJob[] | undefined) => {
    if (!next) return;
    setError(undefined);
    try {
      await must(api.POST("/queue/reorder", { body: { order: next.map((j) => j.id) } }));
    } catch (e) {
      setError(message(e));
    }
    jobs.reload();
  };

  return (
    <>
      {canWrite && <AddJob preset={preset} onAdded={jobs.reload} />}
      <ErrorNote error={jobs.error ?? error} />
      <h2>Waiting ({waiting.length})</h2>
      <ol class="queue" aria-label="Waiting jobs">
        {waiting.map((job, i) => (
          <li
            key={job.id}
            class={`job${dragged === i ? " dragging" : ""}`}
            data-job-id={job.id}
            draggable={canWrite}
            onDragStart={(e) => {
              setDragged(i);
              e.dataTransfer?.setData("text/plain", String(job.id));
            }}
            onDragOver={(e) => {
              e.preventDefault();
              if (dragged !== undefined && dragged !== i) {
                move(dragged, i);
                setDragged(i);
              }
            }}
            onDrop={(e) => e.preventDefault()}
            onDragEnd={() => {
              setDragged(undefined);
              void save(order?.filter((j) => j.status === "pending"));
            }}
          >
            <JobLine job={job} />
            {canWrite && (
              <span class="actions">
                <button aria-label="Move up" disabled={i === 0} onClick={() => save(move(i, i - 1))}>
                  ↑
                </button>
                <button aria-label="Move down" disabled={i === waiting.length - 1} onClick={() => save(move(i, i + 1))}>
                  ↓
                </button>
                <ActionButton class="danger" confirm="Remove this job?" action={async () => (await must(api.DELETE("/queue/{id}", { params: { path: { id: job.id } } })), jobs.reload())}>
                  Remove
                </ActionButton>
              </span>
            )}
          </li>
        ))}
      </ol>
      <h2>Running and done</h2>
      <ul class="queue" aria-label="Other jobs">
        {others.map((job) => (
          <li key={job.id} class="job" data-job-id={job.id}>
            <JobLine job={job} />
          </li>
        ))}
      </ul>
    </>
  );
}

function JobLine({ job }: { job: QueueJob }) {
  const target = job.printer_name ?? (job.model ? `any ${job.model}` : job.site ? `any printer at ${job.site}` : "any printer");
  return (
    <div class="jobline">
      <Thumb archiveId={job.thumbnail_url ? job.archive_id : undefined} alt={job.name} />
      <div>
        <strong>{job.name}</strong> <span class={`status s-${job.status}`}>{job.status}</span>
        <p class="meta">
          #{job.id} · {target} · plate {job.plate} · {job.filament_types.join(", ") || "filament unknown"} · added {when(job.created_at)}
          {job.attempts > 0 && ` · attempt ${job.attempts}`}
        </p>
        {job.waiting_reason && <p class="waiting">waiting: {job.waiting_reason}</p>}
        {job.error && <p class="error">{job.error}</p>}
      </div>
    </div>
  );
}

function AddJob({ preset, onAdded }: { preset: string | null; onAdded: () => void }) {
  const archives = useAnswer(() => must(api.GET("/archives", { params: { query: { limit: 200 } } })), []);
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  const [archive, setArchive] = useState(preset ?? "");
  const [target, setTarget] = useState("any");
  useEffect(() => {
    if (preset) setArchive(preset);
  }, [preset]);
  const withFiles = (archives.data?.archives ?? []).filter((a) => a.has_file);
  const models = [...new Set((printers.data ?? []).map((p) => p.model).filter((m): m is string => !!m))].sort();

  const { submit: add, error } = useSubmit(async () => {
    const [kind, value] = target.split(":");
    await must(
      api.POST("/queue", {
        body: {
          archive_id: Number(archive),
          printer_id: kind === "printer" ? Number(value) : null,
          model: kind === "model" ? value : null,
        },
      }),
    );
    onAdded();
  });
  return (
    <form class="toolbar wrap" onSubmit={add} aria-label="Add a job">
      <label class="grow">
        Archive
        <select name="archive" value={archive} onChange={(e) => setArchive(e.currentTarget.value)} required>
          <option value="">choose…</option>
          {withFiles.map((a) => (
            <option value={a.id}>
              {a.name} (#{a.id})
            </option>
          ))}
        </select>
      </label>
      <label>
        Print on
        <select name="target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
          <option value="any">any printer</option>
          {models.map((m) => (
            <option value={`model:${m}`}>any {m}</option>
          ))}
          {(printers.data ?? []).map((p) => (
            <option value={`printer:${p.id}`}>{p.name}</option>
          ))}
        </select>
      </label>
      <button type="submit">Add to queue</button>
      <ErrorNote error={error ?? archives.error} />
    </form>
  );
}
