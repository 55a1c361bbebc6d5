import type { User } from "firebase/auth";
import { useState } from "preact/hooks";
import { ApiError, type Page, del, get, put } from "../api";
import { ErrorBox, Field, Loading, asApiError, errorFor, useResource } from "../ui";

// Tokens go to the server's secret store (Secret Manager in the cloud) and never come back: the page
// keeps them only in the input until it is sent.
const SECRETS = [
  { name: "hf_token", label: "Hugging Face token", about: "Gated Hub datasets and models, and pushing exports to the Hub." },
  { name: "wandb_api_key", label: "Weights & Biases API key", about: "Runs logged to your W&B project." },
];

function SecretRow({ name, label, about, stored, onChange }: { name: string; label: string; about: string; stored: boolean; onChange: () => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const save = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await put(`/v1/secrets/${name}`, { value });
      setValue("");
      setSaved(true);
      onChange();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };
  const remove = async () => {
    setBusy(true);
    try {
      await del(`/v1/secrets/${name}`);
      setSaved(false);
      onChange();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="secret" onSubmit={save} data-testid={`secret-${name}`}>
      <Field label={label} error={errorFor(error, "value") ?? (error && !error.param ? error.message : null)} hint={about}>
        <input type="password" name={name} autocomplete="off" value={value} placeholder={stored ? "•••••••• (stored; type to replace)" : "not set"} onInput={(e) => setValue(e.currentTarget.value)} />
      </Field>
      <div class="actions">
        <button class="primary" type="submit" disabled={busy || !value}>
          {stored ? "Replace" : "Save"}
        </button>
        {stored && (
          <button type="button" class="danger" onClick={() => void remove()} disabled={busy}>
            Remove
          </button>
        )}
        {stored && <span class="muted" data-testid={`secret-${name}-stored`}>{saved ? "Saved on the server" : "Stored on the server"}</span>}
      </div>
    </form>
  );
}

export function Settings({ user, profile }: { user: User; profile: string }) {
  const secrets = useResource(() => get<Page<{ name: string }>>("/v1/secrets"), []);
  const [token, setToken] = useState<string | null>(null);
  const names = new Set(secrets.data?.data.map((s) => s.name) ?? []);
  const origin = location.origin;
  return (
    <section>
      <div class="page-head">
        <h1>Settings</h1>
      </div>
      <div class="card">
        <h3>Account</h3>
        <p>
          {user.email} · uid <code>{user.uid}</code>
        </p>
      </div>
      <div class="card">
        <h3>Tokens</h3>
        <p class="muted">Stored server-side and read by the trainer itself; they are never shown again or kept in this browser.</p>
        {secrets.loading && <Loading />}
        <ErrorBox error={secrets.error} />
        {secrets.data && SECRETS.map((s) => <SecretRow key={s.name} {...s} stored={names.has(s.name)} onChange={() => void secrets.reload()} />)}
      </div>
      <div class="card">
        <h3>Command line and REST</h3>
        <p>Sign the CLI in once; it refreshes its session by itself:</p>
        <pre>
          {profile === "local"
            ? `pip install -e .   # in the runtune repository\nruntune login --email ${user.email ?? "you@example.com"}\nruntune jobs list`
            : `pip install runtune\nruntune login --gateway ${origin} --api-key <Firebase web API key> --email ${user.email ?? "you@example.com"}\nruntune jobs list`}
        </pre>
        <p>
          Any HTTP client (and the <code>openai</code> SDK with <code>base_url="{origin}/v1"</code>) works with your ID token as the bearer token. It
          expires after an hour.
        </p>
        <button class="secondary" onClick={() => void user.getIdToken().then(setToken)}>
          Show my ID token
        </button>
        {token && (
          <pre class="token" data-testid="id-token">
            {`curl -H "Authorization: Bearer ${token}" ${origin}/v1/fine_tuning/jobs`}
          </pre>
        )}
      </div>
    </section>
  );
}
