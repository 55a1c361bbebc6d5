import { useState } from "preact/hooks";
import { ApiError, type Model, type Page, type VibeCheck, get, post } from "../api";
import { IdChip, TunedModelField, lineageText, modelLabel, useDatasets } from "../names";
import { Link } from "../router";
import { Empty, ErrorBox, Field, Loading, errorFor, formError, onSubmit, useAction, useResource } from "../ui";

const MAX_IMAGE_BYTES = 8 * 1024 * 1024;

function readDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as string);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** An answer as the model gave it (line breaks kept); one of only spaces or line breaks says so. */
function Answer({ text, testId }: { text: string; testId: string }) {
  return (
    <p class="answer-text" data-testid={testId}>
      {text.trim() ? text : <span class="muted">(empty answer)</span>}
    </p>
  );
}

export function Playground() {
  const models = useResource(() => get<Page<Model>>("/v1/models"), []);
  const history = useResource(() => get<Page<VibeCheck>>("/v1/vibe_checks?limit=10"), []);
  const [model, setModel] = useState(new URLSearchParams(location.search).get("model") ?? "");
  const datasets = useDatasets();
  const listed = models.data?.data.filter((m) => m.id.startsWith("ft:")) ?? [];
  // A checkpoint (`ft:...:ckpt-step-N`, from a run's page) is not in the models list: offer it too,
  // named after the run it belongs to.
  const ofCheckpoint = (id: string): Model => {
    const run = listed.find((m) => id.startsWith(m.id + ":"));
    return { ...(run ?? { object: "model", owned_by: "", created: 0 }), id };
  };
  const tuned = model.startsWith("ft:") && !listed.some((m) => m.id === model) ? [ofCheckpoint(model), ...listed] : listed;
  const labelOf = (id: string) => modelLabel(tuned.find((m) => m.id === id) ?? ofCheckpoint(id), datasets);
  const [prompt, setPrompt] = useState("What shape is in this picture?");
  const [image, setImage] = useState<string | null>(null);
  const [imageName, setImageName] = useState("");
  const [maxTokens, setMaxTokens] = useState(64);
  // Sampling, as chat completions take it: temperature 0 is greedy (the same answer every time).
  const [temperature, setTemperature] = useState(0);
  const [topP, setTopP] = useState(1);
  const [result, setResult] = useState<VibeCheck | null>(null);
  const action = useAction();
  const { busy, error, setError } = action;
  const chosen = model || tuned[0]?.id || "";
  // A continued model's chain (root base, then each tuned model it trained on from), by run name.
  const names = new Map(listed.filter((m) => m.name).map((m) => [m.id, m.name as string]));
  const lineageOf = (id: string) => {
    const lineage = tuned.find((m) => m.id === id)?.lineage;
    return lineage && lineage.parent !== lineage.root ? lineage : undefined;
  };

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

  const run = onSubmit(action, async () => {
    const prompts = [{ prompt, image: image ?? undefined }];
    setResult(await post<VibeCheck>("/v1/vibe_checks", { model: chosen, prompts, max_tokens: maxTokens, temperature, top_p: topP }));
    void history.reload();
  });

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
            <TunedModelField models={tuned} value={chosen} onChange={setModel} datasets={datasets} error={errorFor(error, "model", "base_model")}>
              {chosen && <IdChip id={chosen} label={chosen.length > 48 ? `${chosen.slice(0, 45)}…` : chosen} />}
              {lineageOf(chosen) && (
                <span class="hint" data-testid="model-lineage">
                  Continued: {lineageText(lineageOf(chosen)!, names)}
                </span>
              )}
            </TunedModelField>
            <Field label="Prompt" error={errorFor(error, "prompt", "prompts")}>
              <textarea name="prompt" rows={3} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
            </Field>
            <div class="grid-2">
              <Field label="Image (optional)" error={errorFor(error, "image")}>
                <input type="file" name="image" accept="image/*" onChange={(e) => void pick(e.currentTarget.files?.[0])} />
              </Field>
            </div>
            <div class="grid-3">
              <Field label="Temperature" error={errorFor(error, "temperature")} hint="0 = greedy, up to 2">
                <input type="number" name="temperature" min={0} max={2} step={0.1} value={temperature} onInput={(e) => setTemperature(Number(e.currentTarget.value))} />
              </Field>
              <Field label="Top-p" error={errorFor(error, "top_p")} hint="More than 0, up to 1">
                <input type="number" name="top_p" min={0} max={1} step={0.05} value={topP} onInput={(e) => setTopP(Number(e.currentTarget.value))} />
              </Field>
              <Field label="Max tokens" error={errorFor(error, "max_tokens")} hint="1 to 2048">
                <input type="number" name="max_tokens" min={1} max={2048} value={maxTokens} onInput={(e) => setMaxTokens(Number(e.currentTarget.value))} />
              </Field>
            </div>
            {image && <img class="preview-image" src={image} alt={imageName} />}
            <ErrorBox error={formError(error, ["model", "base_model", "prompts", "image", "max_tokens", "temperature", "top_p"])} />
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
                    <Answer text={answer.base} testId="vibe-base" />
                  </div>
                  <div class="card tuned">
                    <h3 title={result.model}>Tuned · {labelOf(result.model)}</h3>
                    <Answer text={answer.tuned} testId="vibe-tuned" />
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
                    <span class="muted" title={check.model}>
                      {labelOf(check.model)}
                    </span>
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
