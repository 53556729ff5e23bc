// Utilisation: where the printers' hours went. A bar per printer of its hours by state, the
// farm's trend by day (or month), and what they come to: utilisation, prints per day, how long
// plates wait to be cleared and jobs wait in the queue. Exported as CSV.
import { api, must, saveBlob, type Schemas } from "../api/client";
import { ActionButton, Card, ErrorNote, RangeFilter, duration, useAnswer, useRange } from "../ui";

type Hours = Schemas["StateHours"];

/** The states, in the order the bars stack them, with their names for people. */
const STATES: [keyof Hours, string][] = [
  ["printing", "printing"],
  ["paused", "paused"],
  ["awaiting_clear", "plate to clear"],
  ["idle_queued", "idle, work queued"],
  ["idle", "idle, nothing queued"],
  ["error", "error"],
  ["offline", "offline"],
  ["maintenance", "maintenance"],
];

const total = (h: Hours) => STATES.reduce((sum, [k]) => sum + h[k], 0);

function hoursText(h: number): string {
  if (h < 1) return `${Math.round(h * 60)} min`;
  return h >= 10 ? `${h.toFixed(0)} h` : `${h.toFixed(1)} h`;
}

/** A horizontal bar of hours by state, `scale` hours wide. */
function StateBar({ hours, scale }: { hours: Hours; scale: number }) {
  let x = 0;
  const label = STATES.filter(([k]) => hours[k] > 0)
    .map(([k, name]) => `${name} ${hoursText(hours[k])}`)
    .join(", ");
  return (
    <svg viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label={label}>
      <title>{label}</title>
      {STATES.map(([k]) => {
        const w = (hours[k] / Math.max(scale, 1e-9)) * 100;
        const rect = <rect class={`st-${k}`} x={x} width={w} height={10} />;
        x += w;
        return rect;
      })}
    </svg>
  );
}

export function Utilisation() {
  const [range, change, sites] = useRange();
  const query = { start_date: range.from || undefined, end_date: range.to || undefined, site: range.site || undefined };
  const answer = useAnswer(() => must(api.GET("/statistics/utilisation", { params: { query } })), [range]);
  const u = answer.data;
  const longest = u ? Math.max(0, ...u.printers.map((p) => total(p.hours))) : 0;
  const busiest = u ? Math.max(0, ...u.trend.map((p) => total(p.hours))) : 0;
  return (
    <>
      <div class="toolbar wrap">
        <RangeFilter range={range} change={change} sites={sites} />
        <ActionButton
          action={async () => {
            const { data, response } = await api.GET("/statistics/utilisation/export", {
              params: { query },
              parseAs: "blob",
            });
            if (!response.ok || !data) throw new Error(`export failed: ${response.status}`);
            saveBlob(data, "utilisation.csv");
          }}
        >
          Export CSV
        </ActionButton>
      </div>
      <ErrorNote error={answer.error} />
      {u && (
        <>
          <section class="cards" aria-label="Utilisation">
            <Card label="Utilisation" value={`${u.farm.utilisation.toFixed(1)} %`} />
            <Card label="Printing" value={hoursText(u.farm.hours.printing)} />
            <Card label="Prints a day" value={u.farm.prints_per_day.toFixed(1)} />
            <Card label="Plate clear, median" value={duration(u.plate_clear.median_secs)} />
            <Card label="Plate clear, p90" value={duration(u.plate_clear.p90_secs)} />
            <Card label="Queue wait, median" value={duration(u.queue_wait.median_secs)} />
          </section>
          <p class="legend">
            {STATES.map(([k, name]) => (
              <span>
                <span class={`key st-${k}`} /> {name}{" "}
              </span>
            ))}
          </p>
          <h2>The farm by {u.trend_period}</h2>
          {u.trend.length === 0 ? (
            <p>No activity in this range.</p>
          ) : (
            <figure class="chart">
              <svg
                viewBox={`0 0 ${u.trend.length * 24} 140`}
                role="img"
                aria-label={`Hours by state per ${u.trend_period}`}
              >
                {u.trend.map((p, i) => {
                  let y = 120;
                  return (
                    <g transform={`translate(${i * 24},0)`}>
                      <title>{`${p.period}: ${p.utilisation.toFixed(1)} % printing`}</title>
                      {STATES.map(([k]) => {
                        const h = (p.hours[k] / Math.max(busiest, 1e-9)) * 120;
                        y -= h;
                        return <rect class={`st-${k}`} x={3} width={18} y={y} height={h} />;
                      })}
                      {(u.trend.length < 15 || i % Math.ceil(u.trend.length / 10) === 0) && (
                        <text x={12} y={134} text-anchor="middle">
                          {p.period.slice(u.trend_period === "month" ? 0 : 5, u.trend_period === "month" ? 7 : 10)}
                        </text>
                      )}
                    </g>
                  );
                })}
              </svg>
            </figure>
          )}
          <h2>By printer</h2>
          <div class="scroll">
            <table class="utilisation">
              <thead>
                <tr>
                  <th />
                  <th>Utilisation</th>
                  <th class="barcell">Hours by state</th>
                  <th>Prints a day</th>
                </tr>
              </thead>
              <tbody>
                {u.printers.map((p) => (
                  <tr data-printer={p.printer_id}>
                    <th>
                      {p.name}
                      <small> {[p.model, p.site].filter(Boolean).join(" · ")}</small>
                    </th>
                    <td>{p.utilisation.toFixed(1)} %</td>
                    <td class="barcell">
                      <StateBar hours={p.hours} scale={longest} />
                    </td>
                    <td>{p.prints_per_day.toFixed(1)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </>
  );
}
