// Evaluation results, the trainer's (job.runtune.metrics) and the evaluations API's alike: a base vs
// tuned table and the confusion matrix.
import { ConfusionMatrix } from "./charts";
import { formatNumber } from "./ui";

export interface Report {
  accuracy?: number;
  macro_f1?: number;
  unmapped_rate?: number;
  samples?: number;
  confusion_matrix?: { labels: string[]; rows: { label: string; predicted: number[] }[] };
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
  ["unmapped_rate", "Unmapped answers"],
  ["loss", "Loss"],
  ["perplexity", "Perplexity"],
  ["exact_match", "Exact match"],
  ["token_f1", "Token F1"],
  ["rouge_l", "ROUGE-L"],
  ["samples", "Samples"],
];

/** The main report of one model's evaluation (label scoring if present, else generation, else itself). */
export function mainReport(metrics: Record<string, unknown> | undefined | null): Report | null {
  if (!metrics) return null;
  const report = (metrics.label_scoring ?? metrics.generation ?? metrics) as Report;
  return typeof report === "object" ? report : null;
}

export function Comparison({ columns }: { columns: { name: string; report: Report | null }[] }) {
  const present = columns.filter((c) => c.report);
  const rows = HEADLINES.filter(([key]) => present.some((c) => typeof c.report?.[key] === "number"));
  if (present.length === 0 || rows.length === 0) return null;
  const matrix = present[present.length - 1].report?.confusion_matrix;
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
      {matrix && (
        <>
          <h4>Confusion matrix ({present[present.length - 1].name})</h4>
          <ConfusionMatrix labels={matrix.labels} matrix={matrix.rows.map((r) => r.predicted)} />
        </>
      )}
    </div>
  );
}
