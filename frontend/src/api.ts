// The gateway's REST API, called with the Firebase ID token. Every error is an `ApiError` carrying the
// envelope's fields, so a form can show it next to the field `param` names.
import { idToken } from "./auth";

export interface Problem {
  param: string | null;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null,
    readonly code: string | null,
    // Every problem of a rejected request (`error.problems`, one per field), not only the first.
    readonly problems: Problem[] = param ? [{ param, message }] : [],
  ) {
    super(message);
  }
  get notFound(): boolean {
    return this.status === 404;
  }
}

export async function authHeaders(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const token = await idToken();
  if (!token) throw new ApiError(401, "You are signed out", "authentication_error", null, "signed_out");
  return { Authorization: `Bearer ${token}`, ...extra };
}

export async function toApiError(response: Response): Promise<ApiError> {
  let body: { error?: { message?: string; type?: string; param?: string | null; code?: string | null; problems?: Problem[] } } = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: keep the status line
  }
  const error = body.error ?? {};
  return new ApiError(
    response.status,
    error.message ?? `${response.status} ${response.statusText}`,
    error.type ?? "api_error",
    error.param ?? null,
    error.code ?? null,
    error.problems ?? (error.param ? [{ param: error.param, message: error.message ?? "" }] : []),
  );
}

export async function request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const init: RequestInit = { method, headers: await authHeaders(headers) };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The server cannot be reached; check your connection", "network_error", null, null);
  }
  if (!response.ok) throw await toApiError(response);
  return (await response.json()) as T;
}

export const get = <T>(path: string) => request<T>("GET", path);
export const post = <T>(path: string, body?: unknown, headers?: Record<string, string>) =>
  request<T>("POST", path, body ?? {}, headers);
export const put = <T>(path: string, body?: unknown) => request<T>("PUT", path, body);
export const del = <T>(path: string) => request<T>("DELETE", path);

/** Saves an authenticated download (`Content-Disposition: attachment`) as a file, the page staying
 * where it is: the bearer token cannot ride on a plain link, so the body is fetched and handed to
 * the browser's download (Chromium keeps a large body on disk, not in memory). */
export async function saveDownload(path: string, fallbackName: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(path, { headers: await authHeaders() });
  } catch {
    throw new ApiError(0, "The server cannot be reached; check your connection", "network_error", null, null);
  }
  if (!response.ok) throw await toApiError(response);
  const disposition = response.headers.get("content-disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return entries.length ? "?" + new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString() : "";
}

// -- shapes (runtune/schemas) ---------------------------------------------------------------------

export interface Page<T> {
  object: "list";
  data: T[];
  has_more: boolean;
  first_id?: string | null;
  last_id?: string | null;
}

export interface ApiErrorBody {
  code: string;
  message: string;
  param?: string | null;
}

export interface Dataset {
  id: string;
  object: "dataset";
  created_at: number;
  name: string;
  status: "uploading" | "processing" | "ready" | "failed";
  filename: string | null;
  bytes: number;
  source: Record<string, string>;
  task_kind: "classification" | "generation" | "preference" | null;
  modality: "text" | "vision" | null;
  splits: Record<string, number>;
  labels: string[];
  label_counts: Record<string, number>;
  warnings: string[];
  progress: { phase: string; done: number; total: number | null } | null;
  error: ApiErrorBody | null;
}

export interface Distribution {
  count: number;
  min: number;
  p10: number;
  p50: number;
  p90: number;
  max: number;
  mean: number;
}

export interface DatasetStats {
  object: "dataset.stats";
  splits: Record<string, number>;
  labels: string[];
  label_counts: Record<string, number>;
  warnings: string[];
  [key: string]: unknown;
}

export interface SamplePart {
  type: "text" | "image";
  text?: string;
  image_index?: number;
}

export interface Sample {
  id: string;
  index: number;
  split: string;
  messages: { role: string; content: SamplePart[] }[];
  label: string | null;
  images: { width: number; height: number; path: string | null; thumbnail: string }[];
}

export interface Upload {
  id: string;
  object: "upload";
  filename: string;
  bytes: number;
  status: "pending" | "completed";
  upload_url: string | null;
}

export type JobStatus = "validating_files" | "queued" | "running" | "paused" | "succeeded" | "failed" | "cancelled";

export interface Job {
  id: string;
  object: "fine_tuning.job";
  created_at: number;
  model: string;
  status: JobStatus;
  training_file: string;
  validation_file: string | null;
  fine_tuned_model: string | null;
  finished_at: number | null;
  estimated_finish: number | null;
  hyperparameters: Record<string, number | string>;
  /** The hyperparameters asked for as `auto`, each with why it became its number. */
  auto_hyperparameters?: Record<string, string>;
  suffix: string | null;
  metadata: Record<string, string> | null;
  error: ApiErrorBody | null;
  phase: string | null;
  steps_completed: number;
  total_steps: number | null;
  seconds_remaining: number | null;
  options: Record<string, unknown>;
  runtune: Record<string, unknown>;
  /** The request's `method` as given (`auto` kept), without `runtune` (that is `options`). */
  method?: { type?: string } & Record<string, unknown>;
  /** When the tuned model was deleted (`DELETE /v1/models/{id}`); the job stays. */
  model_deleted_at?: number | null;
  trained_tokens?: number | null;
  gpu?: string | null;
  seed?: number;
  /** Where the job's model comes from (`model` may be one of the user's tuned models: continued fine-tuning). */
  lineage?: Lineage | null;
}

/** `DELETE /v1/fine_tuning/jobs/{id}`: what went with the job. */
export interface JobDeleted {
  id: string;
  deleted: true;
  fine_tuned_model: string | null;
  checkpoints: number;
  exports: string[];
}

export const TERMINAL: JobStatus[] = ["succeeded", "failed", "cancelled"];
// A job in one of these may be paused (POST .../pause); a paused one resumed (POST .../resume).
export const PAUSABLE: JobStatus[] = ["validating_files", "queued", "running"];

export interface JobEvent {
  id: string;
  created_at: number;
  level: "info" | "warn" | "error";
  message: string;
  type: "message" | "metrics";
  data: Record<string, number> | null;
}

export interface Checkpoint {
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  step_number: number;
  metrics: Record<string, number>;
  best?: boolean;
}

/** Where a tuned model comes from: the base at the root of the chain, the model it was trained from,
 * and every model from the root to that parent. */
export interface Lineage {
  root: string;
  parent: string;
  chain: string[];
}

export interface Model {
  id: string;
  object: "model";
  owned_by: string;
  family?: string;
  modality?: "text" | "vision";
  parameters?: number;
  instruction_tuned?: boolean;
  methods?: string[];
  memory_gib?: Record<string, number>;
  /** What a tuned model was trained from: a base model, or the tuned model it continued. */
  parent?: string;
  lineage?: Lineage;
  fine_tuning_job?: string;
  /** A tuned model's run name (its `suffix`) and dataset, for pickers. */
  name?: string | null;
  training_file?: string;
  step_number?: number;
  created?: number;
}

export interface Estimate {
  model: string;
  hyperparameters: Record<string, number>;
  tokens: number;
  steps: number;
  memory_gib: number;
  gpu: string | null;
  gpu_label: string | null;
  seconds: number | null;
  usd: number | null;
  reason: string | null;
  // The range the duration and cost fall in, and what it is based on ("calibrated from N finished
  // runs" or "from published throughput"); where the time was reckoned ("cpu": this machine).
  seconds_low?: number | null;
  seconds_high?: number | null;
  usd_low?: number | null;
  usd_high?: number | null;
  basis?: string | null;
  calibrated_runs?: number;
  machine?: string | null;
  machine_label?: string | null;
  warnings?: string[];
  // The model's weights come from the Hugging Face Hub and this user has no token stored.
  needs_hub_token?: boolean;
}

// `GET /v1/fine_tuning/gpus`: the GPUs this deployment trains on, and where its trainers run.
export interface Gpu {
  id: string;
  label: string;
  memory_gib: number;
  usd_per_hour: number;
}

export interface GpuList {
  data: Gpu[];
  where: "cloud" | "local-gpu" | "local-cpu";
}

export interface Evaluation {
  id: string;
  object: "evaluation";
  created_at: number;
  status: "queued" | "running" | "succeeded" | "failed";
  dataset_id: string;
  split: string;
  models: string[];
  method: "label_scoring" | "generation";
  metrics: Record<string, Record<string, unknown>>;
  labels: string[];
  max_samples: number | null;
  samples_done: number;
  scoring_method?: string | null;
  samples_total: number | null;
  error: ApiErrorBody | null;
  finished_at: number | null;
}

export interface ExportLink {
  name: string;
  bytes: number;
  url: string;
  expires_at: number;
}

export interface Export {
  id: string;
  object: "export";
  created_at: number;
  job_id: string;
  format: ExportFormat;
  status: "queued" | "running" | "succeeded" | "failed";
  model: string | null;
  links: ExportLink[];
  error: ApiErrorBody | null;
  finished_at: number | null;
  quantization: Quantization | null;
  phase: string | null;
}

export type ExportFormat = "adapter" | "merged" | "gguf" | "ollama";
export type Quantization = "f16" | "q8_0" | "q4_k_m";

export interface VibeAnswer {
  prompt: string;
  image: boolean;
  base: string;
  tuned: string;
}

export interface VibeCheck {
  id: string;
  object: "vibe_check";
  created_at: number;
  model: string;
  base_model: string;
  results: VibeAnswer[];
}

export interface ApiKey {
  id: string;
  object: "api_key";
  name: string;
  prefix: string;
  scopes: ("full" | "read_only")[];
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
}

export interface CreatedApiKey extends ApiKey {
  key: string;
}

export interface WebhookEndpoint {
  id: string;
  object: "webhook_endpoint";
  url: string;
  events: string[];
  description: string | null;
  status: "enabled" | "disabled";
  created_at: number;
  disabled_reason: string | null;
}

export interface CreatedWebhookEndpoint extends WebhookEndpoint {
  secret: string;
}

export interface WebhookDelivery {
  id: string;
  event_id: string;
  event_type: string;
  attempt: number;
  attempted_at: number;
  status_code: number | null;
  latency_ms: number | null;
  error: string | null;
  succeeded: boolean;
  next_retry_at: number | null;
}
