import { useEffect, useState } from "preact/hooks";
import { type Checkpoint, type Job, type JobEvent, PAUSABLE, type Page, TERMINAL, get, post } from "../api";
import { LineChart } from "../charts";
import { Hyperparameters } from "../hyperparameters";
import { DatasetRef, IdChip } from "../names";
import { Comparison, mainReport } from "../results";
import { Link } from "../router";
import { followEvents } from "../sse";
import { ErrorBox, ProgressBar, Resolved, Status, asApiError, formatDate, formatDuration, formatNumber, useResource } from "../ui";

interface Point {
  step: number;
  loss: number | null;
  lr: number | null;
}

function toPoint(data: Record<string, number>): Point {
  return { step: data.step, loss: data.loss ?? data.train_loss ?? null, lr: data.lr ?? data.learning_rate ?? null };
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
        if (event.type === "metrics" && event.data && typeof event.data.step === "number") {
          const point = toPoint(event.data);
          setPoints((old) => [...old.filter((p) => p.step !== point.step), point].sort((a, b) => a.step - b.step));
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

function RunBody({ job, reload }: { job: Job; reload: () => Promise<void> }) {
  const { events, points, error, done } = useEvents(job.id);
  const [actionError, setActionError] = useState<ReturnType<typeof asApiError> | null>(null);
  // The action under way (cancel, pause, resume): its button says so and every button waits.
  const [acting, setActing] = useState<"cancel" | "pause" | "resume" | null>(null);
  const live = !TERMINAL.includes(job.status);
  const empty = done ? "No metrics were reported" : live ? "Waiting for the first points…" : "Loading…";
  const fraction = job.status === "succeeded" ? 1 : job.total_steps ? job.steps_completed / job.total_steps : 0;
  const act = async (action: "cancel" | "pause" | "resume") => {
    if (action === "cancel" && !confirm(`Cancel the run "${job.suffix || job.id}"? It stops now and cannot be resumed.`)) return;
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
  return (
    <section>
      <div class="page-head">
        <div>
          <h1>{job.suffix || "Unnamed run"}</h1>
          <p class="muted">
            {job.model} · dataset <DatasetRef id={job.training_file} /> · {formatDate(job.created_at)} · <IdChip id={job.id} />
          </p>
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
            <button class="danger" onClick={() => void act("cancel")} disabled={acting !== null}>
              {acting === "cancel" ? "Cancelling…" : "Cancel run"}
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
          {job.fine_tuned_model && (
            <span>
              Model <code data-testid="fine-tuned-model">{job.fine_tuned_model}</code>
            </span>
          )}
        </div>
        <ProgressBar value={fraction} label="Training progress" />
        <Hyperparameters job={job} />
        {job.error && (
          <div class="error-box" role="alert">
            {job.error.message}
          </div>
        )}
      </div>
      <div class="grid-2">
        <div class="card">
          <h3>Training loss</h3>
          <LineChart series={[{ name: "loss", color: "#4f46e5", points: loss }]} xLabel="step" testId="loss-chart" empty={empty} />
        </div>
        <div class="card">
          <h3>Learning rate</h3>
          <LineChart series={[{ name: "learning rate", color: "#0891b2", points: lr }]} xLabel="step" testId="lr-chart" empty={empty} />
        </div>
      </div>
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
