import { Fragment } from "preact";
import type { Job } from "./api";
import { askedHyperparameters } from "./clone";

const NAMES: [key: string, label: string][] = [
  ["n_epochs", "Epochs"],
  ["batch_size", "Batch size"],
  ["learning_rate_multiplier", "LR multiplier"],
];
const KNOWN = new Set(NAMES.map(([key]) => key));

/** The job's hyperparameters as it trains with them: "auto → 8" where `auto` was asked for (the
 * tooltip says why), "auto" while the training file is still being validated. */
export function Hyperparameters({ job }: { job: Job }) {
  const auto = job.auto_hyperparameters ?? {};
  // The method's own hyperparameters (a dpo job's beta) beside OpenAI's three.
  const resolved: Record<string, number | string> = { ...askedHyperparameters(job), ...job.hyperparameters };
  // Every resolved hyperparameter: the three of OpenAI's supervised method, then any other (DPO's beta).
  const others = Object.keys(resolved)
    .filter((key) => !KNOWN.has(key))
    .map((key): [string, string] => [key, key === "beta" ? "DPO beta" : key.replace(/_/g, " ")]);
  return (
    <dl class="facts" data-testid="hyperparameters">
      {[...NAMES, ...others].map(([key, label]) => {
        const value = resolved[key] ?? "auto";
        const why = auto[key];
        return (
          <Fragment key={key}>
            <dt>{label}</dt>
            <dd data-testid={`hp-${key}`} title={why}>
              {why ? `auto → ${value}` : String(value)}
            </dd>
          </Fragment>
        );
      })}
    </dl>
  );
}

type Options = Record<string, unknown>;

/** How the run trains, beyond the hyperparameters: the job's Runtune options as stored. */
export function TrainingOptions({ job }: { job: Job }) {
  const o = (job.options ?? {}) as Options;
  const lora = (o.lora ?? {}) as Options;
  const evaluation = (o.evaluation ?? {}) as Options;
  const rows: [string, unknown][] = [
    // `auto`: what the plan chose and why (bf16 LoRA where it fits the GPU, else QLoRA).
    ["Method", o.method === "auto" && job.auto_hyperparameters?.method ? `auto: ${job.auto_hyperparameters.method}` : o.method],
    ["LoRA rank / alpha / dropout", o.method === "full" ? null : `${lora.rank} / ${lora.alpha} / ${lora.dropout}`],
    ["Max length (tokens)", o.max_length],
    ["Schedule", o.lr_scheduler && `${o.lr_scheduler}, warm-up ${o.warmup_ratio}`],
    ["Gradient accumulation", o.gradient_accumulation_steps ?? "auto"],
    ["Checkpoint every", o.checkpoint_every_steps && `${o.checkpoint_every_steps} steps`],
    ["Evaluation", evaluation.method && `${String(evaluation.method).replace(/_/g, " ")} on ${evaluation.split}${evaluation.baseline ? ", base too" : ""}`],
    ["GPU", job.gpu ?? o.gpu],
    ["Pushed to the Hub", ((o.export ?? {}) as Options).push_to_hub],
    ["Seed", job.seed],
  ];
  return (
    <details class="advanced" data-testid="training-options">
      <summary>All settings</summary>
      <dl class="facts">
        {rows
          .filter(([, value]) => value !== undefined && value !== null && value !== "")
          .map(([label, value]) => (
            <Fragment key={label}>
              <dt>{label}</dt>
              <dd>{String(value)}</dd>
            </Fragment>
          ))}
      </dl>
    </details>
  );
}
