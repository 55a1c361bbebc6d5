import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, type Dataset, type Problem, type Upload, post } from "../api";
import { navigate } from "../router";
import { ARCHIVE_SUFFIXES, type BadLine, type Mapping, type Preview, type Row, TABLE_SUFFIXES, guessMapping, kindOf, previewRows, render } from "../tables";
import { UploadFailed, resumableUpload } from "../upload";
import { ErrorBox, Field, ProgressBar, asApiError, errorFor, formError, formatBytes, onSubmit, useAction } from "../ui";

type TaskKind = "" | "classification" | "generation" | "preference";

/** A JSONL the server reads without a mapping: OpenAI's chat format, or its preference format. */
const needsNoMapping = (columns: string[]) => columns.includes("messages") || columns.includes("preferred_output");

function mappingBody(mapping: Mapping): Record<string, string> | undefined {
  const body = Object.fromEntries(Object.entries(mapping).filter(([, v]) => v.trim() !== ""));
  return Object.keys(body).length ? body : undefined;
}

const NAME_MAX = 200; // CreateDatasetRequest.name

/** What the form can tell before a byte is uploaded, every problem at once, each at its field. */
function problemsOf(file: File | null, name: string, preview: Preview | null, mapping: Mapping | null): Problem[] {
  const problems: Problem[] = [];
  if (!file) problems.push({ param: "file", message: "Choose a file to upload" });
  else if (kindOf(file.name) === "other")
    problems.push({ param: "file", message: `Not a file type Runtune reads: use ${[...ARCHIVE_SUFFIXES, ...TABLE_SUFFIXES].join(", ")}` });
  if (name.trim().length > NAME_MAX) problems.push({ param: "name", message: `At most ${NAME_MAX} characters (this one has ${name.trim().length})` });
  if (preview && mapping) {
    const pairs = Boolean(mapping.chosen || mapping.rejected);
    if (pairs && !(mapping.chosen && mapping.rejected))
      problems.push({ param: mapping.chosen ? "mapping.rejected" : "mapping.chosen", message: "A preference set needs both a chosen and a rejected column" });
    if (!pairs && !mapping.answer && !mapping.label) problems.push({ param: "mapping.answer", message: "Choose an answer column, or a label column for classification" });
    const unknown = render(mapping.user, preview.rows[0] ?? {}, []).missing.filter((c) => !preview.columns.includes(c));
    if (unknown.length) problems.push({ param: "mapping.user", message: `No column named ${unknown.join(", ")}; the columns are ${preview.columns.join(", ")}` });
  }
  return problems;
}

function BadLines({ bad }: { bad: BadLine[] }) {
  if (bad.length === 0) return null;
  return (
    <div class="bad-lines" data-testid="bad-lines">
      <h4>Lines that cannot be read</h4>
      <ul>
        {bad.map((b) => (
          <li key={b.line} data-testid="bad-line">
            <span class="field-error">
              line {b.line}: {b.problem}
            </span>
            <code>{b.text.length > 120 ? b.text.slice(0, 117) + "…" : b.text}</code>
          </li>
        ))}
      </ul>
      <p class="muted">Processing stops at the first of them unless "Skip bad rows" is ticked.</p>
    </div>
  );
}

function MappingEditor(props: { columns: string[]; rows: Row[]; mapping: Mapping; onChange: (m: Mapping) => void; error: ApiError | null }) {
  const { columns, rows, mapping, onChange, error } = props;
  const set = (key: keyof Mapping) => (event: Event) => onChange({ ...mapping, [key]: (event.currentTarget as HTMLInputElement).value });
  const labels = mapping.label ? [...new Set(rows.map((r) => String(r[mapping.label] ?? "")))].sort() : [];
  const columnSelect = (key: keyof Mapping, label: string) => (
    <Field label={label} error={errorFor(error, `mapping.${key}`)}>
      <select name={`mapping-${key}`} value={mapping[key]} onChange={set(key)}>
        <option value="">(none)</option>
        {columns.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
    </Field>
  );
  return (
    <div class="mapping">
      <h3>Column mapping</h3>
      <div class="grid-3">
        {columnSelect("image", "Image column")}
        {columnSelect("label", "Label column (classification)")}
        {columnSelect("answer", "Answer column (generation)")}
        {columnSelect("chosen", "Chosen answer column (preference)")}
        {columnSelect("rejected", "Rejected answer column (preference)")}
        {columnSelect("split", "Split column")}
      </div>
      <Field label="System prompt" error={errorFor(error, "mapping.system")}>
        <input name="mapping-system" value={mapping.system} onInput={set("system")} placeholder="optional" />
      </Field>
      <Field label="User turn" error={errorFor(error, "mapping.user")} hint="{column} is replaced by the column's value, {labels} by the label set">
        <input name="mapping-user" value={mapping.user} onInput={set("user")} placeholder="What is in this picture? {labels}" />
      </Field>
      <h4>Preview</h4>
      <div class="chat-preview" data-testid="mapping-preview">
        {rows.slice(0, 3).map((row, i) => {
          const user = render(mapping.user, row, labels);
          const answer = mapping.label ? row[mapping.label] : mapping.answer ? row[mapping.answer] : mapping.chosen ? row[mapping.chosen] : null;
          return (
            <div class="chat" key={i}>
              {mapping.system && <div class="turn system">{mapping.system}</div>}
              <div class="turn user">
                {mapping.image && <span class="image-chip">🖼 {String(row[mapping.image] ?? "").slice(0, 40)}</span>}
                {user.text || <span class="muted">(no text)</span>}
                {user.missing.length > 0 && <span class="field-error">unknown column: {user.missing.join(", ")}</span>}
              </div>
              <div class="turn assistant">{answer !== null && answer !== undefined ? String(answer) : <span class="field-error">no answer or label column</span>}</div>
              {mapping.rejected && <div class="turn assistant rejected">✗ {String(row[mapping.rejected] ?? "")}</div>}
            </div>
          );
        })}
      </div>
    </div>
  );
}

function UploadForm() {
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [taskKind, setTaskKind] = useState<TaskKind>("");
  const [preview, setPreview] = useState<Preview | null>(null);
  const [skipBadRows, setSkipBadRows] = useState(false);
  const [mapping, setMapping] = useState<Mapping | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [stage, setStage] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const busy = progress !== null && error === null;

  useEffect(() => {
    setPreview(null);
    setMapping(null);
    if (!file || kindOf(file.name) !== "table") return;
    void previewRows(file).then((result) => {
      setPreview(result);
      if (result && !needsNoMapping(result.columns)) setMapping(guessMapping(result.columns));
    });
  }, [file]);

  const submit = async (event: Event) => {
    event.preventDefault();
    const problems = problemsOf(file, name, preview, mapping);
    if (problems.length || !file) {
      setError(new ApiError(400, problems[0].message, "invalid_request_error", problems[0].param, null, problems));
      return;
    }
    setError(null);
    try {
      setStage("Uploading");
      setProgress(0);
      const upload = await post<Upload>("/v1/uploads", { filename: file.name, bytes: file.size, mime_type: file.type || "application/octet-stream" });
      await resumableUpload(upload.upload_url!, file, setProgress);
      setStage("Checking the upload");
      await post<Upload>(`/v1/uploads/${upload.id}/complete`);
      setStage("Starting processing");
      const dataset = await post<Dataset>("/v1/datasets", {
        upload_id: upload.id,
        name: name.trim() || undefined,
        task_kind: taskKind || undefined,
        mapping: mapping ? mappingBody(mapping) : undefined,
        skip_bad_rows: skipBadRows || undefined,
      });
      navigate(`/datasets/${dataset.id}`);
    } catch (caught) {
      setError(caught instanceof UploadFailed ? new ApiError(0, caught.message, "upload_error", "file", null) : asApiError(caught));
    }
  };

  const kind = file ? kindOf(file.name) : null;
  const fields = ["file", "bytes", "filename", "upload_id", "name", "task_kind", "mapping", "skip_bad_rows"];
  return (
    <form class="card" onSubmit={submit} noValidate>
      <Field label="File" error={errorFor(error, "file", "bytes", "filename", "upload_id")} hint="An image-folder archive (label/*.jpg, .zip or .tar.gz), a chat JSONL, or a CSV/TSV/JSON/JSONL/Parquet table">
        <input type="file" name="file" accept=".zip,.tar,.gz,.tgz,.jsonl,.json,.csv,.tsv,.parquet" disabled={busy} onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      </Field>
      {file && (
        <p class="muted">
          {file.name}, {formatBytes(file.size)}
          {kind === "archive" && " — an image-folder archive: each folder name is a class label."}
        </p>
      )}
      <div class="grid-2">
        <Field label="Name" error={errorFor(error, "name")}>
          <input name="name" value={name} placeholder={file?.name ?? "my dataset"} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <Field label="Task" error={errorFor(error, "task_kind")}>
          <select name="task_kind" value={taskKind} onChange={(e) => setTaskKind(e.currentTarget.value as TaskKind)}>
            <option value="">Detect (a label column or folders mean classification)</option>
            <option value="classification">Classification</option>
            <option value="generation">Generation (captions, VQA, chat)</option>
            <option value="preference">Preference pairs (for DPO)</option>
          </select>
        </Field>
      </div>
      {preview && preview.columns.includes("messages") && <p class="muted">OpenAI chat format: no mapping needed.</p>}
      {preview && preview.columns.includes("preferred_output") && <p class="muted">OpenAI preference format (for DPO runs): no mapping needed.</p>}
      {preview && <BadLines bad={preview.bad} />}
      {preview && preview.bad.length > 0 && (
        <label class="check">
          <input type="checkbox" name="skip_bad_rows" checked={skipBadRows} onChange={(e) => setSkipBadRows(e.currentTarget.checked)} /> Skip bad rows (they are counted in the
          dataset's warnings)
        </label>
      )}
      {preview && mapping && <MappingEditor columns={preview.columns} rows={preview.rows} mapping={mapping} onChange={setMapping} error={error} />}
      {progress !== null && (
        <div class="upload-status" data-testid="upload-status">
          <span>{error ? "Stopped" : stage}…</span>
          <ProgressBar value={progress} label="Upload progress" />
        </div>
      )}
      <ErrorBox error={formError(error, fields)} />
      <button class="primary" type="submit" disabled={busy}>
        {busy ? "Uploading…" : "Upload and process"}
      </button>
    </form>
  );
}

function HubForm() {
  const [hubId, setHubId] = useState("");
  const [config, setConfig] = useState("");
  const [split, setSplit] = useState("");
  const [maxRows, setMaxRows] = useState("");
  const [taskKind, setTaskKind] = useState<TaskKind>("");
  const action = useAction();
  const { busy, error } = action;
  const submit = onSubmit(action, async () => {
    const hub = { id: hubId.trim(), config: config || undefined, split: split || undefined, max_rows: maxRows ? Number(maxRows) : undefined };
    const dataset = await post<Dataset>("/v1/datasets", { hub, task_kind: taskKind || undefined });
    navigate(`/datasets/${dataset.id}`);
  });
  return (
    <form class="card" onSubmit={submit} noValidate>
      <p class="muted">Gated sets use your Hugging Face token from Settings; it stays on the server.</p>
      <Field label="Dataset id" error={errorFor(error, "hub.id", "hub")}>
        <input name="hub-id" value={hubId} placeholder="owner/name" onInput={(e) => setHubId(e.currentTarget.value)} />
      </Field>
      <div class="grid-3">
        <Field label="Config" error={errorFor(error, "hub.config")}>
          <input value={config} onInput={(e) => setConfig(e.currentTarget.value)} placeholder="default" />
        </Field>
        <Field label="Split" error={errorFor(error, "hub.split")}>
          <input value={split} onInput={(e) => setSplit(e.currentTarget.value)} placeholder="all" />
        </Field>
        <Field label="Max rows" error={errorFor(error, "hub.max_rows")}>
          <input type="number" min={1} value={maxRows} onInput={(e) => setMaxRows(e.currentTarget.value)} />
        </Field>
      </div>
      <Field label="Task" error={errorFor(error, "task_kind")}>
        <select value={taskKind} onChange={(e) => setTaskKind(e.currentTarget.value as TaskKind)}>
          <option value="">Detect</option>
          <option value="classification">Classification</option>
          <option value="generation">Generation</option>
        </select>
      </Field>
      <ErrorBox error={formError(error, ["hub", "task_kind"])} />
      <button class="primary" type="submit" disabled={busy || !hubId.trim()}>
        {busy ? "Starting…" : "Import"}
      </button>
    </form>
  );
}

export function NewDataset() {
  const [tab, setTab] = useState<"upload" | "hub">("upload");
  const title = useMemo(() => (tab === "upload" ? "Upload a file" : "Import from the Hugging Face Hub"), [tab]);
  return (
    <section>
      <div class="page-head">
        <h1>New dataset</h1>
      </div>
      <div class="tabs" role="tablist">
        <button role="tab" aria-selected={tab === "upload"} onClick={() => setTab("upload")}>
          Upload
        </button>
        <button role="tab" aria-selected={tab === "hub"} onClick={() => setTab("hub")}>
          Hugging Face Hub
        </button>
      </div>
      <h2 class="sr-only">{title}</h2>
      {tab === "upload" ? <UploadForm /> : <HubForm />}
    </section>
  );
}
