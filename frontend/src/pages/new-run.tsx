import type { JSX } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, type Dataset, type Estimate, type GpuList, type Job, type Model, type Page, get, post } from "../api";
import { formFromJob } from "../clone";
import { type ComputeChoice, Offers, SPOT_WORDS, placeWords } from "../compute";
import { lineageText, modelLabel } from "../names";
import { Link, navigate } from "../router";
import { ErrorBox, Field, Loading, asApiError, errorFor, formError, formatDuration, onSubmit, useAction, useResource } from "../ui";
import { basisWords, estimateWords, fieldWords, plainWords } from "../words";

export interface Form {
  dataset: string;
  model: string;
  epochs: string;
  batchSize: string;
  lrMultiplier: string;
  /** DPO's beta ("auto": 0.1), sent when the dataset is a preference set (the run is then `dpo`). */
  beta: string;
  method: "auto" | "qlora" | "lora";
  rank: number;
  alpha: number;
  dropout: number;
  maxLength: number;
  scheduler: "cosine" | "linear";
  warmup: number;
  checkpointEvery: number;
  baseline: boolean;
  evalMethod: "label_scoring" | "generation" | "both";
  gpu: string; // "auto" or a GPU of GET /v1/fine_tuning/gpus
  /** Where it trains (`runtune.compute`), whether Vertex AI may use Spot capacity, and with `auto` the
   * hours it must finish within ("" for no limit). */
  compute: ComputeChoice;
  spot: boolean;
  maxHours: string;
  suffix: string;
  metadata: string;
  /** A Hugging Face repo id the trainer pushes the adapter to, with the stored `hf_token`. */
  pushToHub: string;
  /** A cloned run's options that the form has no field for (src/clone.ts), sent unchanged. */
  carried?: Record<string, unknown>;
}

const PRESETS: Record<string, { label: string; about: string; values: Partial<Form> }> = {
  quick: { label: "Quick check", about: "1 epoch, rank 8: does it learn at all?", values: { epochs: "1", rank: 8, alpha: 16, lrMultiplier: "auto" } },
  balanced: { label: "Balanced", about: "Automatic epochs, rank 16", values: { epochs: "auto", rank: 16, alpha: 32, lrMultiplier: "auto" } },
  thorough: { label: "Thorough", about: "5 epochs, rank 32, baseline evaluation", values: { epochs: "5", rank: 32, alpha: 64, baseline: true } },
};

const DEFAULTS: Form = {
  dataset: "",
  model: "",
  epochs: "auto",
  batchSize: "auto",
  lrMultiplier: "auto",
  beta: "auto",
  method: "auto",
  rank: 16,
  alpha: 32,
  dropout: 0.05,
  maxLength: 1024,
  scheduler: "cosine",
  warmup: 0.03,
  checkpointEvery: 50,
  baseline: false,
  evalMethod: "label_scoring",
  gpu: "auto",
  compute: "auto",
  spot: false,
  maxHours: "",
  suffix: "",
  metadata: "",
  pushToHub: "",
};

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(0)} M`;
  return `${(n / 1e3).toFixed(0)} k`;
}

function formatGib(gib: number): string {
  return gib >= 0.1 ? `${gib.toFixed(1)} GiB` : `${Math.max(1, Math.round(gib * 1024))} MiB`;
}

const autoOr = (value: string) => (value.trim() === "" || value === "auto" ? "auto" : Number(value));

function parseMetadata(text: string): Record<string, string> | undefined {
  const pairs = text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const cut = line.indexOf("=");
      return cut < 0 ? [line, ""] : [line.slice(0, cut).trim(), line.slice(cut + 1).trim()];
    });
  return pairs.length ? Object.fromEntries(pairs) : undefined;
}

/** The method a run on `dataset` takes: DPO on preference pairs, supervised on everything else (the
 * server refuses any other pairing). */
export const tuningOf = (dataset: Dataset | undefined): "supervised" | "dpo" => (dataset?.task_kind === "preference" ? "dpo" : "supervised");

/** Continued fine-tuning: the model is one of the user's own tuned models, whose adapter trains on as it is. */
const continues = (model: string) => model.startsWith("ft:");

function body(form: Form) {
  const { lora: carriedLora, ...carried } = form.carried ?? {};
  return {
    hyperparameters: { n_epochs: autoOr(form.epochs), batch_size: autoOr(form.batchSize), learning_rate_multiplier: autoOr(form.lrMultiplier) },
    runtune: {
      ...carried,
      method: form.method,
      // A continued run keeps its parent adapter's LoRA shape: none is sent.
      ...(continues(form.model) ? {} : { lora: { ...(carriedLora as object), rank: form.rank, alpha: form.alpha, dropout: form.dropout } }),
      max_length: form.maxLength,
      lr_scheduler: form.scheduler,
      warmup_ratio: form.warmup,
      checkpoint_every_steps: form.checkpointEvery,
      evaluation: { ...(form.carried?.evaluation as object), baseline: form.baseline, method: form.evalMethod },
      export: { ...(form.carried?.export as object), push_to_hub: form.pushToHub.trim() || null },
      gpu: form.gpu,
      compute: form.compute,
      // Cloud Run has no Spot capacity; a time limit only narrows `auto`'s choice.
      spot: form.compute !== "cloud_run" && form.spot,
      max_hours: form.compute === "auto" ? maxHours(form) : null,
    },
  };
}

/** The "finish within" hours as the API takes them: a positive number, or none. */
function maxHours(form: Form): number | null {
  const hours = Number(form.maxHours);
  return form.maxHours.trim() !== "" && Number.isFinite(hours) ? hours : null;
}

function EstimatePanel({ form, where }: { form: Form; where?: GpuList["where"] }) {
  const [estimate, setEstimate] = useState<Estimate | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(false);
  const key = JSON.stringify([form.model, form.dataset, body(form)]);
  useEffect(() => {
    if (!form.model || !form.dataset) return;
    setLoading(true);
    const timer = setTimeout(() => {
      const { hyperparameters, runtune } = body(form);
      post<Estimate>("/v1/fine_tuning/estimate", { model: form.model, training_file: form.dataset, hyperparameters, runtune })
        .then((value) => {
          setEstimate(value);
          setError(null);
        })
        .catch((caught) => setError(asApiError(caught)))
        .finally(() => setLoading(false));
    }, 300);
    return () => clearTimeout(timer);
  }, [key]);
  if (!form.model || !form.dataset) return <p class="muted">Pick a dataset and a model to see the estimate.</p>;
  return (
    <div class="estimate card" data-testid="estimate" aria-busy={loading}>
      <h3>Estimate {loading && <span class="spinner small" aria-hidden="true" />}</h3>
      {error && (
        <div class="field-error">
          {error.param ? `${fieldWords(error.param)}: ` : ""}
          {estimateWords(plainWords(error.message))}
        </div>
      )}
      {estimate && !error && (
        <dl class="facts">
          <dt>Steps</dt>
          <dd>{estimate.steps.toLocaleString()}</dd>
          <dt>Tokens</dt>
          <dd>{estimate.tokens.toLocaleString()}</dd>
          <dt>GPU memory</dt>
          <dd>{estimate.memory_gib.toFixed(1)} GiB</dd>
          <dt>Where it trains</dt>
          <dd data-testid="estimate-where">
            {estimate.gpu_label ? (
              placeWords({ compute: estimate.compute, machine: estimate.machine, spot: estimate.spot, gpuLabel: estimate.gpu_label, machineLabel: estimate.machine_label }, where)
            ) : (
              <span class="field-error">{estimateWords(estimate.reason ?? "does not fit")}</span>
            )}
          </dd>
          <dt>Duration</dt>
          <dd data-testid="estimate-duration">
            {estimate.seconds_low != null && estimate.seconds_high != null
              ? `${formatDuration(estimate.seconds_low)} – ${formatDuration(estimate.seconds_high)}`
              : formatDuration(estimate.seconds)}
          </dd>
          <dt>Cost</dt>
          <dd data-testid="estimate-cost">
            {estimate.usd === null
              ? "—"
              : estimate.usd_low != null && estimate.usd_high != null && estimate.usd_high > 0
                ? `$${estimate.usd_low.toFixed(2)} – $${estimate.usd_high.toFixed(2)}`
                : `$${estimate.usd.toFixed(2)}`}
          </dd>
          {estimate.basis && (
            <>
              <dt>Based on</dt>
              <dd data-testid="estimate-basis">{basisWords(estimate.calibrated_runs)}</dd>
            </>
          )}
          <dt>Epochs / batch</dt>
          <dd>
            {estimate.hyperparameters.n_epochs} / {estimate.hyperparameters.batch_size}
          </dd>
        </dl>
      )}
      {estimate && !error && <Offers estimate={estimate} choice={form.compute} spot={form.spot} maxHours={maxHours(form)} />}
      {estimate && !error && estimate.needs_hub_token && (
        <p class="field-error" data-testid="estimate-hub">
          This model's weights come from the Hugging Face Hub: add your Hugging Face token in{" "}
          <Link href="/settings">Settings</Link> (and accept the model's license on huggingface.co) before launching.
        </p>
      )}
      {estimate && !error && (estimate.warnings ?? [])
        .filter((warning) => !estimate.needs_hub_token || !warning.includes("Hugging Face Hub"))
        .map((warning) => (
          <p class="field-error" data-testid="estimate-warning">{estimateWords(warning)}</p>
        ))}
    </div>
  );
}

/** `?from=<job id>`: the run whose settings fill the form (Clone on the run page). */
function useCloned(fill: (job: Job) => void) {
  const from = new URLSearchParams(location.search).get("from");
  return useResource(async () => {
    if (!from) return null;
    const job = await get<Job>(`/v1/fine_tuning/jobs/${encodeURIComponent(from)}`);
    fill(job);
    return job;
  }, [from]);
}

export function NewRun() {
  const preselected = new URLSearchParams(location.search).get("dataset") ?? "";
  const [form, setForm] = useState<Form>({ ...DEFAULTS, dataset: preselected });
  const cloned = useCloned((job) => setForm(formFromJob(job, DEFAULTS)));
  const action = useAction();
  const { busy, error } = action;
  const idempotencyKey = useMemo(() => crypto.randomUUID(), []);
  // A problem in a folded field unfolds "Advanced", so every problem is in sight at once.
  const advanced = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    if (advanced.current && error?.problems.some((p) => p.param && !/\.hyperparameters\.|^(model|training_file)$|\.(compute|spot|max_hours)$/.test(p.param))) advanced.current.open = true;
  }, [error]);
  const datasets = useResource(() => get<Page<Dataset>>("/v1/datasets?limit=100"), []);
  const models = useResource(() => get<Page<Model>>("/v1/models"), []);
  const gpus = useResource(() => get<GpuList>("/v1/fine_tuning/gpus"), []).data;
  const ready = datasets.data?.data.filter((d) => d.status === "ready") ?? [];
  const selectedDataset = ready.find((d) => d.id === form.dataset);
  const fits = (modality: string | null | undefined) => !selectedDataset?.modality || modality === selectedDataset.modality || modality === "vision";
  const allModels = models.data?.data ?? [];
  const modalityOf = (m: Model) => m.modality ?? allModels.find((b) => b.id === m.lineage?.root)?.modality;
  const baseModels = allModels.filter((m) => !continues(m.id) && fits(m.modality));
  // The user's own tuned models (not their checkpoints): a run may continue one of them.
  const tunedModels = allModels.filter((m) => continues(m.id) && m.step_number === undefined && fits(modalityOf(m)));
  const tunedNames = new Map(tunedModels.filter((m) => m.name).map((m) => [m.id, m.name as string]));
  const datasetNames = useMemo(() => new Map(ready.map((d) => [d.id, d])), [ready.length]);

  useEffect(() => {
    // Checked on the current form: a clone's settings may have filled it since this render.
    if (ready.length) setForm((f) => (f.dataset ? f : { ...f, dataset: ready[0].id }));
  }, [ready.length]);

  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((f) => ({ ...f, [key]: value }));
  const input = (key: keyof Form, numeric = false) => (event: Event) => {
    const target = event.currentTarget as HTMLInputElement;
    set(key, (target.type === "checkbox" ? target.checked : numeric ? Number(target.value) : target.value) as never);
  };

  // A number field for `form[key]`, showing the API's problem at `param`.
  const numberField = (label: string, key: keyof Form, param: string, attributes: JSX.InputHTMLAttributes = {}, hint?: string) => (
    <Field label={label} error={errorFor(error, param)} hint={hint}>
      <input type="number" value={form[key] as number} onInput={input(key, true)} {...attributes} />
    </Field>
  );

  const submit = onSubmit(action, async () => {
    const { hyperparameters, runtune } = body(form);
    const tuning = tuningOf(selectedDataset);
    const asked = tuning === "dpo" ? { ...hyperparameters, beta: autoOr(form.beta) } : hyperparameters;
    const job = await post<Job>(
      "/v1/fine_tuning/jobs",
      {
        model: form.model,
        training_file: form.dataset,
        suffix: form.suffix.trim() || undefined,
        metadata: parseMetadata(form.metadata),
        method: { type: tuning, [tuning]: { hyperparameters: asked, runtune } },
      },
      { "Idempotency-Key": idempotencyKey },
    );
    navigate(`/runs/${job.id}`);
  });

  if (datasets.loading || models.loading || cloned.loading) return <Loading />;
  if (datasets.error || models.error || cloned.error) return <ErrorBox error={datasets.error ?? models.error ?? cloned.error} />;
  const fields = ["training_file", "model", "n_epochs", "batch_size", "learning_rate_multiplier", "beta", "runtune.method", "rank", "alpha", "dropout", "max_length", "lr_scheduler", "warmup_ratio", "checkpoint_every_steps", "evaluation", "gpu", "compute", "spot", "max_hours", "suffix", "metadata", "push_to_hub"];
  return (
    <section>
      <div class="page-head">
        <h1>New run</h1>
      </div>
      {cloned.data && (
        <p class="muted" data-testid="cloned-from">
          Settings of <Link href={`/runs/${cloned.data.id}`}>{cloned.data.suffix || cloned.data.id}</Link>; change what you like.
        </p>
      )}
      {ready.length === 0 ? (
        <div class="empty">
          <h3>No ready dataset</h3>
          <p>A run trains on a processed dataset. Upload one first.</p>
          <a class="button primary" href="/datasets/new">
            New dataset
          </a>
        </div>
      ) : (
        <form class="run-form" onSubmit={submit} noValidate>
          <div class="card">
            <Field label="Dataset" error={errorFor(error, "training_file")}>
              <select name="dataset" value={form.dataset} onChange={input("dataset")}>
                {ready.map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.name} ({Object.values(d.splits).reduce((a, b) => a + b, 0)} rows, {d.task_kind})
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Run name" error={errorFor(error, "suffix")} hint="How pickers and lists name this run (its suffix): letters, digits, - and _">
              <input name="suffix" value={form.suffix} onInput={input("suffix")} placeholder="e.g. shapes-rank16" maxLength={64} />
            </Field>
            <fieldset class="models">
              <legend>Model</legend>
              {errorFor(error, "model") && <span class="field-error">{errorFor(error, "model")}</span>}
              <div class="model-grid">
                {baseModels.map((m) => (
                  <label key={m.id} class={"model-card" + (form.model === m.id ? " selected" : "")}>
                    <input type="radio" name="model" value={m.id} checked={form.model === m.id} onChange={() => set("model", m.id)} />
                    <strong>{m.id}</strong>
                    <span class="muted">
                      {m.modality} · {m.parameters ? `${formatCount(m.parameters)} parameters` : ""}
                    </span>
                    <span>weights {m.memory_gib?.qlora !== undefined ? formatGib(m.memory_gib.qlora) : "?"} on the GPU (QLoRA)</span>
                  </label>
                ))}
              </div>
              {tunedModels.length > 0 && (
                <>
                  <h4>Or continue one of your tuned models</h4>
                  <div class="model-grid" data-testid="tuned-models">
                    {tunedModels.map((m) => (
                      <label key={m.id} class={"model-card" + (form.model === m.id ? " selected" : "")} title={m.id}>
                        <input type="radio" name="model" value={m.id} checked={form.model === m.id} onChange={() => set("model", m.id)} />
                        <strong>{m.name || m.fine_tuning_job}</strong>
                        <span class="muted">{modelLabel(m, datasetNames)}</span>
                        <span>{m.lineage ? lineageText(m.lineage, tunedNames) : m.parent}</span>
                      </label>
                    ))}
                  </div>
                </>
              )}
            </fieldset>
          </div>
          <div class="card">
            <h3>Preset</h3>
            <div class="presets">
              {Object.entries(PRESETS).map(([key, preset]) => (
                <button type="button" key={key} class="secondary" title={preset.about} onClick={() => setForm((f) => ({ ...f, ...preset.values }))}>
                  {preset.label}
                </button>
              ))}
            </div>
            <div class="grid-3">
              <Field label="Epochs" error={errorFor(error, "n_epochs")}>
                <input name="epochs" value={form.epochs} onInput={input("epochs")} />
              </Field>
              <Field label="Batch size" error={errorFor(error, "batch_size")}>
                <input name="batch_size" value={form.batchSize} onInput={input("batchSize")} />
              </Field>
              <Field label="Learning-rate multiplier" error={errorFor(error, "learning_rate_multiplier")}>
                <input name="lr_multiplier" value={form.lrMultiplier} onInput={input("lrMultiplier")} />
              </Field>
              {tuningOf(selectedDataset) === "dpo" && (
                <Field label="DPO beta" error={errorFor(error, "beta")} hint="Preference pairs train with DPO; beta keeps the model near its base (auto: 0.1)">
                  <input name="beta" value={form.beta} onInput={input("beta")} />
                </Field>
              )}
            </div>
            <details class="advanced" ref={advanced}>
              <summary>Advanced</summary>
              <div class="grid-3">
                <Field label="Method" error={errorFor(error, "runtune.method")}>
                  <select value={form.method} onChange={input("method")}>
                    <option value="auto">Auto (16-bit LoRA where it fits the GPU, else QLoRA)</option>
                    <option value="qlora">QLoRA (4-bit)</option>
                    <option value="lora">LoRA (16-bit)</option>
                  </select>
                </Field>
                {numberField("LoRA rank", "rank", "rank", { name: "lora_rank", disabled: continues(form.model) }, continues(form.model) ? "A continued run keeps its parent's LoRA rank, alpha and dropout" : undefined)}
                {numberField("LoRA alpha", "alpha", "alpha", { disabled: continues(form.model) })}
                {numberField("LoRA dropout", "dropout", "dropout", { step: "0.01" })}
                {numberField("Max length (tokens)", "maxLength", "max_length", { name: "max_length" })}
                <Field label="Schedule" error={errorFor(error, "lr_scheduler")}>
                  <select value={form.scheduler} onChange={input("scheduler")}>
                    <option value="cosine">cosine</option>
                    <option value="linear">linear</option>
                  </select>
                </Field>
                {numberField("Warm-up ratio", "warmup", "warmup_ratio", { step: "0.01" })}
                {numberField("Checkpoint every (steps)", "checkpointEvery", "checkpoint_every_steps", { name: "checkpoint_every_steps" })}
                <Field label="GPU" error={errorFor(error, "gpu")}>
                  <select value={form.gpu} onChange={input("gpu")}>
                    <option value="auto">the smallest that fits</option>
                    {(gpus?.data ?? []).map((gpu) => (
                      <option value={gpu.id}>{gpu.label}</option>
                    ))}
                  </select>
                </Field>
                <Field label="Evaluation" error={errorFor(error, "evaluation")}>
                  <select value={form.evalMethod} onChange={input("evalMethod")}>
                    <option value="label_scoring">label scoring</option>
                    <option value="generation">generation</option>
                    <option value="both">both</option>
                  </select>
                </Field>
                <label class="check">
                  <input type="checkbox" checked={form.baseline} onChange={input("baseline")} /> Evaluate the base model too
                </label>
                <Field label="Push to the Hugging Face Hub" error={errorFor(error, "push_to_hub")} hint="A repo id (you/model); uses the token in Settings">
                  <input name="push_to_hub" value={form.pushToHub} onInput={input("pushToHub")} placeholder="not pushed" />
                </Field>
              </div>
              <Field label="Metadata" error={errorFor(error, "metadata")} hint="key=value, one per line (up to 16)">
                <textarea name="metadata" rows={2} value={form.metadata} onInput={input("metadata")} />
              </Field>
            </details>
          </div>
          <div class="card" data-testid="compute">
            <h3>Compute</h3>
            <div class="grid-3">
              <Field
                label="Where it trains"
                error={errorFor(error, "compute")}
                hint={gpus?.where && gpus.where !== "cloud" ? "This local platform trains on this machine; Vertex AI needs a cloud deployment that offers its machines" : "Auto picks the cheapest shape that fits; the estimate below compares them"}
              >
                <select name="compute" value={form.compute} onChange={input("compute")}>
                  <option value="auto">Auto: the cheapest that fits</option>
                  <option value="cloud_run">Cloud Run (one GPU)</option>
                  <option value="vertex">Vertex AI (one to eight GPUs)</option>
                </select>
              </Field>
              <Field label="Finish within (hours)" error={errorFor(error, "max_hours")} hint={form.compute === "auto" ? "Only shapes that finish in time; empty for no limit" : "Only with Auto"}>
                <input name="max_hours" type="number" min="0" step="0.5" value={form.maxHours} onInput={input("maxHours")} placeholder="no limit" disabled={form.compute !== "auto"} />
              </Field>
              <div>
                <label class="check">
                  <input type="checkbox" name="spot" checked={form.spot && form.compute !== "cloud_run"} onChange={input("spot")} disabled={form.compute === "cloud_run"} /> Use Spot capacity (Vertex AI only)
                </label>
                <p class="hint" data-testid="spot-hint">
                  {SPOT_WORDS}
                </p>
                {errorFor(error, "spot") && <span class="field-error">{errorFor(error, "spot")}</span>}
              </div>
            </div>
          </div>
          <EstimatePanel form={form} where={gpus?.where} />
          <ErrorBox error={formError(error, fields)} />
          <button class="primary" type="submit" disabled={busy || !form.model}>
            {busy ? "Launching…" : "Launch run"}
          </button>
        </form>
      )}
    </section>
  );
}
