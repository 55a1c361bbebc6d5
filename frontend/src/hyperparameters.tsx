import { Fragment } from "preact";
import type { Job } from "./api";

const NAMES: [key: string, label: string][] = [
  ["n_epochs", "Epochs"],
  ["batch_size", "Batch size"],
  ["learning_rate_multiplier", "LR multiplier"],
];

/** The job's hyperparameters as it trains with them: "auto → 8" where `auto` was asked for (the
 * tooltip says why), "auto" while the training file is still being validated. */
export function Hyperparameters({ job }: { job: Job }) {
  const auto = job.auto_hyperparameters ?? {};
  return (
    <dl class="facts" data-testid="hyperparameters">
      {NAMES.map(([key, label]) => {
        const value = job.hyperparameters?.[key] ?? "auto";
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
