// Statistics: totals, prints by day as a chart, and by printer and filament type as tables with
// a bar each, with their cost, for a date range and site.
import { api, must, type Schemas } from "../api/client";
import { Card, ErrorNote, RangeFilter, duration, money, useAnswer, useRange } from "../ui";

type Totals = Schemas["Totals"];

export function Stats() {
  const [range, change, sites] = useRange();
  const stats = useAnswer(
    () =>
      must(
        api.GET("/statistics", {
          params: {
            query: { start_date: range.from || undefined, end_date: range.to || undefined, site: range.site || undefined },
          },
        }),
      ),
    [range],
  );
  const s = stats.data;
  return (
    <>
      <div class="toolbar wrap">
        <RangeFilter range={range} change={change} sites={sites} />
      </div>
      <ErrorNote error={stats.error} />
      {s && (
        <>
          <section class="cards" aria-label="Totals">
            <Card label="Prints" value={String(s.total_prints)} />
            <Card label="Successful" value={String(s.successful_prints)} />
            <Card label="Failed" value={String(s.failed_prints)} />
            <Card label="Stopped" value={String(s.stopped_prints)} />
            {s.unknown_prints > 0 && <Card label="Ended unseen" value={String(s.unknown_prints)} />}
            <Card label="Success rate" value={`${s.success_rate.toFixed(1)} %`} />
            <Card label="Print time" value={duration(s.total_print_time)} />
            <Card label="Filament" value={`${(s.total_filament_used / 1000).toFixed(2)} kg`} />
            <Card label="Energy" value={`${s.energy_kwh.toFixed(2)} kWh`} />
            <Card label="Cost" value={money(s.total_cost, s.currency)} />
          </section>
          <h2>Prints by day</h2>
          <DayChart days={s.by_day} />
          <h2>By printer</h2>
          <TotalsTable rows={s.by_printer.map((r) => ({ label: r.printer_name ?? "—", ...r }))} currency={s.currency} />
          <h2>By filament type</h2>
          <TotalsTable rows={s.by_filament_type.map((r) => ({ label: r.filament_type || "unknown", ...r }))} currency={s.currency} />
        </>
      )}
    </>
  );
}

function DayChart({ days }: { days: (Totals & { day: string })[] }) {
  if (days.length === 0) return <p>No prints in this range.</p>;
  const most = Math.max(1, ...days.map((d) => d.total_prints));
  const width = 24;
  const height = 120;
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${days.length * width} ${height + 20}`} role="img" aria-label="Prints by day: successful and other">
        {days.map((d, i) => {
          const ok = (d.successful_prints / most) * height;
          const rest = ((d.total_prints - d.successful_prints) / most) * height;
          return (
            <g transform={`translate(${i * width},0)`}>
              <title>{`${d.day}: ${d.total_prints} prints, ${d.successful_prints} successful`}</title>
              <rect class="ok" x={3} width={width - 6} y={height - ok} height={ok} />
              <rect class="bad" x={3} width={width - 6} y={height - ok - rest} height={rest} />
              {(days.length < 15 || i % Math.ceil(days.length / 10) === 0) && (
                <text x={width / 2} y={height + 14} text-anchor="middle">
                  {d.day.slice(5)}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption>
        <span class="key ok" /> successful <span class="key bad" /> failed or stopped
      </figcaption>
    </figure>
  );
}

/** A breakdown as a table, each row with a bar of its prints (successful share darker). */
function TotalsTable({ rows, currency }: { rows: (Totals & { label: string })[]; currency: string }) {
  const most = Math.max(1, ...rows.map((r) => r.total_prints));
  return (
    <div class="scroll">
      <table>
        <thead>
          <tr>
            <th />
            <th>Prints</th>
            <th class="barcell" />
            <th>Success</th>
            <th>Time</th>
            <th>Filament</th>
            <th>Cost</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr>
              <th>{r.label}</th>
              <td>{r.total_prints}</td>
              <td class="barcell">
                <svg viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label={`${r.total_prints} prints, ${r.successful_prints} successful`}>
                  <rect class="bad" width={(r.total_prints / most) * 100} height={10} />
                  <rect class="ok" width={(r.successful_prints / most) * 100} height={10} />
                </svg>
              </td>
              <td>{r.success_rate.toFixed(0)} %</td>
              <td>{duration(r.total_print_time)}</td>
              <td>{r.total_filament_used.toFixed(0)} g</td>
              <td>{money(r.total_cost, currency)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
