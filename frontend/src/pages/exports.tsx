import { useState } from "preact/hooks";
import { ApiError, type Export, type Model, type Page, get, post, saveDownload } from "../api";
import { modelLabel, useDatasets } from "../names";
import { Link } from "../router";
import { Empty, ErrorBox, Field, Loading, Status, asApiError, errorFor, formError, formatBytes, formatDate, useResource } from "../ui";

/** One export; its download links are signed afresh on each read of the export (the list has none). */
function ExportCard({ summary }: { summary: Export }) {
  const detail = useResource(
    () => (summary.status === "succeeded" ? get<Export>(`/v1/exports/${summary.id}`) : Promise.resolve(summary)),
    [summary.id, summary.status],
  );
  const e = detail.data ?? summary;
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState<ApiError | null>(null);
  const saveArchive = async () => {
    setSaving(true);
    setSaveError(null);
    try {
      await saveDownload(`/v1/exports/${e.id}/archive`, `${e.id}.tar`);
    } catch (caught) {
      setSaveError(asApiError(caught));
    } finally {
      setSaving(false);
    }
  };
  return (
    <div class="card">
      <p>
        <Status value={e.status} /> <strong>{e.format}</strong> of <code>{e.model ?? e.job_id}</code> · {formatDate(e.created_at)}
      </p>
      {e.error && <div class="error-box">{e.error.message}</div>}
      {detail.loading && summary.status === "succeeded" && <Loading label="Signing download links…" />}
      <ErrorBox error={detail.error} />
      {e.status === "succeeded" && e.format === "merged" && e.links.length > 0 && (
        <p>
          <button class="primary" onClick={() => void saveArchive()} disabled={saving} data-testid="export-archive">
            {saving ? "Preparing the archive…" : `Download all as one archive (.tar, ${formatBytes(e.links.reduce((n, l) => n + l.bytes, 0))})`}
          </button>{" "}
          <span class="muted">or the files one by one:</span>
        </p>
      )}
      <ErrorBox error={saveError} />
      {e.links.length > 0 && (
        <ul class="downloads">
          {e.links.map((link) => (
            <li key={link.url}>
              <a href={link.url} download={link.name.split("/").pop()} data-testid="export-download">
                {link.name}
              </a>{" "}
              <span class="muted">
                {formatBytes(link.bytes)} · link valid until {formatDate(link.expires_at)}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Exports() {
  const jobParam = new URLSearchParams(location.search).get("job");
  const models = useResource(() => get<Page<Model>>("/v1/models"), []);
  const list = useResource(() => get<Page<Export>>("/v1/exports?limit=50"), []);
  const tuned = models.data?.data.filter((m) => m.id.startsWith("ft:")) ?? [];
  const datasets = useDatasets();
  const [model, setModel] = useState("");
  const [format, setFormat] = useState<"adapter" | "merged">("adapter");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const chosen = model || tuned.find((m) => m.fine_tuning_job === jobParam)?.id || tuned[0]?.id || "";

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await post<Export>("/v1/exports", { model: chosen, format });
      await list.reload();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };

  if (models.loading) return <Loading />;
  return (
    <section>
      <div class="page-head">
        <h1>Exports</h1>
      </div>
      <ErrorBox error={models.error} />
      {tuned.length === 0 ? (
        <Empty title="Nothing to export yet">
          <p>Exports are the LoRA adapter (small, for vLLM's --enable-lora) or the merged 16-bit model.</p>
          <Link href="/runs/new">Launch a run</Link>
        </Empty>
      ) : (
        <form class="card" onSubmit={submit} noValidate>
          <div class="grid-2">
            <Field label="Tuned model" error={errorFor(error, "model")}>
              <select name="model" value={chosen} onChange={(e) => setModel(e.currentTarget.value)}>
                {tuned.map((m) => (
                  <option key={m.id} value={m.id} title={m.id}>
                    {modelLabel(m, datasets)}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Format" error={errorFor(error, "format")}>
              <select name="format" value={format} onChange={(e) => setFormat(e.currentTarget.value as "adapter" | "merged")}>
                <option value="adapter">LoRA adapter (.tar.gz)</option>
                <option value="merged">Merged 16-bit model (safetensors)</option>
              </select>
            </Field>
          </div>
          <ErrorBox error={formError(error, ["model", "format"])} />
          <button class="primary" type="submit" disabled={busy}>
            {busy ? "Exporting…" : "Export"}
          </button>
        </form>
      )}
      {list.loading && !list.data && <Loading />}
      <ErrorBox error={list.error} />
      {list.data && list.data.data.length === 0 && tuned.length > 0 && <Empty title="No exports yet" />}
      {list.data && list.data.data.length > 0 && (
        <div class="exports" data-testid="exports">
          {list.data.data.map((e) => (
            <ExportCard key={e.id} summary={e} />
          ))}
        </div>
      )}
    </section>
  );
}
