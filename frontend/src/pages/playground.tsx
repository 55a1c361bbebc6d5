import { useState } from "preact/hooks";
import { ApiError, type Model, type Page, type VibeCheck, get, post } from "../api";
import { Link } from "../router";
import { Empty, ErrorBox, Field, Loading, asApiError, errorFor, formError, useResource } from "../ui";

const MAX_IMAGE_BYTES = 8 * 1024 * 1024;

function readDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export function Playground() {
  const models = useResource(() => get<Page<Model>>("/v1/models"), []);
  const history = useResource(() => get<Page<VibeCheck>>("/v1/vibe_checks?limit=10"), []);
  const [model, setModel] = useState(new URLSearchParams(location.search).get("model") ?? "");
  const listed = models.data?.data.filter((m) => m.id.startsWith("ft:")).map((m) => m.id) ?? [];
  // A checkpoint (`ft:...:ckpt-step-N`, from a run's page) is not in the models list: offer it too.
  const tuned = model.startsWith("ft:") && !listed.includes(model) ? [model, ...listed] : listed;
  const [prompt, setPrompt] = useState("What shape is in this picture?");
  const [image, setImage] = useState<string | null>(null);
  const [imageName, setImageName] = useState("");
  const [maxTokens, setMaxTokens] = useState(64);
  const [result, setResult] = useState<VibeCheck | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const chosen = model || tuned[0] || "";

  const pick = async (file: File | undefined) => {
    setError(null);
    if (!file) return setImage(null);
    if (file.size > MAX_IMAGE_BYTES) {
      setError(new ApiError(400, "Images up to 8 MiB, please", "invalid_request_error", "prompts[0].image", null));
      return;
    }
    setImageName(file.name);
    setImage(await readDataUrl(file));
  };

  const run = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const check = await post<VibeCheck>("/v1/vibe_checks", { model: chosen, prompts: [{ prompt, image: image ?? undefined }], max_tokens: maxTokens });
      setResult(check);
      void history.reload();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };

  if (models.loading) return <Loading />;
  if (models.error) return <ErrorBox error={models.error} />;
  return (
    <section>
      <div class="page-head">
        <h1>Playground</h1>
      </div>
      {tuned.length === 0 ? (
        <Empty title="No tuned model yet">
          <p>A vibe check asks the base model and your tuned one the same question, side by side. Finish a run first.</p>
          <Link class="button primary" href="/runs/new">
            New run
          </Link>
        </Empty>
      ) : (
        <>
          <form class="card" onSubmit={run} noValidate>
            <Field label="Tuned model" error={errorFor(error, "model", "base_model")}>
              <select name="model" value={chosen} onChange={(e) => setModel(e.currentTarget.value)}>
                {tuned.map((id) => (
                  <option key={id} value={id}>
                    {id}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Prompt" error={errorFor(error, "prompt", "prompts")}>
              <textarea name="prompt" rows={3} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
            </Field>
            <div class="grid-2">
              <Field label="Image (optional)" error={errorFor(error, "image")}>
                <input type="file" name="image" accept="image/*" onChange={(e) => void pick(e.currentTarget.files?.[0])} />
              </Field>
              <Field label="Max tokens" error={errorFor(error, "max_tokens")}>
                <input type="number" min={1} max={2048} value={maxTokens} onInput={(e) => setMaxTokens(Number(e.currentTarget.value))} />
              </Field>
            </div>
            {image && <img class="preview-image" src={image} alt={imageName} />}
            <ErrorBox error={formError(error, ["model", "base_model", "prompts", "image", "max_tokens"])} />
            <button class="primary" type="submit" disabled={busy || !prompt.trim()}>
              {busy ? "Asking both models…" : "Run vibe check"}
            </button>
          </form>
          {busy && <Loading label="The models are answering…" />}
          {result && (
            <div class="vibe" data-testid="vibe-result">
              {result.results.map((answer, i) => (
                <div class="side-by-side" key={i}>
                  <div class="card">
                    <h3>Base · {result.base_model}</h3>
                    <p data-testid="vibe-base">{answer.base || <span class="muted">(empty answer)</span>}</p>
                  </div>
                  <div class="card tuned">
                    <h3>Tuned · {result.model}</h3>
                    <p data-testid="vibe-tuned">{answer.tuned || <span class="muted">(empty answer)</span>}</p>
                  </div>
                </div>
              ))}
            </div>
          )}
          {history.data && history.data.data.length > 0 && (
            <div class="card">
              <h3>Earlier vibe checks</h3>
              <ul class="history">
                {history.data.data.map((check) => (
                  <li key={check.id}>
                    <button class="link" onClick={() => setResult(check)}>
                      {check.results[0]?.prompt.slice(0, 80)}
                    </button>{" "}
                    <span class="muted">{check.model}</span>
                  </li>
                ))}
              </ul>
            </div>
          )}
        </>
      )}
    </section>
  );
}
