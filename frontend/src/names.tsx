// Names instead of ids: a run is called by its `suffix` (the run name the form asks for), a dataset by
// its name. The id stays one hover (title) or one click (copy) away.
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { type Dataset, type Lineage, type Model, type Page, get } from "./api";
import { Link } from "./router";
import { Field, useResource } from "./ui";

const shortDate = (unix: number | undefined) =>
  unix ? new Date(unix * 1000).toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }) : "";

/** The user's datasets by id (the first 100: what pickers offer, too). */
export function useDatasets(): Map<string, Dataset> | null {
  const list = useResource(() => get<Page<Dataset>>("/v1/datasets?limit=100"), []);
  return list.data ? new Map(list.data.data.map((d) => [d.id, d])) : list.error ? new Map() : null;
}

/** "shapes-rank16 · tiny-gemma-3-vision on demo shapes, 3 Dec 14:40" (a checkpoint adds its step). */
export function modelLabel(model: Model, datasets?: Map<string, Dataset> | null): string {
  if (!model.id.startsWith("ft:")) return model.id;
  const dataset = model.training_file ? datasets?.get(model.training_file)?.name : undefined;
  const step = model.step_number ?? Number(model.id.match(/:ckpt-step-(\d+)$/)?.[1] ?? NaN);
  const base = model.lineage?.root ?? model.id.split(":")[1];
  return [
    model.name || "unnamed run",
    Number.isFinite(step) ? ` (checkpoint, step ${step})` : "",
    ` · ${base}`,
    dataset ? ` on ${dataset}` : "",
    model.created ? `, ${shortDate(model.created)}` : "",
  ].join("");
}

/** The picker of a tuned model: each in words (`modelLabel`), its id on hover; `children` follow it. */
export function TunedModelField(props: {
  models: Model[];
  value: string;
  onChange: (id: string) => void;
  datasets?: Map<string, Dataset> | null;
  error: string | null;
  children?: ComponentChildren;
}) {
  return (
    <Field label="Tuned model" error={props.error}>
      <select name="model" value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        {props.models.map((m) => (
          <option key={m.id} value={m.id} title={m.id}>
            {modelLabel(m, props.datasets)}
          </option>
        ))}
      </select>
      {props.children}
    </Field>
  );
}

/** The run names (`name`, the suffix) of the user's tuned models, by model id (a deleted one is absent). */
export function useModelNames(): Map<string, string> {
  const list = useResource(() => get<Page<Model>>("/v1/models"), []);
  return new Map((list.data?.data ?? []).filter((m) => m.name).map((m) => [m.id, m.name as string]));
}

/** "tiny-gemma-3-vision → shapes-a → this model": a continued model's chain, root first, each tuned
 * model by its run name where `names` has it (else its job id). */
export function lineageText(lineage: Lineage, names?: Map<string, string>): string {
  const named = (id: string) => (id.startsWith("ft:") ? names?.get(id) || (id.split(":")[2] ?? id) : id);
  return [...lineage.chain.map(named), "this model"].join(" → ");
}

/** An id in small type, whole on hover, with a button that copies it. */
export function IdChip({ id, label }: { id: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(id);
    } catch {
      // No clipboard API (a page served over plain http from another host): select and copy.
      const field = document.createElement("textarea");
      field.value = id;
      document.body.appendChild(field);
      field.select();
      document.execCommand("copy");
      field.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1500);
  };
  return (
    <span class="id-chip">
      <code title={id}>{label ?? id}</code>
      <button type="button" class="copy" title={`Copy ${id}`} aria-label={`Copy ${id}`} data-testid="copy-id" onClick={() => void copy()}>
        {copied ? "copied" : "copy"}
      </button>
    </span>
  );
}

/** A link to a dataset by its name; one that no longer exists says so (a run or an evaluation only
 * ever names its owner's datasets, so a 404 there means deleted, never "someone else's"). */
export function DatasetRef({ id }: { id: string }) {
  const dataset = useResource(() => get<Dataset>(`/v1/datasets/${id}`), [id]);
  if (dataset.error?.notFound) {
    return (
      <span class="deleted" title={id} data-testid="dataset-deleted">
        deleted dataset
      </span>
    );
  }
  return (
    <Link href={`/datasets/${id}`} title={id} data-testid="dataset-link">
      {dataset.data?.name ?? id}
    </Link>
  );
}
