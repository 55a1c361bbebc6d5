// Two or more runs side by side: loss curves overlaid (training solid, validation as its own series),
// then their settings, progress and final metrics in one table, a column per run.
import type { ComponentChildren } from "preact";
import { type Dataset, type Job, type MetricsPage, type Page, get } from "../api";
import { LineChart, type Series } from "../charts";
import { askedHyperparameters } from "../clone";
import { mainReport } from "../results";
import { Link } from "../router";
import { ErrorBox, Loading, Status, formatDuration, formatNumber, useResource } from "../ui";
import { type Point, toPoint } from "./run-detail";

const COLORS = ["#4f46e5", "#ea580c", "#16a34a", "#db2777", "#0891b2", "#a16207", "#7c3aed", "#475569"];
const MAX_RUNS = COLORS.length;
const METRICS_PAGES = 5; // up to 5,000 points a run: a long run's curve is still a curve

interface Compared {
  job: Job;
  points: Point[];
}

async function curve(jobId: string): Promise<Point[]> {
  const points: Point[] = [];
  let after: number | null = null;
  for (let page = 0; page < METRICS_PAGES; page++) {
    const found: MetricsPage = await get(`/v1/fine_tuning/jobs/${jobId}/metrics${after === null ? "" : `?after_step=${after}`}`);
    points.push(...found.data.map(toPoint));
    if (!found.has_more || found.data.length === 0) break;
    after = found.data[found.data.length - 1].step;
  }
  return points;
}

const name = (job: Job) => job.suffix || job.id;
const last = (points: Point[], key: "loss" | "valid") => [...points].reverse().find((p) => p[key] !== null)?.[key] ?? null;

function Row({ label, children }: { label: string; children: ComponentChildren[] }) {
  return (
    <tr>
      <th>{label}</th>
      {children.map((cell, i) => (
        <td key={i}>{cell}</td>
      ))}
    </tr>
  );
}

export function CompareRuns() {
  const ids = (new URLSearchParams(location.search).get("ids") ?? "").split(",").filter(Boolean).slice(0, MAX_RUNS);
  const runs = useResource<Compared[]>(
    () => Promise.all(ids.map(async (id) => ({ job: await get<Job>(`/v1/fine_tuning/jobs/${id}`), points: await curve(id) }))),
    [ids.join(",")],
  );
  const datasets = useResource(() => get<Page<Dataset>>("/v1/datasets?limit=100"), []);
  const names = new Map((datasets.data?.data ?? []).map((d) => [d.id, d.name]));
  if (ids.length < 2) {
    return (
      <section>
        <h1>Compare runs</h1>
        <p>
          Tick two or more runs in <Link href="/runs">the list</Link> to compare them.
        </p>
      </section>
    );
  }
  if (runs.loading && !runs.data) return <Loading />;
  if (!runs.data) return <ErrorBox error={runs.error} />;
  const compared = runs.data;
  const series = (key: "loss" | "valid"): Series[] =>
    compared
      .map(({ job, points }, i) => ({
        name: name(job),
        color: COLORS[i],
        points: points.filter((p) => p[key] !== null).map((p) => ({ x: p.step, y: p[key]! })),
      }))
      .filter((s) => s.points.length > 0);
  const valid = series("valid");
  const cells = (value: (c: Compared) => ComponentChildren) => compared.map(value);
  const hp = (key: string) => cells(({ job }) => {
    const resolved = (job.hyperparameters as Record<string, number | string> | undefined)?.[key];
    return job.auto_hyperparameters?.[key] ? `auto → ${resolved}` : String(resolved ?? askedHyperparameters(job)[key] ?? "—");
  });
  const option = (read: (o: Record<string, unknown>) => unknown) => cells(({ job }) => String(read((job.options ?? {}) as Record<string, unknown>) ?? "—"));
  const metric = (key: string) =>
    cells(({ job }) => {
      const final = mainReport(((job.runtune?.metrics ?? {}) as Record<string, Record<string, unknown>>).final);
      return formatNumber(final?.[key] as number | undefined, 3);
    });
  return (
    <section>
      <div class="page-head">
        <h1>Compare runs</h1>
        <Link href="/runs">All runs</Link>
      </div>
      <div class={valid.length ? "grid-2" : ""}>
        <div class="card">
          <h3>Training loss</h3>
          <LineChart series={series("loss")} xLabel="step" testId="compare-loss-chart" empty="No metrics were reported" />
        </div>
        {valid.length > 0 && (
          <div class="card">
            <h3>Validation loss</h3>
            <LineChart series={valid} xLabel="step" testId="compare-valid-chart" />
          </div>
        )}
      </div>
      <div class="card table-scroll">
        <table class="list compare" data-testid="compare-table">
          <thead>
            <tr>
              <th />
              {compared.map(({ job }, i) => (
                <th key={job.id}>
                  <i class="swatch" style={{ background: COLORS[i] }} /> <Link href={`/runs/${job.id}`}>{name(job)}</Link>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            <Row label="Status">{cells(({ job }) => <Status value={job.status} />)}</Row>
            <Row label="Model">{cells(({ job }) => job.model)}</Row>
            <Row label="Dataset">{cells(({ job }) => <span title={job.training_file}>{names.get(job.training_file) ?? job.training_file}</span>)}</Row>
            <Row label="Steps">{cells(({ job }) => `${job.steps_completed}${job.total_steps ? ` of ${job.total_steps}` : ""}`)}</Row>
            <Row label="Duration">{cells(({ job }) => (job.finished_at ? formatDuration(job.finished_at - job.created_at) : "—"))}</Row>
            <Row label="Epochs">{hp("n_epochs")}</Row>
            <Row label="Batch size">{hp("batch_size")}</Row>
            <Row label="LR multiplier">{hp("learning_rate_multiplier")}</Row>
            <Row label="Method">{option((o) => o.method)}</Row>
            <Row label="LoRA rank / alpha">{option((o) => (o.lora ? `${(o.lora as Record<string, unknown>).rank} / ${(o.lora as Record<string, unknown>).alpha}` : null))}</Row>
            <Row label="Max length">{option((o) => o.max_length)}</Row>
            <Row label="Schedule">{option((o) => o.lr_scheduler)}</Row>
            <Row label="Final training loss">{cells(({ points }) => formatNumber(last(points, "loss")))}</Row>
            <Row label="Final validation loss">{cells(({ points }) => formatNumber(last(points, "valid")))}</Row>
            <Row label="Accuracy">{metric("accuracy")}</Row>
            <Row label="Macro-F1">{metric("macro_f1")}</Row>
            <Row label="Trained tokens">{cells(({ job }) => (job.trained_tokens ? job.trained_tokens.toLocaleString() : "—"))}</Row>
          </tbody>
        </table>
      </div>
    </section>
  );
}
