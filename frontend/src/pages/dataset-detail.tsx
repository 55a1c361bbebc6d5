import { useEffect, useRef, useState } from "preact/hooks";
import { type Dataset, type DatasetStats, type Distribution, type Page, type Sample, del, get, query } from "../api";
import { BarChart, DistributionStrip } from "../charts";
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
                {!sample.label && answer && <span class="answer">{answer}</span>}
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

export function DatasetDetail({ id }: { id: string }) {
  const resource = useResource(() => get<Dataset>(`/v1/datasets/${id}`), [id], {
    every: 1500,
    poll: (d) => d.status === "processing" || d.status === "uploading",
  });
  const [deleteError, setDeleteError] = useState<ReturnType<typeof asApiError> | null>(null);
  const remove = async (dataset: Dataset) => {
    if (!confirm(`Delete the dataset "${dataset.name}" and its files?`)) return;
    try {
      await del(`/v1/datasets/${dataset.id}`);
      navigate("/datasets");
    } catch (caught) {
      setDeleteError(asApiError(caught));
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
                  {formatDate(dataset.created_at)} · <code>{dataset.id}</code>
                </p>
              </div>
              <div class="actions">
                {dataset.status === "ready" && (
                  <Link class="button primary" href={`/runs/new?dataset=${dataset.id}`}>
                    Train on it
                  </Link>
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
              <div class="error-box" role="alert">
                Processing failed: {dataset.error?.message ?? "unknown error"}
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
