import { useState } from "preact/hooks";
import { type Dataset, type Job, type Page, TERMINAL, get } from "../api";
import { Link, navigate } from "../router";
import { Empty, ErrorBox, Loading, ProgressBar, Status, formatDate, formatDuration, useResource } from "../ui";

export function jobFraction(job: Job): number | null {
  if (job.status === "succeeded") return 1;
  return job.total_steps ? job.steps_completed / job.total_steps : null;
}

// The list's filters, kept in the URL (`/runs?status=failed&model=...`) so a filtered list is a link.
const FILTERS = ["status", "model", "dataset"] as const;
type Filter = (typeof FILTERS)[number];
type Filters = Record<Filter, string>;

function readFilters(): Filters {
  const params = new URLSearchParams(location.search);
  return { status: params.get("status") ?? "", model: params.get("model") ?? "", dataset: params.get("dataset") ?? "" };
}

function matches(job: Job, f: Filters): boolean {
  return (!f.status || job.status === f.status) && (!f.model || job.model === f.model) && (!f.dataset || job.training_file === f.dataset);
}

const distinct = (values: string[]) => [...new Set(values)].sort();

export function Runs() {
  // The newest 100 runs, filtered here: the jobs API (OpenAI's) filters by metadata only.
  const list = useResource(() => get<Page<Job>>("/v1/fine_tuning/jobs?limit=100"), [], {
    every: 3000,
    poll: (page) => page.data.some((job) => !TERMINAL.includes(job.status)),
  });
  const datasets = useResource(() => get<Page<Dataset>>("/v1/datasets?limit=100"), []);
  const names = new Map((datasets.data?.data ?? []).map((d) => [d.id, d.name]));
  const [filters, setFilters] = useState<Filters>(readFilters);
  const [chosen, setChosen] = useState<string[]>([]);
  const setFilter = (key: Filter, value: string) => {
    const next = { ...filters, [key]: value };
    setFilters(next);
    const search = new URLSearchParams(Object.entries(next).filter(([, v]) => v)).toString();
    history.replaceState(null, "", `/runs${search ? `?${search}` : ""}`);
  };
  const toggle = (id: string) => setChosen((old) => (old.includes(id) ? old.filter((x) => x !== id) : [...old, id]));
  const all = list.data?.data ?? [];
  const shown = all.filter((job) => matches(job, filters));
  const options: Record<Filter, [string, string][]> = {
    status: distinct(all.map((j) => j.status)).map((s) => [s, s.replace(/_/g, " ")]),
    model: distinct(all.map((j) => j.model)).map((m) => [m, m]),
    dataset: distinct(all.map((j) => j.training_file)).map((d) => [d, names.get(d) ?? d]),
  };
  return (
    <section>
      <div class="page-head">
        <h1>Runs</h1>
        <div class="actions">
          <button
            class="secondary"
            disabled={chosen.length < 2}
            title="Tick two or more runs to compare them"
            onClick={() => navigate(`/runs/compare?ids=${chosen.join(",")}`)}
          >
            Compare{chosen.length ? ` (${chosen.length})` : ""}
          </button>
          <Link class="button primary" href="/runs/new">
            New run
          </Link>
        </div>
      </div>
      {list.loading && !list.data && <Loading />}
      <ErrorBox error={list.error} />
      {list.data && all.length === 0 && (
        <Empty title="No runs yet">
          <p>Pick a dataset and a model; the estimate tells you the GPU, time and cost before anything starts.</p>
          <Link class="button primary" href="/runs/new">
            Launch your first run
          </Link>
        </Empty>
      )}
      {all.length > 0 && (
        <div class="filters" data-testid="run-filters">
          {FILTERS.map((key) => (
            <label key={key} class="field inline">
              <span class="field-label">{key[0].toUpperCase() + key.slice(1)}</span>
              <select name={`filter-${key}`} value={filters[key]} onChange={(e) => setFilter(key, e.currentTarget.value)}>
                <option value="">all</option>
                {options[key].map(([value, label]) => (
                  <option key={value} value={value}>
                    {label}
                  </option>
                ))}
              </select>
            </label>
          ))}
          <span class="muted" data-testid="runs-shown">
            {shown.length} of {all.length}
          </span>
        </div>
      )}
      {all.length > 0 && shown.length === 0 && <Empty title="No run matches these filters" />}
      {shown.length > 0 && (
        <div class="table-scroll">
          <table class="list" data-testid="runs-table">
            <thead>
              <tr>
                <th aria-label="Compare" />
                <th>Run</th>
                <th>Status</th>
                <th>Progress</th>
                <th class="hide-phone">Model</th>
                <th class="hide-phone">Dataset</th>
                <th class="hide-phone">Created</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((job) => {
                const fraction = jobFraction(job);
                return (
                  <tr key={job.id} data-testid="run-row">
                    <td>
                      <input type="checkbox" aria-label={`Compare ${job.suffix || job.id}`} checked={chosen.includes(job.id)} onChange={() => toggle(job.id)} />
                    </td>
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
                    <td class="hide-phone" title={job.training_file}>
                      {names.get(job.training_file) ?? job.training_file}
                    </td>
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
