// Small dependency-free charts: SVG lines, HTML bars, a distribution strip and a confusion matrix.
import type { Distribution } from "./api";
import { formatNumber } from "./ui";

export interface Series {
  name: string;
  color: string;
  points: { x: number; y: number }[];
}

const W = 600;
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

export function LineChart(props: { series: Series[]; xLabel: string; testId?: string; empty?: string }) {
  const { series, xLabel, testId } = props;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return (
      <div class="chart-empty" data-testid={testId} data-points={0}>
        {props.empty ?? "Waiting for the first points…"}
      </div>
    );
  }
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const sx = (x: number) => PAD.left + ((x - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
  const sy = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const ticks = [y0, (y0 + y1) / 2, y1];
  return (
    // data-points: the first (main) series' points; an overlaid series (validation loss) is extra.
    <figure class="chart" data-testid={testId} data-points={series[0]?.points.length ?? 0}>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={series.map((s) => s.name).join(", ")}>
        {ticks.map((t) => (
          <g key={t}>
            <line x1={PAD.left} x2={W - PAD.right} y1={sy(t)} y2={sy(t)} class="grid" />
            <text x={PAD.left - 6} y={sy(t) + 4} text-anchor="end" class="tick">
              {formatNumber(t, 3)}
            </text>
          </g>
        ))}
        <text x={PAD.left} y={H - 8} class="tick">
          {formatNumber(x0)}
        </text>
        <text x={W - PAD.right} y={H - 8} text-anchor="end" class="tick">
          {xLabel} {formatNumber(x1)}
        </text>
        {series.map((s) => (
          <g key={s.name}>
            <polyline fill="none" stroke={s.color} stroke-width="2" points={s.points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")} />
            {s.points.length === 1 && <circle cx={sx(s.points[0].x)} cy={sy(s.points[0].y)} r="3" fill={s.color} />}
          </g>
        ))}
      </svg>
      <figcaption class="legend">
        {series.map((s) => (
          <span key={s.name}>
            <i style={{ background: s.color }} /> {s.name}
            {s.points.length > 0 && `: ${formatNumber(s.points[s.points.length - 1].y)}`}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

export function BarChart({ values, testId }: { values: Record<string, number>; testId?: string }) {
  const entries = Object.entries(values);
  const max = Math.max(1, ...entries.map(([, v]) => v));
  return (
    <div class="bars" data-testid={testId}>
      {entries.map(([name, value]) => (
        <div class="bar-row" key={name}>
          <span class="bar-name" title={name}>
            {name}
          </span>
          <span class="bar-track">
            <span class="bar-fill" style={{ width: `${(value / max) * 100}%` }} />
          </span>
          <span class="bar-value">{value.toLocaleString()}</span>
        </div>
      ))}
    </div>
  );
}

/** min, p10–p90 band, median and max of a distribution on one line. */
export function DistributionStrip({ title, value, unit }: { title: string; value: Distribution | null | undefined; unit: string }) {
  if (!value) return null;
  const span = value.max - value.min || 1;
  const at = (v: number) => `${((v - value.min) / span) * 100}%`;
  return (
    <div class="dist">
      <div class="dist-title">
        {title} <span class="muted">(median {formatNumber(value.p50)} {unit}, mean {formatNumber(value.mean)})</span>
      </div>
      <div class="dist-track" title={`p10 ${value.p10}, p90 ${value.p90}`}>
        <span class="dist-band" style={{ left: at(value.p10), width: `calc(${at(value.p90)} - ${at(value.p10)})` }} />
        <span class="dist-median" style={{ left: at(value.p50) }} />
      </div>
      <div class="dist-scale">
        <span>{formatNumber(value.min)}</span>
        <span>{formatNumber(value.max)}</span>
      </div>
    </div>
  );
}

/** Rows are the true labels, columns the predictions. */
export function ConfusionMatrix({ labels, matrix }: { labels: string[]; matrix: number[][] }) {
  const max = Math.max(1, ...matrix.flat());
  return (
    <div class="table-scroll">
      <table class="confusion" data-testid="confusion-matrix">
        <thead>
          <tr>
            <th class="muted">true \ predicted</th>
            {labels.map((l) => (
              <th key={l}>{l}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, i) => (
            <tr key={labels[i]}>
              <th>{labels[i]}</th>
              {row.map((count, j) => (
                <td
                  key={j}
                  class={i === j ? "diag" : ""}
                  style={{ background: `rgba(${i === j ? "22,163,74" : "220,38,38"},${(count / max) * 0.7})` }}
                >
                  {count}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
