import { useState } from "preact/hooks";
import { type Dataset, type Evaluation, type Model, type Page, get, post } from "../api";
import { DatasetRef, IdChip, TunedModelField, modelLabel } from "../names";
import { Comparison, mainReport } from "../results";
import { Link, navigate } from "../router";
import { Empty, ErrorBox, Field, Loading, ProgressBar, LinkCell, Resolved, Status, StatusCell, Table, errorFor, formError, formatDate, onSubmit, useAction, useResource } from "../ui";

function NewEvaluation({ onCreated }: { onCreated: () => void }) {
  const params = new URLSearchParams(location.search);
  const models = useResource(() => get<Page<Model>>("/v1/models"), []);
  const datasets = useResource(() => get<Page<Dataset>>("/v1/datasets?limit=100"), []);
  const tuned = models.data?.data.filter((m) => m.id.startsWith("ft:")) ?? [];
  const all = datasets.data?.data ?? [];
  const ready = all.filter((d) => d.status === "ready");
  const byId = new Map(all.map((d) => [d.id, d]));
  const [model, setModel] = useState(params.get("model") ?? "");
  const [dataset, setDataset] = useState(params.get("dataset") ?? "");
  const [split, setSplit] = useState("test");
  const [withBase, setWithBase] = useState(true);
  const [maxSamples, setMaxSamples] = useState("");
  const action = useAction();
  const { busy, error } = action;
  if (models.loading || datasets.loading) return <Loading />;
  if (tuned.length === 0) {
    return (
      <Empty title="No tuned model to evaluate">
        <Link href="/runs/new">Launch a run first</Link>
      </Empty>
    );
  }
  const chosenModel = model || tuned[0].id;
  // A link from a run names its dataset: it may have been deleted since (or still be processing).
  const asked = params.get("dataset");
  const askedMissing = !!asked && !ready.some((d) => d.id === asked) && dataset === asked;
  const chosenDataset = (askedMissing ? "" : dataset) || ready[0]?.id || "";
  // The base of the chain (a continued model's root, not the tuned model it continued).
  const chosenTuned = tuned.find((m) => m.id === chosenModel);
  const parent = chosenTuned?.lineage?.root ?? chosenTuned?.parent;
  const chosen = ready.find((d) => d.id === chosenDataset);
  const submit = onSubmit(action, async () => {
    const evaluation = await post<Evaluation>("/v1/evaluations", {
      dataset_id: chosenDataset,
      split,
      models: withBase && parent ? [parent, chosenModel] : [chosenModel],
      method: chosen?.task_kind === "classification" ? "label_scoring" : "generation",
      max_samples: maxSamples ? Number(maxSamples) : undefined,
    });
    onCreated();
    navigate(`/evaluations/${evaluation.id}`);
  });
  return (
    <form class="card" onSubmit={submit} noValidate>
      <h3>New evaluation</h3>
      <div class="grid-2">
        <TunedModelField models={tuned} value={chosenModel} onChange={setModel} datasets={byId} error={errorFor(error, "models")} />
        <Field label="Dataset" error={errorFor(error, "dataset_id")}>
          {ready.length === 0 ? (
            <p class="field-note" data-testid="no-dataset-reason">
              {all.length === 0 ? "You have no dataset (the one this model was trained on was deleted)." : "None of your datasets is ready: they are processing or failed."}{" "}
              <Link href="/datasets/new">Upload one</Link> to evaluate on.
            </p>
          ) : (
            <select name="dataset" value={chosenDataset} onChange={(e) => setDataset(e.currentTarget.value)}>
              {ready.map((d) => (
                <option key={d.id} value={d.id} title={d.id}>
                  {d.name}
                </option>
              ))}
            </select>
          )}
          {askedMissing && (
            <span class="field-note" data-testid="asked-dataset-missing">
              {byId.get(asked) ? `The run's dataset "${byId.get(asked)!.name}" is ${byId.get(asked)!.status}` : "The run's dataset was deleted"}: pick another.
            </span>
          )}
        </Field>
        <Field label="Split" error={errorFor(error, "split")}>
          <select name="split" value={split} onChange={(e) => setSplit(e.currentTarget.value)}>
            <option value="test">test</option>
            <option value="validation">validation</option>
            <option value="train">train</option>
          </select>
        </Field>
        <Field label="Max samples" error={errorFor(error, "max_samples")}>
          <input type="number" name="max_samples" min={1} value={maxSamples} placeholder="all" onInput={(e) => setMaxSamples(e.currentTarget.value)} />
        </Field>
      </div>
      <label class="check">
        <input type="checkbox" checked={withBase} onChange={(e) => setWithBase(e.currentTarget.checked)} /> Compare with the base model ({parent ?? "—"})
      </label>
      <ErrorBox error={formError(error, ["models", "dataset_id", "split", "max_samples", "method"])} />
      <button class="primary" type="submit" disabled={busy || !chosenDataset}>
        {busy ? "Starting…" : "Evaluate"}
      </button>
    </form>
  );
}

/** A model id in words: a tuned one by its run's name (the models list knows it), a base one as is. */
function useModelNames(): (id: string) => string {
  const models = useResource(() => get<Page<Model>>("/v1/models"), []);
  return (id: string) => {
    const found = models.data?.data.find((m) => m.id === id || id.startsWith(m.id + ":"));
    return found ? modelLabel({ ...found, id }) : id;
  };
}

function EvaluationDetail({ id }: { id: string }) {
  const nameOf = useModelNames();
  const resource = useResource(() => get<Evaluation>(`/v1/evaluations/${id}`), [id], {
    every: 1500,
    poll: (e) => e.status === "queued" || e.status === "running",
  });
  return (
    <Resolved resource={resource} what="Evaluation" back={{ href: "/evaluations", label: "Back to evaluations" }}>
      {(evaluation) => (
        <section>
          <div class="page-head">
            <h1>Evaluation</h1>
            <Link href="/evaluations">All evaluations</Link>
          </div>
          <div class="card">
            <p>
              <Status value={evaluation.status} /> {evaluation.method.replace("_", " ")} on <DatasetRef id={evaluation.dataset_id} /> ({evaluation.split}) · <IdChip id={evaluation.id} />
            </p>
            {(evaluation.status === "running" || evaluation.status === "queued") && (
              <ProgressBar value={evaluation.samples_total ? evaluation.samples_done / evaluation.samples_total : 0} label="Evaluation progress" />
            )}
            {evaluation.error && (
              <div class="error-box" role="alert">
                {evaluation.error.message}
              </div>
            )}
          </div>
          {evaluation.status === "succeeded" && (
            <div class="card">
              <Comparison
                columns={evaluation.models.map((model, i) => ({
                  name: evaluation.models.length === 2 ? `${i === 0 ? "base" : "tuned"}: ${nameOf(model)}` : nameOf(model),
                  report: mainReport(evaluation.metrics[model]),
                }))}
              />
            </div>
          )}
        </section>
      )}
    </Resolved>
  );
}

export function Evaluations({ id }: { id?: string }) {
  const list = useResource(() => get<Page<Evaluation>>("/v1/evaluations?limit=50"), []);
  const nameOf = useModelNames();
  if (id) return <EvaluationDetail id={id} />;
  return (
    <section>
      <div class="page-head">
        <h1>Evaluations</h1>
      </div>
      <NewEvaluation onCreated={() => void list.reload()} />
      <ErrorBox error={list.error} />
      {list.data && list.data.data.length === 0 && <Empty title="No evaluations yet" />}
      {list.data && list.data.data.length > 0 && (
        <Table class="list" scroll columns={["Evaluation", "Status", "Models", { label: "Created", class: "hide-phone" }]}>
          {list.data.data.map((e) => (
            <tr key={e.id}>
              <LinkCell href={`/evaluations/${e.id}`}>{e.id}</LinkCell>
              <StatusCell value={e.status} />
              <td title={e.models.join(" vs ")}>{e.models.map(nameOf).join(" vs ")}</td>
              <td class="hide-phone">{formatDate(e.created_at)}</td>
            </tr>
          ))}
        </Table>
      )}
    </section>
  );
}
