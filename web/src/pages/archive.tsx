// The archive: every print and upload with its thumbnail, searched and filtered as
// `GET /archives` allows; download, upload, edit; projects with their progress.
import { useEffect, useState } from "preact/hooks";
import { api, must, saveBlob, type Archive, type Project, type Schemas } from "../api/client";
import { ActionButton, ErrorNote, ProgressBar, Thumb, duration, grams, useAnswer, when, type Session, useSubmit, message } from "../ui";

const PAGE = 50;
const STATUSES: Schemas["ArchiveStatus"][] = ["printing", "success", "failed", "stopped", "uploaded", "unknown"];

export function Archives({ session }: { session: Session }) {
  const [search, setSearch] = useState("");
  const [typed, setTyped] = useState("");
  const [status, setStatus] = useState<Schemas["ArchiveStatus"] | "">("");
  const [printerId, setPrinterId] = useState("");
  const [projectId, setProjectId] = useState("");
  const [site, setSite] = useState("");
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [offset, setOffset] = useState(0);
  const [editing, setEditing] = useState<number | undefined>(undefined);

  // Searches once typing pauses.
  useEffect(() => {
    const timer = setTimeout(() => {
      setSearch(typed.trim());
      setOffset(0);
    }, 300);
    return () => clearTimeout(timer);
  }, [typed]);

  const page = useAnswer(
    () =>
      must(
        api.GET("/archives", {
          params: {
            query: {
              search: search || undefined,
              status: status || undefined,
              printer_id: printerId ? Number(printerId) : undefined,
              project_id: projectId ? Number(projectId) : undefined,
              site: site || undefined,
              start_date: from || undefined,
              end_date: to || undefined,
              limit: PAGE,
              offset,
            },
          },
        }),
      ),
    [search, status, printerId, projectId, site, from, to, offset],
  );
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  const projects = useAnswer(() => must(api.GET("/projects")), []);
  const reset = (set: (v: string) => void) => (e: Event) => {
    set((e.currentTarget as HTMLInputElement).value);
    setOffset(0);
  };

  return (
    <>
      <div class="toolbar wrap">
        <label class="grow">
          Search
          <input type="search" name="search" placeholder="name, file, notes, tags, printer" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
        </label>
        <label>
          Status
          <select name="status" value={status} onChange={(e) => (setStatus(e.currentTarget.value as Schemas["ArchiveStatus"] | ""), setOffset(0))}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Printer
          <select name="printer" value={printerId} onChange={reset(setPrinterId)}>
            <option value="">any</option>
            {(printers.data ?? []).map((p) => (
              <option value={p.id}>{p.name}</option>
            ))}
          </select>
        </label>
        <label>
          Site
          <select name="site" value={site} onChange={reset(setSite)}>
            <option value="">any</option>
            {[...new Set((printers.data ?? []).map((p) => p.site))].sort().map((x) => (
              <option value={x}>{x}</option>
            ))}
          </select>
        </label>
        <label>
          Project
          <select name="project" value={projectId} onChange={reset(setProjectId)}>
            <option value="">any</option>
            {(projects.data ?? []).map((p) => (
              <option value={p.id}>{p.name}</option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="date" name="from" value={from} onChange={reset(setFrom)} />
        </label>
        <label>
          To
          <input type="date" name="to" value={to} onChange={reset(setTo)} />
        </label>
        {session.can("write") && <Upload onUploaded={page.reload} />}
      </div>
      <ErrorNote error={page.error} />
      <p class="count">
        {page.data ? `${page.data.total}${page.data.total_exact ? "" : "+"} archives` : "Loading…"}
      </p>
      <ul class="archives" aria-label="Archives">
        {(page.data?.archives ?? []).map((a) =>
          editing === a.id ? (
            <ArchiveEditor
              key={a.id}
              archive={a}
              projects={projects.data ?? []}
              onDone={() => {
                setEditing(undefined);
                page.reload();
                projects.reload();
              }}
            />
          ) : (
            <ArchiveRow key={a.id} archive={a} session={session} onEdit={() => setEditing(a.id)} onChanged={page.reload} />
          ),
        )}
      </ul>
      <div class="pager">
        <button disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Newer
        </button>
        <button disabled={!page.data || offset + PAGE >= page.data.total} onClick={() => setOffset(offset + PAGE)}>
          Older
        </button>
      </div>
      <Projects session={session} projects={projects.data ?? []} onChanged={projects.reload} error={projects.error} />
    </>
  );
}

function ArchiveRow({ archive: a, session, onEdit, onChanged }: { archive: Archive; session: Session; onEdit: () => void; onChanged: () => void }) {
  const id = { params: { path: { id: a.id } } };
  return (
    <li class="archive" data-archive-id={a.id}>
      <Thumb archiveId={a.has_thumbnail ? a.id : undefined} alt={a.name} />
      <div class="what">
        <h3>{a.name}</h3>
        <p class="meta">
          <span class={`status s-${a.status}`}>{a.status}</span> · {a.printer_name ?? "uploaded"} · {when(a.created_at)} · {duration(a.duration ?? a.print_time_estimate)} ·{" "}
          {grams(a.filament_used)} {a.filament_type ?? ""}
        </p>
        {a.tags.length > 0 && (
          <p class="tags">
            {a.tags.map((t) => (
              <span class="tag">{t}</span>
            ))}
          </p>
        )}
        {a.notes && <p class="notes">{a.notes}</p>}
      </div>
      <div class="actions">
        {a.has_file && (
          <ActionButton
            action={async () => {
              const { data, response } = await api.GET("/archives/{id}/3mf", { ...id, parseAs: "blob" });
              if (!response.ok || !data) throw new Error(`download: ${response.status}`);
              saveBlob(data, a.filename.endsWith(".3mf") ? a.filename : `${a.filename}.3mf`);
            }}
          >
            Download
          </ActionButton>
        )}
        {session.can("write") && a.has_file && <a class="button" href={`#/queue?archive=${a.id}`}>Queue…</a>}
        {session.can("write") && <button onClick={onEdit}>Edit</button>}
        {session.can("write") && (
          <ActionButton class="danger" confirm="Delete this archive and its file?" action={async () => (await must(api.DELETE("/archives/{id}", id)), onChanged())}>
            Delete
          </ActionButton>
        )}
      </div>
    </li>
  );
}

function ArchiveEditor({ archive, projects, onDone }: { archive: Archive; projects: Project[]; onDone: () => void }) {
  const [name, setName] = useState(archive.name);
  const [notes, setNotes] = useState(archive.notes ?? "");
  const [tags, setTags] = useState(archive.tags.join(", "));
  const [project, setProject] = useState(archive.project_id ? String(archive.project_id) : "");
  const { submit: save, error } = useSubmit(async () => {
    await must(
      api.PATCH("/archives/{id}", {
        params: { path: { id: archive.id } },
        body: {
          name,
          notes: notes || null,
          tags: tags.split(",").map((t) => t.trim()).filter(Boolean),
          project_id: project ? Number(project) : null,
        },
      }),
    );
    onDone();
  });
  return (
    <li class="archive editing">
      <form onSubmit={save} class="editor">
        <label>
          Name <input name="name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
        </label>
        <label>
          Tags <input name="tags" value={tags} placeholder="comma, separated" onInput={(e) => setTags(e.currentTarget.value)} />
        </label>
        <label>
          Project
          <select name="project" value={project} onChange={(e) => setProject(e.currentTarget.value)}>
            <option value="">none</option>
            {projects.map((p) => (
              <option value={p.id}>{p.name}</option>
            ))}
          </select>
        </label>
        <label class="wide">
          Notes <textarea name="notes" value={notes} onInput={(e) => setNotes(e.currentTarget.value)} />
        </label>
        <button type="submit">Save</button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
        <ErrorNote error={error} />
      </form>
    </li>
  );
}

function Upload({ onUploaded }: { onUploaded: () => void }) {
  const [state, setState] = useState<string | undefined>(undefined);
  const upload = async (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    const file = input.files?.[0];
    if (!file) return;
    setState(`Uploading ${file.name}…`);
    try {
      await must(
        api.POST("/archives", {
          body: { file: "" },
          bodySerializer: () => {
            const form = new FormData();
            form.append("file", file, file.name);
            return form;
          },
        }),
      );
      setState(`Uploaded ${file.name}`);
      onUploaded();
    } catch (err) {
      setState(message(err));
    } finally {
      input.value = "";
    }
  };
  return (
    <label class="upload">
      Upload 3MF
      <input type="file" name="upload" accept=".3mf,model/3mf,application/vnd.ms-package.3dmanufacturing-3dmodel+xml" onChange={upload} />
      {state && <span class="hint">{state}</span>}
    </label>
  );
}

function Projects({ session, projects, onChanged, error }: { session: Session; projects: Project[]; onChanged: () => void; error?: string }) {
  const [name, setName] = useState("");
  const [target, setTarget] = useState("");
  const { submit: create, error: failure } = useSubmit(async () => {
    await must(api.POST("/projects", { body: { name, target_count: target ? Number(target) : null } }));
    setName("");
    setTarget("");
    onChanged();
  });
  return (
    <section class="projects" aria-label="Projects">
      <h2>Projects</h2>
      <ErrorNote error={error} />
      <ul>
        {projects.map((p) => (
          <li key={p.id}>
            <strong>{p.name}</strong>{" "}
            <span class="meta">
              {p.completed_count} done{p.target_count ? ` of ${p.target_count}` : ""}, {p.archive_count} archives
            </span>
            {p.progress != null && <ProgressBar percent={p.progress} label={`${p.name} progress`} />}
          </li>
        ))}
      </ul>
      {session.can("write") && (
        <form class="inline" onSubmit={create}>
          <input name="project-name" placeholder="New project" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
          <input name="project-target" type="number" min={1} placeholder="target prints" value={target} onInput={(e) => setTarget(e.currentTarget.value)} />
          <button type="submit">Create</button>
          <ErrorNote error={failure} />
        </form>
      )}
    </section>
  );
}
