// Filament: what is on hand per material, then every spool, low ones first, with what is left
// and where it is; a spool added, loaded into a printer's tray, unloaded or archived.
import { useState } from "preact/hooks";
import { api, must, type Printer, type Schemas } from "../api/client";
import { ActionButton, ErrorNote, ProgressBar, useAnswer, useEvery, useSubmit, type Session } from "../ui";

type Spool = Schemas["Spool"];

/** A global tray id as the printer's screen shows it. */
export function trayName(tray: number): string {
  if (tray < 16) return `${String.fromCharCode(65 + Math.floor(tray / 4))}${(tray % 4) + 1}`;
  if (tray >= 128 && tray < 254) return `HT${tray - 127}`;
  return "external";
}

export function Swatch({ color }: { color?: string | null }) {
  const css = color ? `#${color.slice(0, 6)}` : "transparent";
  return <span class="swatch" style={{ background: css }} aria-hidden="true" />;
}

export function Filament({ session }: { session: Session }) {
  const spools = useAnswer(() => must(api.GET("/spools", { params: { query: { limit: 1000 } } })), []);
  const summary = useAnswer(() => must(api.GET("/spools/summary")), []);
  const printers = useAnswer(() => must(api.GET("/printers")), []);
  useEvery(10_000, () => {
    spools.reload();
    summary.reload();
  });
  const reload = () => {
    spools.reload();
    summary.reload();
  };
  const names = new Map((printers.data ?? []).map((p) => [p.id, p.name]));
  const list = [...(spools.data?.spools ?? [])].sort(
    (a, b) => Number(b.low) - Number(a.low) || a.material.localeCompare(b.material) || a.remaining_g - b.remaining_g,
  );
  return (
    <>
      <ErrorNote error={spools.error ?? summary.error} />
      <section class="cards" aria-label="Materials">
        {(summary.data?.materials ?? []).map((m) => (
          <div class={`card material${m.low > 0 ? " low" : ""}`} data-material={m.material}>
            <span>
              <Swatch color={m.color} /> {m.material}
            </span>
            <strong>{(m.remaining_g / 1000).toFixed(2)} kg</strong>
            <small>
              {m.spools} spool{m.spools === 1 ? "" : "s"} · {m.in_use} loaded{m.low > 0 ? ` · ${m.low} low` : ""}
              {m.days_left != null ? ` · ${Math.round(m.days_left)} days left` : ""}
            </small>
          </div>
        ))}
      </section>
      {session.can("write") && <AddSpool printers={printers.data ?? []} onAdded={reload} />}
      <table class="spools" aria-label="Spools">
        <thead>
          <tr>
            <th>Spool</th>
            <th>Left</th>
            <th>Where</th>
            {session.can("write") && <th />}
          </tr>
        </thead>
        <tbody>
          {list.map((s) => (
            <SpoolRow spool={s} where={where(s, names)} printers={printers.data ?? []} session={session} onChanged={reload} />
          ))}
        </tbody>
      </table>
      {spools.data && list.length === 0 && <p>No spools yet: Bambu spools appear when an AMS reads their tag.</p>}
    </>
  );
}

function where(spool: Spool, names: Map<number, string>): string {
  if (spool.printer_id != null && spool.tray != null)
    return `${names.get(spool.printer_id) ?? `printer ${spool.printer_id}`} · ${trayName(spool.tray)}`;
  return spool.location ?? "shelf";
}

function SpoolRow(props: { spool: Spool; where: string; printers: Printer[]; session: Session; onChanged: () => void }) {
  const { spool, session } = props;
  const percent = spool.nominal_g > 0 ? (spool.remaining_g / spool.nominal_g) * 100 : 0;
  const id = { params: { path: { id: spool.id } } };
  const [editing, setEditing] = useState(false);
  return (
    <>
    <tr data-spool-id={spool.id} class={spool.low ? "low" : undefined}>
      <td>
        <Swatch color={spool.color} /> <strong>{spool.material}</strong> {spool.sub_brand ?? spool.brand ?? ""}
        {spool.low && <span class="badge low">low</span>}
      </td>
      <td class="left">
        <ProgressBar percent={percent} label={`spool ${spool.id} left`} />
        <span class="grams">{Math.round(spool.remaining_g)} g</span>
      </td>
      <td class="where">{props.where}</td>
      {session.can("write") && (
        <td class="controls">
          <Assign spool={spool} printers={props.printers} onChanged={props.onChanged} />
          <button onClick={() => setEditing(!editing)} aria-expanded={editing}>
            Edit
          </button>
          {spool.printer_id != null && (
            <ActionButton
              action={async () => {
                await must(api.PATCH("/spools/{id}", { ...id, body: { printer_id: null, tray: null } }));
                props.onChanged();
              }}
            >
              Unload
            </ActionButton>
          )}
          <ActionButton
            class="danger"
            confirm={`Archive spool ${spool.id}?`}
            action={async () => {
              await must(api.DELETE("/spools/{id}", id));
              props.onChanged();
            }}
          >
            Archive
          </ActionButton>
        </td>
      )}
    </tr>
    {editing && (
      <tr class="edit-spool" data-edit-spool-id={spool.id}>
        <td colSpan={4}>
          <EditSpool
            spool={spool}
            onSaved={() => {
              setEditing(false);
              props.onChanged();
            }}
          />
        </td>
      </tr>
    )}
    </>
  );
}

/** What a person corrects by hand: the grams left (weighed), the price, where it is kept, notes. */
function EditSpool({ spool, onSaved }: { spool: Spool; onSaved: () => void }) {
  const [remaining, setRemaining] = useState(String(Math.round(spool.remaining_g)));
  const [price, setPrice] = useState(spool.price != null ? String(spool.price) : "");
  const [location, setLocation] = useState(spool.location ?? "");
  const [notes, setNotes] = useState(spool.notes ?? "");
  const { submit, error } = useSubmit(async () => {
    await must(
      api.PATCH("/spools/{id}", {
        params: { path: { id: spool.id } },
        body: {
          remaining_g: Number(remaining),
          price: price === "" ? null : Number(price),
          location: location || null,
          notes: notes || null,
        },
      }),
    );
    onSaved();
  });
  return (
    <form class="toolbar wrap" onSubmit={submit} aria-label={`Edit spool ${spool.id}`}>
      <label>
        Grams left <input type="number" name="remaining" min="0" value={remaining} onInput={(e) => setRemaining(e.currentTarget.value)} />
      </label>
      <label>
        Price <input type="number" name="price" min="0" step="0.01" value={price} onInput={(e) => setPrice(e.currentTarget.value)} />
      </label>
      <label>
        Kept at <input name="location" value={location} onInput={(e) => setLocation(e.currentTarget.value)} />
      </label>
      <label>
        Notes <input name="notes" value={notes} onInput={(e) => setNotes(e.currentTarget.value)} />
      </label>
      <button type="submit">Save</button>
      <ErrorNote error={error} />
    </form>
  );
}

function Assign(props: { spool: Spool; printers: Printer[]; onChanged: () => void }) {
  const [printer, setPrinter] = useState("");
  const [tray, setTray] = useState("0");
  const { submit, error } = useSubmit(async () => {
    await must(
      api.PATCH("/spools/{id}", {
        params: { path: { id: props.spool.id } },
        body: { printer_id: Number(printer), tray: Number(tray) },
      }),
    );
    props.onChanged();
  });
  return (
    <form class="assign" onSubmit={submit}>
      <select name="printer" aria-label="Printer" value={printer} onChange={(e) => setPrinter(e.currentTarget.value)} required>
        <option value="">load into…</option>
        {props.printers.map((p) => (
          <option value={p.id}>{p.name}</option>
        ))}
      </select>
      <select name="tray" aria-label="Tray" value={tray} onChange={(e) => setTray(e.currentTarget.value)}>
        {[...Array(16).keys(), 254].map((t) => (
          <option value={t}>{trayName(t)}</option>
        ))}
      </select>
      <button type="submit">Load</button>
      <ErrorNote error={error} />
    </form>
  );
}

function AddSpool({ printers, onAdded }: { printers: Printer[]; onAdded: () => void }) {
  const [material, setMaterial] = useState("PLA");
  const [color, setColor] = useState("#000000");
  const [brand, setBrand] = useState("");
  const [grams, setGrams] = useState("1000");
  const [price, setPrice] = useState("");
  const { submit, error } = useSubmit(async () => {
    await must(
      api.POST("/spools", {
        body: {
          material,
          color,
          brand: brand || undefined,
          nominal_g: Number(grams),
          price: price ? Number(price) : undefined,
        },
      }),
    );
    onAdded();
  });
  return (
    <form class="toolbar wrap add-spool" onSubmit={submit} aria-label="Add a spool">
      <label>
        Material <input name="material" value={material} onInput={(e) => setMaterial(e.currentTarget.value)} required />
      </label>
      <label>
        Colour <input type="color" name="color" value={color} onInput={(e) => setColor(e.currentTarget.value)} />
      </label>
      <label>
        Brand <input name="brand" value={brand} onInput={(e) => setBrand(e.currentTarget.value)} />
      </label>
      <label>
        Grams <input type="number" name="grams" min="1" value={grams} onInput={(e) => setGrams(e.currentTarget.value)} />
      </label>
      <label>
        Price <input type="number" name="price" min="0" step="0.01" value={price} onInput={(e) => setPrice(e.currentTarget.value)} />
      </label>
      <button type="submit">Add spool</button>
      <ErrorNote error={error} />
      {printers.length === 0 && <span class="hint">Add printers to load spools into their trays.</span>}
    </form>
  );
}
