import { useEffect, useState } from "preact/hooks";
import { type Export, type ExportFormat, type Model, type Page, type Quantization, get, post, saveDownload } from "../api";
import { TunedModelField, useDatasets } from "../names";
import { Link } from "../router";
import { Empty, ErrorBox, Field, Loading, Status, errorFor, formError, formatBytes, formatDate, onSubmit, useAction, useResource } from "../ui";

/** One export; its download links are signed afresh on each read of the export (the list has none). */
function ExportCard({ summary, onDone }: { summary: Export; onDone: () => void }) {
  const converting = summary.status === "queued" || summary.status === "running";
  // A GGUF or Ollama export is converted by an execution of its own: follow it until it ends.
  useEffect(() => {
    if (!converting) return;
    const timer = setInterval(onDone, 3000);
    return () => clearInterval(timer);
  }, [converting, summary.id]);
  const detail = useResource(
    () => (summary.status === "succeeded" ? get<Export>(`/v1/exports/${summary.id}`) : Promise.resolve(summary)),
    [summary.id, summary.status],
  );
  const e = detail.data ?? summary;
  const save = useAction();
  return (
    <div class="card">
      <p>
        <Status value={e.status} /> <strong>{e.format}</strong>
        {e.quantization && <> ({e.quantization})</>} of <code>{e.model ?? e.job_id}</code> · {formatDate(e.created_at)}
      </p>
      {converting && (
        <p class="muted" data-testid="export-phase">
          Converting with llama.cpp: {e.phase ?? "waiting to start"}…
        </p>
      )}
      {e.error && <div class="error-box">{e.error.message}</div>}
      {detail.loading && summary.status === "succeeded" && <Loading label="Signing download links…" />}
      <ErrorBox error={detail.error} />
      {e.status === "succeeded" && e.links.length > 1 && (
        <p>
          <button class="primary" onClick={() => void save.run(() => saveDownload(`/v1/exports/${e.id}/archive`, `${e.id}.tar`))} disabled={save.busy} data-testid="export-archive">
            {save.busy ? "Preparing the archive…" : `Download all as one archive (.tar, ${formatBytes(e.links.reduce((n, l) => n + l.bytes, 0))})`}
          </button>{" "}
          <span class="muted">or the files one by one:</span>
        </p>
      )}
      <ErrorBox error={save.error} />
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
  const [format, setFormat] = useState<ExportFormat>("adapter");
  const [quantization, setQuantization] = useState<Quantization>("q4_k_m");
  const converted = format === "gguf" || format === "ollama";
  const action = useAction();
  const { busy, error } = action;
  const chosen = model || tuned.find((m) => m.fine_tuning_job === jobParam)?.id || tuned[0]?.id || "";

  const submit = onSubmit(action, async () => {
    await post<Export>("/v1/exports", converted ? { model: chosen, format, quantization } : { model: chosen, format });
    await list.reload();
  });

  if (models.loading) return <Loading />;
  return (
    <section>
      <div class="page-head">
        <h1>Exports</h1>
      </div>
      <ErrorBox error={models.error} />
      {tuned.length === 0 ? (
        <Empty title="Nothing to export yet">
          <p>
            Exports are the LoRA adapter (small, for vLLM's --enable-lora), the merged 16-bit model, or GGUF files for
            llama.cpp, LM Studio and Ollama.
          </p>
          <Link href="/runs/new">Launch a run</Link>
        </Empty>
      ) : (
        <form class="card" onSubmit={submit} noValidate>
          <div class="grid-2">
            <TunedModelField models={tuned} value={chosen} onChange={setModel} datasets={datasets} error={errorFor(error, "model")} />
            <Field label="Format" error={errorFor(error, "format")}>
              <select name="format" value={format} onChange={(e) => setFormat(e.currentTarget.value as ExportFormat)}>
                <option value="adapter">LoRA adapter (.tar.gz)</option>
                <option value="merged">Merged 16-bit model (safetensors)</option>
                <option value="gguf">GGUF (llama.cpp, LM Studio)</option>
                <option value="ollama">Ollama (GGUF + Modelfile)</option>
              </select>
            </Field>
            {converted && (
              <Field label="Weights" error={errorFor(error, "quantization")}>
                <select
                  name="quantization"
                  value={quantization}
                  onChange={(e) => setQuantization(e.currentTarget.value as Quantization)}
                >
                  <option value="q4_k_m">4-bit (q4_k_m): smallest, the usual choice</option>
                  <option value="q8_0">8-bit (q8_0): near the original</option>
                  <option value="f16">16-bit (f16): the original precision</option>
                </select>
              </Field>
            )}
          </div>
          <ErrorBox error={formError(error, ["model", "format", "quantization"])} />
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
            <ExportCard key={e.id} summary={e} onDone={() => void list.reload()} />
          ))}
        </div>
      )}
    </section>
  );
}
