// The gateway's REST API, called with the Firebase ID token. Every error is an `ApiError` carrying the
// envelope's fields, so a form can show it next to the field `param` names.
import { idToken } from "./auth";
import type { components } from "./client/schema";

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

// -- shapes ------------------------------------------------------------------------------------
// Generated from the services' OpenAPI (`make openapi`: runtune/schemas -> frontend/openapi.json ->
// src/client/schema.ts), never written by hand here: these are the UI's names for them.

type Schemas = components["schemas"];

/** A list page (`runtune.schemas.common.ListPage`). OpenAPI has no generics: each `ListPage[T]` is a
 * schema of its own (`ListPage_Job_`, ...), all alike but for `data`. */
export type Page<T> = Omit<Schemas["ListPage_Job_"], "data"> & { data: T[] };

export type ApiErrorBody = Schemas["ApiError"];
export type Dataset = Schemas["Dataset"];
export type Distribution = Schemas["Distribution"];
export type DatasetStats = Schemas["DatasetStats"];
export type Sample = Schemas["Sample"];
export type Upload = Schemas["Upload"];
export type JobStatus = Schemas["JobStatus"];
export type Job = Schemas["Job"];
/** `DELETE /v1/fine_tuning/jobs/{id}`: what went with the job. */
export type JobDeleted = Schemas["JobDeleted"];
export type JobEvent = Schemas["JobEvent"];
/** A step of the training curve: a metrics event's `data`, a point of `GET .../metrics` (`step` and
 * whatever the trainer measured, each a number or null). */
export type MetricsPoint = Schemas["MetricsPoint"];
export type MetricsPage = Schemas["MetricsPage"];
/** `job.estimate`: the job's estimate before launch, its range, basis, place and warnings. */
export type EstimateSummary = Schemas["EstimateSummary"];
export type Checkpoint = Schemas["Checkpoint"];
export type Lineage = Schemas["Lineage"];
export type Model = Schemas["ModelObject"];
export type Estimate = Schemas["RunEstimate"];
/** One priced shape of an estimate (`runtune.estimate.Offer`): Cloud Run's GPU or a Vertex AI machine. */
export type Offer = Schemas["Offer"];
/** `GET /v1/fine_tuning/gpus`: the GPUs this deployment trains on, and where its trainers run. */
export type Gpu = Schemas["GpuOffer"];
export type GpuList = Schemas["GpuList"];
export type Evaluation = Schemas["Evaluation"];
/** One model's report in an evaluation: label scoring (or labels from free generation), or text metrics. */
export type ModelReport = Schemas["ClassificationReport"] | Schemas["TextReport"];
export type ClassScores = Schemas["ClassScores"];
export type Confusion = Schemas["ConfusionMatrix"];
/** An evaluation's example: the expected answer and each model's (`GET /v1/evaluations/{id}/predictions`). */
export type Prediction = Schemas["Prediction"];
/** A ready dataset's Parquet shard with its signed URL (`GET /v1/datasets/{id}/download`). */
export type DatasetShard = Schemas["DatasetShard"];
/** The event a webhook receiver gets (`POST /v1/webhooks/{id}/test` answers it). */
export type WebhookEvent = Schemas["WebhookEvent"];
export type ExportLink = Schemas["ExportLink"];
export type Export = Schemas["Export"];
export type ExportFormat = Schemas["ExportFormat"];
export type Quantization = Schemas["Quantization"];
export type VibeAnswer = Schemas["VibeAnswer"];
export type VibeCheck = Schemas["VibeCheck"];
export type ApiKey = Schemas["ApiKey"];
export type CreatedApiKey = Schemas["CreatedApiKey"];
export type WebhookEndpoint = Schemas["WebhookEndpoint"];
export type CreatedWebhookEndpoint = Schemas["CreatedWebhookEndpoint"];
export type WebhookDelivery = Schemas["WebhookDelivery"];
/** A stored token, by name only: its value never comes back. */
export type Secret = Schemas["Secret"];
export type SecretList = Schemas["WholeList_Secret_"];
export type Me = Schemas["Me"];
/** What a `DELETE` answers: `{id, object, deleted}`. */
export type Deleted = Schemas["Deleted"];

export const TERMINAL: JobStatus[] = ["succeeded", "failed", "cancelled"];
// A job in one of these may be paused (POST .../pause); a paused one resumed (POST .../resume).
export const PAUSABLE: JobStatus[] = ["validating_files", "queued", "running"];
