// Retry and Clone: a new run with an ended run's settings. The job keeps what was asked for: its
// `method` (hyperparameters with `auto` where auto was asked) and `options` (Runtune's `runtune`).
import type { Job } from "./api";
import type { Form } from "./pages/new-run";

type Options = Record<string, unknown>;

/** The hyperparameters of the job's `method` (a dpo job's with its beta), as the job shows them. */
export function askedHyperparameters(job: Job): Record<string, number | string> {
  return job.method.type === "dpo" ? job.method.dpo.hyperparameters : job.method.supervised.hyperparameters;
}

/** `POST /v1/fine_tuning/jobs`'s body for the same run again. */
export function retryBody(job: Job): Record<string, unknown> {
  const type = job.method.type;
  return {
    model: job.model,
    training_file: job.training_file,
    validation_file: job.validation_file ?? undefined,
    suffix: job.suffix ?? undefined,
    metadata: job.metadata ?? undefined,
    seed: job.seed,
    method: { type, [type]: { hyperparameters: askedHyperparameters(job), runtune: job.options } },
  };
}

const text = (value: unknown, fallback: string) => (value === undefined || value === null ? fallback : String(value));

/** The new-run form filled with the job's settings; `carried` keeps the options the form has no field for. */
export function formFromJob(job: Job, defaults: Form): Form {
  const o = (job.options ?? {}) as Options;
  const lora = (o.lora ?? {}) as Options;
  const evaluation = (o.evaluation ?? {}) as Options;
  const hp = askedHyperparameters(job);
  return {
    ...defaults,
    dataset: job.training_file,
    model: job.model,
    epochs: text(hp.n_epochs, "auto"),
    batchSize: text(hp.batch_size, "auto"),
    lrMultiplier: text(hp.learning_rate_multiplier, "auto"),
    beta: text(hp.beta, "auto"),
    method: o.method === "lora" || o.method === "qlora" ? o.method : "auto",
    rank: Number(lora.rank ?? defaults.rank),
    alpha: Number(lora.alpha ?? defaults.alpha),
    dropout: Number(lora.dropout ?? defaults.dropout),
    maxLength: Number(o.max_length ?? defaults.maxLength),
    scheduler: o.lr_scheduler === "linear" ? "linear" : "cosine",
    warmup: Number(o.warmup_ratio ?? defaults.warmup),
    checkpointEvery: Number(o.checkpoint_every_steps ?? defaults.checkpointEvery),
    baseline: Boolean(evaluation.baseline),
    evalMethod: (evaluation.method as Form["evalMethod"]) ?? defaults.evalMethod,
    gpu: (o.gpu as Form["gpu"]) ?? defaults.gpu,
    compute: o.compute === "cloud_run" || o.compute === "vertex" ? o.compute : "auto",
    spot: Boolean(o.spot),
    maxHours: o.max_hours === undefined || o.max_hours === null ? "" : String(o.max_hours),
    suffix: job.suffix ?? "",
    metadata: Object.entries(job.metadata ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join("\n"),
    pushToHub: String(((o.export ?? {}) as Options).push_to_hub ?? ""),
    carried: o,
  };
}
