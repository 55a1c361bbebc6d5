// Shared pieces: loading data, loading/empty/error states, form fields that show the API's errors.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";
import { Link } from "./router";
import { fieldWords, plainWords } from "./words";

export interface Resource<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => Promise<void>;
}

/** Loads `load()` now and whenever `deps` change; `every` (ms) polls while `poll(data)` is true. */
export function useResource<T>(
  load: () => Promise<T>,
  deps: unknown[],
  options: { every?: number; poll?: (data: T) => boolean } = {},
): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const alive = useRef(true);
  const reload = useCallback(async () => {
    try {
      const value = await load();
      if (!alive.current) return;
      setData(value);
      setError(null);
    } catch (caught) {
      if (!alive.current) return;
      setError(asApiError(caught));
    } finally {
      if (alive.current) setLoading(false);
    }
  }, deps);
  useEffect(() => {
    alive.current = true;
    setLoading(true);
    setData(null);
    setError(null);
    void reload();
    return () => {
      alive.current = false;
    };
  }, [reload]);
  const { every, poll } = options;
  useEffect(() => {
    if (!every || data === null || (poll && !poll(data))) return;
    const timer = setTimeout(() => void reload(), every);
    return () => clearTimeout(timer);
  }, [data, every, reload]);
  return { data, error, loading, reload };
}

export interface Action {
  /** Under way: the buttons that start it wait. */
  busy: boolean;
  /** Why it last failed, cleared when it starts again; a page may set its own (a file too large). */
  error: ApiError | null;
  setError: (error: ApiError | null) => void;
  /** Runs `work` (a submit, a button's request): busy until it settles, its failure kept in `error`. */
  run: (work: () => Promise<unknown>) => Promise<void>;
}

/** What a form or a button does to the API, with the state every one of them shows. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const run = async (work: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

/** A form's submit handler running `work` as `action` (the browser's own submit prevented). */
export function onSubmit(action: Action, work: () => Promise<unknown>): (event: Event) => void {
  return (event: Event) => {
    event.preventDefault();
    void action.run(work);
  };
}

export function asApiError(caught: unknown): ApiError {
  if (caught instanceof ApiError) return caught;
  return new ApiError(0, (caught as Error)?.message ?? String(caught), "client_error", null, null);
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <h3>{title}</h3>
      {children}
    </div>
  );
}

export function NotFound({ what, back, detail }: { what: string; back: { href: string; label: string }; detail?: string }) {
  // The API answers 404 alike for what never existed and what is someone else's (ids cannot be
  // probed), so the page cannot tell them apart and does not guess.
  return (
    <div class="empty not-found" data-testid="not-found">
      <h2>{what} not found</h2>
      <p>{detail ?? `No ${what.toLowerCase()} with this id in your account: it was deleted, or the link is wrong.`}</p>
      <Link href={back.href}>{back.label}</Link>
    </div>
  );
}

/** An error for the whole page or form (errors that name a field go next to that field). */
export function ErrorBox({ error }: { error: ApiError | null | undefined }) {
  if (!error) return null;
  return (
    <div class="error-box" role="alert">
      {error.message}
    </div>
  );
}

/** The page body for a resource: loading, not found, error, or the content. */
export function Resolved<T>(props: {
  resource: Resource<T>;
  what: string;
  back: { href: string; label: string };
  children: (data: T) => ComponentChildren;
}) {
  const { data, error, loading } = props.resource;
  if (error?.notFound) return <NotFound what={props.what} back={props.back} />;
  if (data === null && loading) return <Loading />;
  if (data === null) return <ErrorBox error={error} />;
  return <>{props.children(data)}</>;
}

function belongs(param: string | null, name: string): boolean {
  if (!param) return false;
  return param === name || param.endsWith("." + name) || param.startsWith(name + ".") || param.includes("." + name + ".");
}

/** The problem of this API error at the field `name` (exactly, or a part of it, as `runtune.lora.rank`),
 * in plain words. A rejected request carries every problem at once (`error.problems`): each field
 * shows its own. */
export function errorFor(error: ApiError | null, ...names: string[]): string | null {
  const problem = error?.problems.find((p) => names.some((name) => belongs(p.param, name)));
  return problem ? plainWords(problem.message) : null;
}

/** What no field of the form shows: the error without a field, or the problems of fields the form
 * does not have, each named in words. */
export function formError(error: ApiError | null, fields: string[]): ApiError | null {
  if (!error) return null;
  if (error.problems.length === 0) return error;
  const left = error.problems.filter((p) => !fields.some((name) => belongs(p.param, name)));
  if (left.length === 0) return null;
  const text = left.map((p) => (p.param ? `${fieldWords(p.param)}: ${plainWords(p.message)}` : plainWords(p.message))).join("; ");
  return new ApiError(error.status, text, error.type, left[0].param, error.code, left);
}

export function Field(props: { label: string; error?: string | null; hint?: string; children: ComponentChildren }) {
  return (
    <label class={"field" + (props.error ? " invalid" : "")}>
      <span class="field-label">{props.label}</span>
      {props.children}
      {props.hint && !props.error && <span class="hint">{props.hint}</span>}
      {props.error && (
        <span class="field-error" role="alert">
          {props.error}
        </span>
      )}
    </label>
  );
}

/** A column's heading; an object gives its cell a class (`hide-phone`: not on a narrow screen). */
export type Column = string | { label: string; class: string };

/** A table under one header row; `scroll` lets a wide one scroll sideways on a phone. */
export function Table(props: { columns: Column[]; class?: string; testId?: string; scroll?: boolean; children: ComponentChildren }) {
  const table = (
    <table class={props.class} data-testid={props.testId}>
      <thead>
        <tr>
          {props.columns.map((column, i) =>
            typeof column === "string" ? <th key={i}>{column}</th> : <th key={i} class={column.class}>{column.label}</th>,
          )}
        </tr>
      </thead>
      <tbody>{props.children}</tbody>
    </table>
  );
  return props.scroll ? <div class="table-scroll">{table}</div> : table;
}

/** A list's cell naming an item, linked to its page. */
export function LinkCell({ href, children }: { href: string; children: ComponentChildren }) {
  return (
    <td>
      <Link href={href}>{children}</Link>
    </td>
  );
}

/** A list's cell of an item's status; `children` follow it (a progress bar). */
export function StatusCell({ value, children }: { value: string; children?: ComponentChildren }) {
  return (
    <td>
      <Status value={value} />
      {children}
    </td>
  );
}

export function ProgressBar({ value, label }: { value: number; label?: string }) {
  const percent = Math.max(0, Math.min(100, Math.round(value * 100)));
  return (
    <div class="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={percent} aria-label={label}>
      <div class="progress-fill" style={{ width: `${percent}%` }} />
      <span class="progress-text">{percent}%</span>
    </div>
  );
}

// Statuses whose API value does not read well with its underscores replaced.
const STATUS_LABELS: Record<string, string> = { validating_files: "Validating files" };

export function Status({ value }: { value: string }) {
  return <span class={`status status-${value}`}>{STATUS_LABELS[value] ?? value.replace(/_/g, " ")}</span>;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function formatDate(unix: number | null | undefined): string {
  if (!unix) return "—";
  return new Date(unix * 1000).toLocaleString();
}

export function formatNumber(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
  return Math.abs(value) >= 1000 ? value.toLocaleString() : Number(value.toPrecision(digits)).toString();
}
