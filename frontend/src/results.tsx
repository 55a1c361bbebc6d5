// Evaluation results, the trainer's (job.runtune.metrics) and the evaluations API's alike: a base vs
// tuned table, the per-class precision / recall / F1 / support, and a confusion matrix per model.
import type { ClassScores, Confusion } from "./api";
import { ConfusionMatrix } from "./charts";
import { formatNumber } from "./ui";

export interface Report {
  accuracy?: number;
  macro_f1?: number;
  unmapped_rate?: number;
  samples?: number;
  confusion_matrix?: Confusion;
  per_class?: Record<string, ClassScores>;
  loss?: number;
  perplexity?: number;
  exact_match?: number;
  token_f1?: number;
  rouge_l?: number;
  [key: string]: unknown;
}

const HEADLINES: [string, string][] = [
  ["accuracy", "Accuracy"],
  ["macro_f1", "Macro-F1"],
  ["macro_precision", "Macro precision"],
  ["macro_recall", "Macro recall"],
  ["weighted_f1", "Weighted F1"],
  ["unmapped_rate", "Unmapped answers"],
  ["loss", "Loss"],
  ["perplexity", "Perplexity"],
  ["exact_match", "Exact match"],
  ["token_f1", "Token F1"],
  ["rouge_l", "ROUGE-L"],
  ["reward_accuracy", "Reward accuracy"],
  ["reward_margin", "Reward margin"],
  ["samples", "Samples"],
];

/** The main report of one model's evaluation (label scoring if present, else generation, else itself).
 * An evaluation's (`Evaluation.metrics`, generated: `ModelReport`) is itself; a job's
 * (`job.runtune.metrics`, still untyped in the API) nests label scoring, generation or preference. */
export function mainReport(metrics: Record<string, unknown> | undefined | null): Report | null {
  if (!metrics) return null;
  const report = (metrics.label_scoring ?? metrics.generation ?? metrics.preference ?? metrics) as Report;
  return typeof report === "object" ? report : null;
}

export function Comparison({ columns }: { columns: { name: string; report: Report | null }[] }) {
  const present = columns.filter((c) => c.report);
  const rows = HEADLINES.filter(([key]) => present.some((c) => typeof c.report?.[key] === "number"));
  if (present.length === 0 || rows.length === 0) return null;
  const classified = present.filter((c) => c.report?.per_class);
  return (
    <div class="results" data-testid="evaluation-results">
      <div class="table-scroll">
        <table class="list compare">
          <thead>
            <tr>
              <th>Metric</th>
              {present.map((c) => (
                <th key={c.name}>{c.name}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map(([key, label]) => (
              <tr key={key}>
                <th>{label}</th>
                {present.map((c) => (
                  <td key={c.name}>{formatNumber(c.report?.[key] as number | undefined, 3)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {classified.length > 0 && <PerClass columns={classified} />}
      <div class={classified.length > 1 ? "grid-2" : ""}>
        {present.map(
          (c) =>
            c.report?.confusion_matrix && (
              <div key={c.name} data-model={c.name}>
                <h4>Confusion matrix ({c.name})</h4>
                <ConfusionMatrix labels={c.report.confusion_matrix.labels} matrix={c.report.confusion_matrix.rows.map((r) => r.predicted)} />
              </div>
            ),
        )}
      </div>
    </div>
  );
}

const PER_CLASS: ["precision" | "recall" | "f1", string][] = [
  ["precision", "Precision"],
  ["recall", "Recall"],
  ["f1", "F1"],
];

/** One row per label: precision, recall and F1 for each model side by side, then the support. */
function PerClass({ columns }: { columns: { name: string; report: Report | null }[] }) {
  // In the label set's order (an array); a stored map's keys come back in any order.
  const first = columns[0].report;
  const labels = first?.confusion_matrix?.labels ?? Object.keys(first?.per_class ?? {}).sort();
  return (
    <div class="table-scroll">
      <h4>Per class</h4>
      <table class="list compare" data-testid="per-class">
        <thead>
          <tr>
            <th rowSpan={2}>Label</th>
            {PER_CLASS.map(([key, label]) => (
              <th key={key} colSpan={columns.length}>
                {label}
              </th>
            ))}
            <th rowSpan={2} title="Examples of this label in the split">
              Support
            </th>
          </tr>
          <tr>
            {PER_CLASS.flatMap(([key]) =>
              columns.map((c) => (
                <th key={`${key}-${c.name}`} title={c.name}>
                  {c.name.split(":")[0]}
                </th>
              )),
            )}
          </tr>
        </thead>
        <tbody>
          {labels.map((label) => (
            <tr key={label} data-testid="per-class-row">
              <th>{label}</th>
              {PER_CLASS.flatMap(([key]) =>
                columns.map((c) => <td key={`${key}-${c.name}`}>{formatNumber(c.report?.per_class?.[label]?.[key], 3)}</td>),
              )}
              <td>{supportOf(columns, label)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function supportOf(columns: { report: Report | null }[], label: string): string {
  const support = columns[0].report?.per_class?.[label]?.support;
  return support === undefined ? "—" : String(support);
}
