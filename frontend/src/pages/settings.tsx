import type { User } from "firebase/auth";
import { Fragment } from "preact";
import { useState } from "preact/hooks";
import {
  type ApiKey,
  ApiError,
  type CreatedApiKey,
  type CreatedWebhookEndpoint,
  type Page,
  type SecretList,
  type WebhookDelivery,
  type WebhookEndpoint,
  del,
  get,
  post,
  put,
} from "../api";
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

const when = (ts: number | null) => (ts ? new Date(ts * 1000).toLocaleString() : "—");

// Long-lived keys for scripts and services. The secret comes back once, in the create answer: the
// server keeps only its hash, so the page shows it until the user leaves and never stores it.
function ApiKeys({ origin }: { origin: string }) {
  const keys = useResource(() => get<Page<ApiKey>>("/v1/api_keys"), []);
  const [name, setName] = useState("");
  const [readOnly, setReadOnly] = useState(false);
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState(false);
  const create = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setCreated(await post<CreatedApiKey>("/v1/api_keys", { name, scopes: [readOnly ? "read_only" : "full"] }));
      setName("");
      setCopied(false);
      void keys.reload();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (id: string) => {
    setError(null);
    try {
      await del(`/v1/api_keys/${id}`);
      if (created?.id === id) setCreated(null);
      void keys.reload();
    } catch (caught) {
      setError(asApiError(caught));
    }
  };
  return (
    <div class="card" data-testid="api-keys">
      <h3>API keys</h3>
      <p class="muted">For scripts, CI pipelines and backends: a key does not expire after an hour like a session, and you can revoke it here.</p>
      <form class="inline-form" onSubmit={create}>
        <Field label="Name" error={errorFor(error, "name") ?? (error && !error.param ? error.message : null)}>
          <input name="key-name" value={name} placeholder="ci-pipeline" maxLength={100} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <label class="check">
          <input type="checkbox" name="key-read-only" checked={readOnly} onChange={(e) => setReadOnly(e.currentTarget.checked)} /> Read-only (GET requests only)
        </label>
        <button class="primary" type="submit" disabled={busy || !name.trim()}>
          Create key
        </button>
      </form>
      {created && (
        <div class="created-key" data-testid="created-key">
          <p>
            <strong>Copy it now:</strong> this key is not shown again.
          </p>
          <pre data-testid="created-key-secret">{created.key}</pre>
          <button class="secondary" type="button" onClick={() => void navigator.clipboard?.writeText(created.key).then(() => setCopied(true))}>
            {copied ? "Copied" : "Copy"}
          </button>
          <pre>{`curl -H "Authorization: Bearer ${created.key}" ${origin}/v1/fine_tuning/jobs\n\nfrom openai import OpenAI\nclient = OpenAI(base_url="${origin}/v1", api_key="${created.key}")`}</pre>
        </div>
      )}
      {keys.loading && <Loading />}
      <ErrorBox error={keys.error} />
      {keys.data && keys.data.data.length > 0 && (
        <table data-testid="api-key-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Key</th>
              <th>Scopes</th>
              <th>Created</th>
              <th>Last used</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {keys.data.data.map((key) => (
              <tr key={key.id} data-testid={`api-key-${key.id}`}>
                <td>{key.name}</td>
                <td>
                  <code>{key.prefix}…</code>
                </td>
                <td>{key.scopes.join(", ")}</td>
                <td>{when(key.created_at)}</td>
                <td>{when(key.last_used_at)}</td>
                <td>
                  <button class="danger" type="button" onClick={() => void revoke(key.id)}>
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

// Endpoints that receive the account's signed events. Like an API key, the signing secret comes back
// once, in the create answer, and the page never stores it.
function Deliveries({ id }: { id: string }) {
  const log = useResource(() => get<Page<WebhookDelivery>>(`/v1/webhooks/${id}/deliveries`), [id]);
  return (
    <div data-testid={`webhook-deliveries-${id}`}>
      <button class="secondary" type="button" onClick={() => void log.reload()}>
        Refresh
      </button>
      <ErrorBox error={log.error} />
      {log.data && log.data.data.length === 0 && <p class="muted">No delivery yet.</p>}
      {log.data && log.data.data.length > 0 && (
        <table data-testid="webhook-delivery-table">
          <thead>
            <tr>
              <th>Time</th>
              <th>Event</th>
              <th>Attempt</th>
              <th>HTTP status</th>
              <th>Latency</th>
              <th>Next retry</th>
            </tr>
          </thead>
          <tbody>
            {log.data.data.map((d) => (
              <tr key={d.id}>
                <td>{new Date(d.attempted_at * 1000).toLocaleString()}</td>
                <td>
                  {d.event_type} <code>{d.event_id}</code>
                </td>
                <td>{d.attempt}</td>
                <td>{d.status_code ?? d.error ?? "—"}</td>
                <td>{d.latency_ms === null ? "—" : `${Math.round(d.latency_ms)} ms`}</td>
                <td>{d.next_retry_at ? new Date(d.next_retry_at * 1000).toLocaleString() : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Webhooks() {
  const hooks = useResource(() => get<Page<WebhookEndpoint>>("/v1/webhooks"), []);
  const [url, setUrl] = useState("");
  const [created, setCreated] = useState<CreatedWebhookEndpoint | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState(false);
  const act = async (work: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
      void hooks.reload();
    } catch (caught) {
      setError(asApiError(caught));
    } finally {
      setBusy(false);
    }
  };
  const create = (event: Event) => {
    event.preventDefault();
    void act(async () => {
      setCreated(await post<CreatedWebhookEndpoint>("/v1/webhooks", { url }));
      setUrl("");
      setCopied(false);
    });
  };
  const remove = (id: string) =>
    act(async () => {
      await del(`/v1/webhooks/${id}`);
      if (created?.id === id) setCreated(null);
    });
  const test = (id: string) =>
    act(async () => {
      await post(`/v1/webhooks/${id}/test`, {});
      setOpen(id);
    });
  return (
    <div class="card" data-testid="webhooks">
      <h3>Webhooks</h3>
      <p class="muted">
        Runtune POSTs signed events (a job succeeded, failed or was cancelled; a dataset is ready; an evaluation or export finished) to these URLs. Verify them with the{" "}
        <code>openai</code> SDK's <code>client.webhooks.unwrap(body, headers, secret=...)</code>.
      </p>
      <form class="inline-form" onSubmit={create}>
        <Field label="Endpoint URL" error={errorFor(error, "url") ?? (error && !error.param ? error.message : null)}>
          <input name="webhook-url" value={url} placeholder="https://example.com/hooks" maxLength={2048} onInput={(e) => setUrl(e.currentTarget.value)} />
        </Field>
        <button class="primary" type="submit" disabled={busy || !url.trim()}>
          Add endpoint
        </button>
      </form>
      {created && (
        <div class="created-key" data-testid="created-webhook">
          <p>
            <strong>Copy the signing secret now:</strong> it is not shown again.
          </p>
          <pre data-testid="created-webhook-secret">{created.secret}</pre>
          <button class="secondary" type="button" onClick={() => void navigator.clipboard?.writeText(created.secret).then(() => setCopied(true))}>
            {copied ? "Copied" : "Copy"}
          </button>
        </div>
      )}
      {hooks.loading && <Loading />}
      <ErrorBox error={hooks.error} />
      {hooks.data && hooks.data.data.length > 0 && (
        <table data-testid="webhook-table">
          <thead>
            <tr>
              <th>URL</th>
              <th>Events</th>
              <th>Status</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {hooks.data.data.map((hook) => (
              <Fragment key={hook.id}>
                <tr data-testid={`webhook-${hook.id}`}>
                  <td>
                    <code>{hook.url}</code>
                  </td>
                  <td>{hook.events.length ? hook.events.join(", ") : "all"}</td>
                  <td title={hook.disabled_reason ?? ""}>{hook.status}</td>
                  <td>{when(hook.created_at)}</td>
                  <td>
                    <button class="secondary" type="button" disabled={busy || hook.status !== "enabled"} onClick={() => void test(hook.id)}>
                      Send test
                    </button>
                    <button class="secondary" type="button" onClick={() => setOpen(open === hook.id ? null : hook.id)}>
                      Deliveries
                    </button>
                    <button class="danger" type="button" disabled={busy} onClick={() => void remove(hook.id)}>
                      Delete
                    </button>
                  </td>
                </tr>
                {open === hook.id && (
                  <tr>
                    <td colSpan={5}>
                      <Deliveries id={hook.id} />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function Settings({ user, profile }: { user: User; profile: string }) {
  const secrets = useResource(() => get<SecretList>("/v1/secrets"), []);
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
      <ApiKeys origin={origin} />
      <Webhooks />
      <div class="card">
        <h3>Command line and REST</h3>
        <p>Sign the CLI in once; it refreshes its session by itself:</p>
        <pre>
          {profile === "local"
            ? `pip install -e .   # in the runtune repository\nruntune login --email ${user.email ?? "you@example.com"}\nruntune jobs list`
            : `pip install runtune\nruntune login --gateway ${origin} --api-key <Firebase web API key> --email ${user.email ?? "you@example.com"}\nruntune jobs list`}
        </pre>
        <p>
          Any HTTP client (and the <code>openai</code> SDK with <code>base_url="{origin}/v1"</code>) works with an API key (above) or your ID token as
          the bearer token; the ID token expires after an hour.
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
