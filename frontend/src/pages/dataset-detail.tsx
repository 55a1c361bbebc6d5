import { useEffect, useRef, useState } from "preact/hooks";
import { type Dataset, type DatasetStats, type Distribution, type Evaluation, type Job, type Page, type Sample, del, get, post, query } from "../api";
import { BarChart, DistributionStrip } from "../charts";
import { IdChip } from "../names";
import { Link, navigate } from "../router";
import { Empty, ErrorBox, Loading, ProgressBar, Resolved, Status, asApiError, formatBytes, formatDate, useResource } from "../ui";
import { datasetProgress } from "./datasets";

function sampleText(sample: Sample): { prompt: string; answer: string } {
  const text = (role: string) =>
    sample.messages
      .filter((m) => m.role === role)
      .flatMap((m) => m.content.filter((p) => p.type === "text").map((p) => p.text ?? ""))
      .join(" ");
  return { prompt: text("user"), answer: text("assistant") };
}

const SPLIT_ORDER = ["train", "validation", "test"];

function Samples({ dataset }: { dataset: Dataset }) {
  // Firestore keeps no key order in maps: show the splits in their usual order, train first.
  const splits = SPLIT_ORDER.filter((s) => (dataset.splits[s] ?? 0) > 0);
  const [split, setSplit] = useState(splits[0] ?? "train");
  const [items, setItems] = useState<Sample[]>([]);
  const [more, setMore] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<ReturnType<typeof asApiError> | null>(null);
  const current = useRef(split);
  current.current = split;
  const load = async (after: string | null) => {
    const asked = split;
    setLoading(true);
    try {
      const page = await get<Page<Sample>>(`/v1/datasets/${dataset.id}/samples${query({ split: asked, limit: 24, after })}`);
      if (current.current !== asked) return; // the user switched splits meanwhile
      setItems((old) => (after ? [...old, ...page.data] : page.data));
      setMore(page.has_more ? (page.last_id ?? null) : null);
      setError(null);
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      if (current.current === asked) setLoading(false);
    }
  };
  useEffect(() => {
    setItems([]);
    void load(null);
  }, [dataset.id, split]);
  return (
    <div>
      <div class="page-head">
        <h2>Samples</h2>
        <div class="tabs compact" role="tablist">
          {splits.map((s) => (
            <button key={s} role="tab" aria-selected={s === split} onClick={() => setSplit(s)}>
              {s} ({dataset.splits[s]})
            </button>
          ))}
        </div>
      </div>
      <ErrorBox error={error} />
      {!loading && items.length === 0 && !error && <Empty title="No samples in this split" />}
      <div class="sample-grid" data-testid="sample-grid">
        {items.map((sample) => {
          const { prompt, answer } = sampleText(sample);
          return (
            <figure class="sample" key={sample.id} data-testid="sample">
              {sample.images[0] ? (
                <img src={sample.images[0].thumbnail} alt={sample.label ?? "sample image"} loading="lazy" width={160} height={160} />
              ) : (
                <div class="no-image">text</div>
              )}
              <figcaption>
                {sample.label && <span class="label-chip">{sample.label}</span>}
                {!sample.label && answer && <span class="answer">{sample.rejected ? `✓ ${answer}` : answer}</span>}
                {sample.rejected && (
                  <span class="answer rejected" data-testid="rejected-answer">
                    ✗ {sample.rejected.flatMap((m) => m.content.filter((p) => p.type === "text").map((p) => p.text ?? "")).join(" ")}
                  </span>
                )}
                <span class="prompt" title={prompt}>
                  {prompt}
                </span>
              </figcaption>
            </figure>
          );
        })}
      </div>
      {loading && <Loading label="Loading samples…" />}
      {more && !loading && (
        <button class="secondary" onClick={() => void load(more)}>
          Load more
        </button>
      )}
    </div>
  );
}

function perSplit(value: unknown): Record<string, number> {
  // `label_counts` is per split in the stats ({split: {label: n}}) and flat on the dataset.
  const result: Record<string, number> = {};
  for (const [key, inner] of Object.entries((value as Record<string, unknown>) ?? {})) {
    if (typeof inner === "number") result[key] = (result[key] ?? 0) + inner;
    else for (const [label, n] of Object.entries(inner as Record<string, number>)) result[label] = (result[label] ?? 0) + n;
  }
  return result;
}

function Stats({ dataset }: { dataset: Dataset }) {
  const stats = useResource(() => get<DatasetStats>(`/v1/datasets/${dataset.id}/stats`), [dataset.id]);
  if (!stats.data) return stats.error ? <ErrorBox error={stats.error} /> : <Loading label="Loading statistics…" />;
  const s = stats.data;
  const labels = perSplit(s.label_counts);
  const dist = (key: string) => s[key] as Distribution | null | undefined;
  return (
    <div class="stats" data-testid="dataset-stats">
      {typeof s.task_kind_reason === "string" && (
        <p class="muted" data-testid="task-kind-reason">
          {String(s.task_kind ?? "")}: {s.task_kind_reason}
        </p>
      )}
      {s.warnings.length > 0 && (
        <div class="warnings" data-testid="dataset-warnings">
          <h3>Warnings</h3>
          <ul>
            {s.warnings.map((w) => (
              <li key={w}>⚠ {w}</li>
            ))}
          </ul>
        </div>
      )}
      <div class="grid-2">
        <div class="card">
          <h3>Rows per split</h3>
          <BarChart values={s.splits} testId="split-chart" />
        </div>
        {Object.keys(labels).length > 0 && (
          <div class="card">
            <h3>Examples per label</h3>
            <BarChart values={labels} testId="label-chart" />
          </div>
        )}
      </div>
      <div class="card">
        <h3>Lengths and sizes</h3>
        <DistributionStrip title="Prompt length" value={dist("prompt_chars")} unit="characters" />
        <DistributionStrip title="Answer length" value={dist("answer_words")} unit="words" />
        <DistributionStrip title="Image width" value={dist("image_width")} unit="px" />
        <DistributionStrip title="Image height" value={dist("image_height")} unit="px" />
        <p class="muted">
          {String(s.images ?? 0)} images ({String(s.images_resized ?? 0)} resized), {String(s.duplicates_removed ?? 0)} duplicates removed,{" "}
          {String(s.skipped_rows ?? 0)} rows skipped.
        </p>
      </div>
    </div>
  );
}

/** What names the dataset: runs that train or validate on it, evaluations that score on it (the
 * newest 100 of each; `more` when there may be others). */
export async function usersOf(datasetId: string): Promise<{ runs: Job[]; evaluations: Evaluation[]; more: boolean }> {
  const [jobs, evaluations] = await Promise.all([
    get<Page<Job>>("/v1/fine_tuning/jobs?limit=100"),
    get<Page<Evaluation>>("/v1/evaluations?limit=100"),
  ]);
  return {
    runs: jobs.data.filter((j) => j.training_file === datasetId || j.validation_file === datasetId),
    evaluations: evaluations.data.filter((e) => e.dataset_id === datasetId),
    more: jobs.has_more || evaluations.has_more,
  };
}

function deleteQuestion(dataset: Dataset, users: Awaited<ReturnType<typeof usersOf>>): string {
  const lines = [`Delete the dataset "${dataset.name}" and its files?`];
  if (users.runs.length || users.evaluations.length) {
    lines.push("", "It is used by:");
    for (const run of users.runs) lines.push(`• run "${run.suffix || run.id}" (${run.status})`);
    for (const e of users.evaluations) lines.push(`• evaluation ${e.id} (${e.status})`);
    if (users.more) lines.push("• and perhaps older ones");
    lines.push("", "They keep their results and models and show the dataset as deleted; one still in progress may fail.");
  } else if (users.more) {
    lines.push("", "None of your newest runs and evaluations uses it.");
  } else {
    lines.push("", "No run or evaluation uses it.");
  }
  return lines.join("\n");
}

export function DatasetDetail({ id }: { id: string }) {
  const resource = useResource(() => get<Dataset>(`/v1/datasets/${id}`), [id], {
    every: 1500,
    poll: (d) => d.status === "processing" || d.status === "uploading",
  });
  const [deleteError, setDeleteError] = useState<ReturnType<typeof asApiError> | null>(null);
  const [retrying, setRetrying] = useState(false);
  const remove = async (dataset: Dataset) => {
    setDeleteError(null);
    try {
      if (!confirm(deleteQuestion(dataset, await usersOf(dataset.id)))) return;
      await del(`/v1/datasets/${dataset.id}`);
      navigate("/datasets");
    } catch (caught) {
      setDeleteError(asApiError(caught));
    }
  };
  // A failed dataset is processed again from the same source (`POST /v1/datasets/{id}/retry`).
  const retry = async (dataset: Dataset) => {
    setRetrying(true);
    setDeleteError(null);
    try {
      await post<Dataset>(`/v1/datasets/${dataset.id}/retry`);
      await resource.reload();
    } catch (caught) {
      setDeleteError(asApiError(caught));
    } finally {
      setRetrying(false);
    }
  };
  return (
    <Resolved resource={resource} what="Dataset" back={{ href: "/datasets", label: "Back to your datasets" }}>
      {(dataset) => {
        const fraction = datasetProgress(dataset);
        return (
          <section>
            <div class="page-head">
              <div>
                <h1>{dataset.name}</h1>
                <p class="muted">
                  <Status value={dataset.status} /> {dataset.task_kind ?? ""} {dataset.modality ?? ""} · {dataset.bytes ? formatBytes(dataset.bytes) : ""} ·{" "}
                  {formatDate(dataset.created_at)} · <IdChip id={dataset.id} />
                </p>
              </div>
              <div class="actions">
                {dataset.status === "ready" && (
                  <Link class="button primary" href={`/runs/new?dataset=${dataset.id}`}>
                    Train on it
                  </Link>
                )}
                {dataset.status === "failed" && (
                  <button class="primary" onClick={() => void retry(dataset)} disabled={retrying}>
                    {retrying ? "Retrying…" : "Retry"}
                  </button>
                )}
                <button class="danger" onClick={() => void remove(dataset)}>
                  Delete
                </button>
              </div>
            </div>
            <ErrorBox error={deleteError} />
            {dataset.status === "processing" && (
              <div class="card">
                <p>Processing: {dataset.progress?.phase ?? "queued"}…</p>
                {fraction !== null ? <ProgressBar value={fraction} label="Processing" /> : <Loading label="Waiting for the worker…" />}
              </div>
            )}
            {dataset.status === "failed" && (
              <div class="error-box" role="alert" data-testid="dataset-error">
                Processing failed: {dataset.error?.message ?? "unknown error"}
                <p class="muted">Retry processes the same file again (after a crash or a timeout, or once a missing token is in Settings); a file with bad rows needs fixing and a new upload.</p>
              </div>
            )}
            {dataset.status === "ready" && (
              <>
                <Stats dataset={dataset} />
                <Samples dataset={dataset} />
              </>
            )}
          </section>
        );
      }}
    </Resolved>
  );
}
