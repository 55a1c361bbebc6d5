import { type Job, type Page, TERMINAL, get } from "../api";
import { Link } from "../router";
import { Empty, ErrorBox, Loading, ProgressBar, Status, formatDate, formatDuration, useResource } from "../ui";

export function jobFraction(job: Job): number | null {
  if (job.status === "succeeded") return 1;
  return job.total_steps ? job.steps_completed / job.total_steps : null;
}

export function Runs() {
  const list = useResource(() => get<Page<Job>>("/v1/fine_tuning/jobs?limit=50"), [], {
    every: 3000,
    poll: (page) => page.data.some((job) => !TERMINAL.includes(job.status)),
  });
  return (
    <section>
      <div class="page-head">
        <h1>Runs</h1>
        <Link class="button primary" href="/runs/new">
          New run
        </Link>
      </div>
      {list.loading && !list.data && <Loading />}
      <ErrorBox error={list.error} />
      {list.data && list.data.data.length === 0 && (
        <Empty title="No runs yet">
          <p>Pick a dataset and a model; the estimate tells you the GPU, time and cost before anything starts.</p>
          <Link class="button primary" href="/runs/new">
            Launch your first run
          </Link>
        </Empty>
      )}
      {list.data && list.data.data.length > 0 && (
        <div class="table-scroll">
          <table class="list" data-testid="runs-table">
            <thead>
              <tr>
                <th>Run</th>
                <th>Status</th>
                <th>Progress</th>
                <th class="hide-phone">Model</th>
                <th class="hide-phone">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.data.data.map((job) => {
                const fraction = jobFraction(job);
                return (
                  <tr key={job.id} data-testid="run-row">
                    <td>
                      <Link href={`/runs/${job.id}`}>{job.suffix || job.id}</Link>
                    </td>
                    <td>
                      <Status value={job.status} /> {job.phase && !TERMINAL.includes(job.status) && <span class="muted">{job.phase.replace(/_/g, " ")}</span>}
                    </td>
                    <td>
                      {fraction !== null ? <ProgressBar value={fraction} /> : "—"}
                      {job.seconds_remaining !== null && !TERMINAL.includes(job.status) && <span class="muted">{formatDuration(job.seconds_remaining)} left</span>}
                    </td>
                    <td class="hide-phone">{job.model}</td>
                    <td class="hide-phone">{formatDate(job.created_at)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
