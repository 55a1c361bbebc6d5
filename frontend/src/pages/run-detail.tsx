import { useEffect, useState } from "preact/hooks";
import { type Checkpoint, type Export, type GpuList, type Job, type JobDeleted, type JobEvent, type Lineage, type MetricsPoint, PAUSABLE, type Page, TERMINAL, del, get, post } from "../api";
import { LineChart, type Series } from "../charts";
import { retryBody } from "../clone";
import { SPOT_WORDS, placeWords } from "../compute";
import { Hyperparameters, TrainingOptions } from "../hyperparameters";
import { DatasetRef, IdChip, useModelNames } from "../names";
import { Comparison, mainReport } from "../results";
import { Link, navigate } from "../router";
import { followEvents } from "../sse";
import { ErrorBox, Loading, ProgressBar, Resolved, Status, asApiError, formatDate, formatDuration, formatNumber, useAction, useResource } from "../ui";

export interface Point {
  step: number;
  loss: number | null;
  lr: number | null;
  /** The held-out loss, on the steps the trainer measured it (`valid_loss`). */
  valid: number | null;
  /** A dpo run's implicit rewards: the share of pairs ordered right, the margin, each answer's reward. */
  rewardAccuracy: number | null;
  rewardMargin: number | null;
  chosenReward: number | null;
  rejectedReward: number | null;
}

export function toPoint(data: MetricsPoint): Point {
  return {
    step: data.step,
    loss: data.loss ?? data.train_loss ?? null,
    lr: data.lr ?? data.learning_rate ?? null,
    valid: data.valid_loss ?? null,
    rewardAccuracy: data.reward_accuracy ?? null,
    rewardMargin: data.reward_margin ?? null,
    chosenReward: data.chosen_reward ?? null,
    rejectedReward: data.rejected_reward ?? null,
  };
}

/** A step's point merged into the curve (a later event of the same step adds to it, never erases). */
function merged(old: Point[], point: Point): Point[] {
  const before = old.find((p) => p.step === point.step);
  const next = before
    ? (Object.fromEntries(Object.entries(point).map(([key, value]) => [key, value ?? before[key as keyof Point]])) as unknown as Point)
    : point;
  return [...old.filter((p) => p.step !== point.step), next].sort((a, b) => a.step - b.step);
}

function useEvents(jobId: string) {
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [points, setPoints] = useState<Point[]>([]);
  const [error, setError] = useState<Error | null>(null);
  const [done, setDone] = useState(false);
  useEffect(() => {
    setEvents([]);
    setPoints([]);
    setDone(false);
    return followEvents(
      `/v1/fine_tuning/jobs/${jobId}/events`,
      (message) => {
        if (message.event === "done") return setDone(true);
        const event = JSON.parse(message.data) as JobEvent;
        if (event.type === "metrics" && event.data) {
          const point = toPoint(event.data);
          setPoints((old) => merged(old, point));
        } else {
          setEvents((old) => [event, ...old]);
        }
      },
      setError,
    );
  }, [jobId]);
  return { events, points, error, done };
}

function Checkpoints({ job }: { job: Job }) {
  const list = useResource(() => get<Page<Checkpoint>>(`/v1/fine_tuning/jobs/${job.id}/checkpoints?limit=50`), [job.id, job.status, Math.floor(job.steps_completed / 10)]);
  if (!list.data) return null;
  if (list.data.data.length === 0) return <p class="muted">No checkpoints yet.</p>;
  return (
    <ul class="checkpoints" data-testid="checkpoints">
      {list.data.data.map((c) => (
        <li key={c.id} data-testid="checkpoint">
          step {c.step_number} · loss {formatNumber(c.metrics.train_loss)}
          {c.metrics.valid_loss !== undefined && <> · valid loss {formatNumber(c.metrics.valid_loss)}</>}
          {c.best && <span class="badge" title="Lowest validation loss"> best</span>} · <code>{c.fine_tuned_model_checkpoint}</code>{" "}
          <Link href={`/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}`} data-testid="use-checkpoint">
            Use this model
          </Link>
        </li>
      ))}
    </ul>
  );
}

/** A card of one chart over the run's steps. */
function ChartCard(props: { title: string; series: Series[]; testId: string; empty: string }) {
  return (
    <div class="card">
      <h3>{props.title}</h3>
      <LineChart series={props.series} xLabel="step" testId={props.testId} empty={props.empty} />
    </div>
  );
}

function RunBody({ job, reload }: { job: Job; reload: () => Promise<void> }) {
  const { events, points, error, done } = useEvents(job.id);
  const [actionError, setActionError] = useState<ReturnType<typeof asApiError> | null>(null);
  // The action under way (cancel, pause, resume): its button says so and every button waits.
  const [acting, setActing] = useState<"cancel" | "pause" | "resume" | null>(null);
  const live = !TERMINAL.includes(job.status);
  const empty = done ? "No metrics were reported" : live ? "Waiting for the first points…" : "Loading…";
  const fraction = job.status === "succeeded" ? 1 : job.total_steps ? job.steps_completed / job.total_steps : 0;
  const act = async (action: "cancel" | "pause" | "resume") => {
    setActing(action);
    setActionError(null);
    try {
      await post(`/v1/fine_tuning/jobs/${job.id}/${action}`);
      await reload();
    } catch (caught) {
      setActionError(asApiError(caught));
    } finally {
      setActing(null);
    }
  };
  const metrics = (job.runtune?.metrics ?? {}) as Record<string, Record<string, unknown>>;
  const loss = points.filter((p) => p.loss !== null).map((p) => ({ x: p.step, y: p.loss! }));
  const lr = points.filter((p) => p.lr !== null).map((p) => ({ x: p.step, y: p.lr! }));
  const valid = points.filter((p) => p.valid !== null).map((p) => ({ x: p.step, y: p.valid! }));
  const series = (key: keyof Point) => points.filter((p) => p[key] !== null).map((p) => ({ x: p.step, y: p[key] as number }));
  const rewarded = points.some((p) => p.rewardAccuracy !== null);
  const [retrying, setRetrying] = useState(false);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [confirmCancel, setConfirmCancel] = useState(false);
  const retry = async () => {
    setRetrying(true);
    setActionError(null);
    try {
      const again = await post<Job>("/v1/fine_tuning/jobs", retryBody(job), { "Idempotency-Key": crypto.randomUUID() });
      navigate(`/runs/${again.id}`);
    } catch (caught) {
      setActionError(asApiError(caught));
    } finally {
      setRetrying(false);
    }
  };
  return (
    <section>
      <div class="page-head">
        <div>
          <h1>{job.suffix || "Unnamed run"}</h1>
          <p class="muted">
            {job.model} · dataset <DatasetRef id={job.training_file} /> · {formatDate(job.created_at)} · <IdChip id={job.id} />
          </p>
          {job.lineage && job.lineage.parent !== job.lineage.root && <LineageLine lineage={job.lineage} />}
        </div>
        <div class="actions">
          {PAUSABLE.includes(job.status) && (
            <button class="secondary" onClick={() => void act("pause")} disabled={acting !== null}>
              {acting === "pause" ? "Pausing…" : "Pause"}
            </button>
          )}
          {job.status === "paused" && (
            <button class="primary" onClick={() => void act("resume")} disabled={acting !== null}>
              {acting === "resume" ? "Resuming…" : "Resume"}
            </button>
          )}
          {live && (
            <button class="danger" onClick={() => setConfirmCancel(true)} disabled={acting !== null || confirmCancel}>
              {acting === "cancel" ? "Cancelling…" : "Cancel run"}
            </button>
          )}
          {(job.status === "failed" || job.status === "cancelled") && (
            <button class="primary" onClick={() => void retry()} disabled={retrying} title="A new run with the same settings">
              {retrying ? "Retrying…" : "Retry"}
            </button>
          )}
          <Link class="button secondary" href={`/runs/new?from=${job.id}`} title="A new run with these settings, to change first">
            Clone
          </Link>
          {!live && (
            <button class="danger" onClick={() => setConfirmDelete(true)} disabled={confirmDelete}>
              Delete run
            </button>
          )}
          {job.fine_tuned_model && (
            <>
              <Link class="button secondary" href={`/playground?model=${encodeURIComponent(job.fine_tuned_model)}`}>
                Vibe check
              </Link>
              <Link class="button secondary" href={`/evaluations?model=${encodeURIComponent(job.fine_tuned_model)}&dataset=${job.training_file}`}>
                Evaluate
              </Link>
              <Link class="button secondary" href={`/exports?job=${job.id}`}>
                Export
              </Link>
            </>
          )}
        </div>
      </div>
      <ErrorBox error={actionError} />
      {confirmDelete && <DeleteRun job={job} onClose={() => setConfirmDelete(false)} />}
      {confirmCancel && live && (
        <div class="card confirm" role="alertdialog" aria-label="Cancel this run?" data-testid="cancel-run">
          <h3>Cancel this run?</h3>
          <p>
            It stops for good{job.status === "running" ? "; the steps since its last checkpoint are lost" : ""}. To stop it for now and go on later, pause
            it instead.
          </p>
          <div class="actions">
            <button class="danger" onClick={() => void act("cancel").then(() => setConfirmCancel(false))} disabled={acting !== null}>
              {acting === "cancel" ? "Cancelling…" : "Yes, cancel the run"}
            </button>
            <button class="secondary" onClick={() => setConfirmCancel(false)} disabled={acting !== null}>
              Keep it
            </button>
          </div>
        </div>
      )}
      <div class="card run-status">
        <div class="facts-row">
          <span>
            Status <Status value={job.status} />
          </span>
          <span data-testid="run-phase">Phase {job.phase ? job.phase.replace(/_/g, " ") : "—"}</span>
          <span data-testid="run-steps">
            Step {job.steps_completed}
            {job.total_steps ? ` of ${job.total_steps}` : ""}
          </span>
          <span>ETA {live ? formatDuration(job.seconds_remaining) : "—"}</span>
          <WhereLine job={job} live={live} />
          {job.fine_tuned_model && (
            <span>
              Model <code data-testid="fine-tuned-model">{job.fine_tuned_model}</code>
            </span>
          )}
        </div>
        <ProgressBar value={fraction} label="Training progress" />
        <Hyperparameters job={job} />
        <TrainingOptions job={job} />
        {job.error && (
          <div class="error-box" role="alert">
            {job.error.message}
          </div>
        )}
      </div>
      <div class="grid-2">
        <ChartCard
          title={valid.length ? "Loss" : "Training loss"}
          series={[{ name: "loss", color: "#4f46e5", points: loss }, ...(valid.length ? [{ name: "validation loss", color: "#ea580c", points: valid }] : [])]}
          testId="loss-chart"
          empty={empty}
        />
        <ChartCard title="Learning rate" series={[{ name: "learning rate", color: "#0891b2", points: lr }]} testId="lr-chart" empty={empty} />
      </div>
      {rewarded && (
        <div class="grid-2" data-testid="reward-charts">
          <ChartCard
            title="Rewards (DPO)"
            series={[
              { name: "chosen reward", color: "#16a34a", points: series("chosenReward") },
              { name: "rejected reward", color: "#dc2626", points: series("rejectedReward") },
              { name: "margin", color: "#4f46e5", points: series("rewardMargin") },
            ]}
            testId="reward-chart"
            empty={empty}
          />
          <ChartCard title="Reward accuracy" series={[{ name: "reward accuracy", color: "#ea580c", points: series("rewardAccuracy") }]} testId="reward-accuracy-chart" empty={empty} />
        </div>
      )}
      {(metrics.final || metrics.baseline) && (
        <div class="card">
          <h3>Evaluation (held-out {String(job.options?.["evaluation"] && (job.options["evaluation"] as Record<string, unknown>).split) || "split"})</h3>
          <Comparison
            columns={[
              { name: "base", report: mainReport(metrics.baseline) },
              { name: "tuned", report: mainReport(metrics.final) },
            ]}
          />
        </div>
      )}
      <div class="grid-2">
        <div class="card">
          <h3>Events</h3>
          {error && <div class="field-error">The live stream stopped: {error.message}</div>}
          {events.length === 0 ? (
            <p class="muted">{done || live ? "No events yet." : "Loading…"}</p>
          ) : (
            <ol class="events" data-testid="events-log">
              {events.map((e) => (
                <li key={e.id} class={`level-${e.level}`}>
                  <time>{new Date(e.created_at * 1000).toLocaleTimeString()}</time> {e.message}
                </li>
              ))}
            </ol>
          )}
        </div>
        <div class="card">
          <h3>Checkpoints</h3>
          <Checkpoints job={job} />
        </div>
      </div>
    </section>
  );
}

/** The confirm of a run's delete: what goes with it, listed before anything is deleted. */
function DeleteRun({ job, onClose }: { job: Job; onClose: () => void }) {
  const produced = useResource(async () => {
    const [checkpoints, exports] = await Promise.all([
      get<Page<Checkpoint>>(`/v1/fine_tuning/jobs/${job.id}/checkpoints?limit=100`),
      get<Page<Export>>("/v1/exports?limit=100"),
    ]);
    return { checkpoints: checkpoints.data, exports: exports.data.filter((e) => e.job_id === job.id) };
  }, [job.id]);
  const action = useAction();
  const { busy, error } = action;
  const model = job.fine_tuned_model && !job.model_deleted_at ? job.fine_tuned_model : null;
  const remove = () =>
    action.run(async () => {
      if (model) {
        // Through the inference service first: it also unloads the model from the engine.
        await del(`/v1/models/${encodeURIComponent(model)}`).catch((caught) => {
          if (!asApiError(caught).notFound) throw caught;
        });
      }
      await del<JobDeleted>(`/v1/fine_tuning/jobs/${job.id}`);
      navigate("/runs");
    });
  return (
    <div class="card confirm" role="alertdialog" aria-label="Delete this run?" data-testid="delete-run">
      <h3>Delete this run?</h3>
      {!produced.data ? (
        <Loading label="Listing what it produced…" />
      ) : (
        <>
          <p>This deletes, for good:</p>
          <ul data-testid="delete-run-list">
            <li>the run, its events and metrics</li>
            {model && (
              <li>
                the model <code>{model}</code>
              </li>
            )}
            {produced.data.checkpoints.length > 0 && (
              <li>
                {produced.data.checkpoints.length} model checkpoint{produced.data.checkpoints.length === 1 ? "" : "s"}:{" "}
                {produced.data.checkpoints.map((c) => `step ${c.step_number}`).join(", ")}
              </li>
            )}
            {produced.data.exports.length > 0 && (
              <li>
                {produced.data.exports.length} export{produced.data.exports.length === 1 ? "" : "s"} (
                {produced.data.exports.map((e) => e.format).join(", ")})
              </li>
            )}
          </ul>
          <p class="muted">Evaluations and vibe checks of the model stay in their history.</p>
        </>
      )}
      <ErrorBox error={error ?? produced.error} />
      <div class="actions">
        <button class="danger" onClick={() => void remove()} disabled={busy || !produced.data}>
          {busy ? "Deleting…" : "Delete run and all it produced"}
        </button>
        <button class="secondary" onClick={onClose} disabled={busy}>
          Keep it
        </button>
      </div>
    </div>
  );
}

export function RunDetail({ id }: { id: string }) {
  const resource = useResource(() => get<Job>(`/v1/fine_tuning/jobs/${id}`), [id], {
    every: 2000,
    poll: (job) => !TERMINAL.includes(job.status),
  });
  return (
    <Resolved resource={resource} what="Run" back={{ href: "/runs", label: "Back to your runs" }}>
      {(job) => <RunBody job={job} reload={resource.reload} />}
    </Resolved>
  );
}

/** Where the run trains (or trained): its plan's backend and machine, from the job's estimate summary. */
function WhereLine({ job, live }: { job: Job; live: boolean }) {
  const gpus = useResource(() => get<GpuList>("/v1/fine_tuning/gpus"), []).data;
  const summary = job.estimate;
  if (!job.gpu && summary?.machine !== "cpu") return null; // not planned yet: its files are still validated
  const vertex = summary?.compute === "vertex" && job.machine;
  const gpuLabel = vertex ? `${summary.gpu_count} x ${job.gpu}, ${job.machine}` : gpus?.data.find((gpu) => gpu.id === job.gpu)?.label ?? job.gpu;
  const place = placeWords({ compute: summary?.compute, machine: vertex ? job.machine : summary?.machine, spot: summary?.spot, gpuLabel, machineLabel: summary?.machine === "cpu" ? "this machine's CPU" : null }, gpus?.where);
  return (
    <span data-testid="run-where" title={summary?.spot ? SPOT_WORDS : undefined}>
      {live ? "Trains on" : job.status === "succeeded" ? "Trained on" : "Planned on"} {place}
    </span>
  );
}

/** A continued run's chain: its root base, then each tuned model it descends from (a link to its run). */
function LineageLine({ lineage }: { lineage: Lineage }) {
  const names = useModelNames();
  return (
    <p class="muted" data-testid="lineage">
      Continues{" "}
      {lineage.chain.map((id, i) => {
        const run = id.startsWith("ft:") ? id.split(":")[2] : undefined;
        return (
          <span key={id}>
            {i > 0 && " → "}
            {run ? (
              <Link href={`/runs/${run}`} title={id}>
                {names.get(id) || run}
              </Link>
            ) : (
              <code title="base model">{id}</code>
            )}
          </span>
        );
      })}
      {" → this run"}
    </p>
  );
}
