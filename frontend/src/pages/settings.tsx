import type { User } from "firebase/auth";
import { type ComponentChildren, Fragment } from "preact";
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
import { ErrorBox, Field, Loading, Table, errorFor, onSubmit, useAction, useResource } from "../ui";

// Tokens go to the server's secret store (Secret Manager in the cloud) and never come back: the page
// keeps them only in the input until it is sent.
const SECRETS = [
  { name: "hf_token", label: "Hugging Face token", about: "Gated Hub datasets and models, and pushing exports to the Hub." },
  { name: "wandb_api_key", label: "Weights & Biases API key", about: "Runs logged to your W&B project." },
];

/** The field's problem, or the error that names no field: a form of one field shows either beside it. */
const fieldError = (error: ApiError | null, name: string) => errorFor(error, name) ?? (error && !error.param ? error.message : null);

function SecretRow({ name, label, about, stored, onChange }: { name: string; label: string; about: string; stored: boolean; onChange: () => void }) {
  const [value, setValue] = useState("");
  const [saved, setSaved] = useState(false);
  const action = useAction();
  const { busy, error } = action;
  const save = onSubmit(action, async () => {
    await put(`/v1/secrets/${name}`, { value });
    setValue("");
    setSaved(true);
    onChange();
  });
  const remove = () =>
    action.run(async () => {
      await del(`/v1/secrets/${name}`);
      setSaved(false);
      onChange();
    });
  return (
    <form class="secret" onSubmit={save} data-testid={`secret-${name}`}>
      <Field label={label} error={fieldError(error, "value")} hint={about}>
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

/** A secret the server gives once (an API key, a webhook's signing secret), with a copy button; the
 * page never stores it. Keyed by the secret, so a new one starts uncopied. */
function ShownOnce(props: { secret: string; testId: string; heading: string; note: string; children?: ComponentChildren }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="created-key" data-testid={props.testId}>
      <p>
        <strong>{props.heading}</strong> {props.note}
      </p>
      <pre data-testid={`${props.testId}-secret`}>{props.secret}</pre>
      <button class="secondary" type="button" onClick={() => void navigator.clipboard?.writeText(props.secret).then(() => setCopied(true))}>
        {copied ? "Copied" : "Copy"}
      </button>
      {props.children}
    </div>
  );
}

// Long-lived keys for scripts and services. The secret comes back once, in the create answer: the
// server keeps only its hash, so the page shows it until the user leaves and never stores it.
function ApiKeys({ origin }: { origin: string }) {
  const keys = useResource(() => get<Page<ApiKey>>("/v1/api_keys"), []);
  const [name, setName] = useState("");
  const [readOnly, setReadOnly] = useState(false);
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const action = useAction();
  const { busy, error } = action;
  const create = onSubmit(action, async () => {
    setCreated(await post<CreatedApiKey>("/v1/api_keys", { name, scopes: [readOnly ? "read_only" : "full"] }));
    setName("");
    void keys.reload();
  });
  const revoke = (id: string) =>
    action.run(async () => {
      await del(`/v1/api_keys/${id}`);
      if (created?.id === id) setCreated(null);
      void keys.reload();
    });
  return (
    <div class="card" data-testid="api-keys">
      <h3>API keys</h3>
      <p class="muted">For scripts, CI pipelines and backends: a key does not expire after an hour like a session, and you can revoke it here.</p>
      <form class="inline-form" onSubmit={create}>
        <Field label="Name" error={fieldError(error, "name")}>
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
        <ShownOnce key={created.key} secret={created.key} testId="created-key" heading="Copy it now:" note="this key is not shown again.">
          <pre>{`curl -H "Authorization: Bearer ${created.key}" ${origin}/v1/fine_tuning/jobs\n\nfrom openai import OpenAI\nclient = OpenAI(base_url="${origin}/v1", api_key="${created.key}")`}</pre>
        </ShownOnce>
      )}
      {keys.loading && <Loading />}
      <ErrorBox error={keys.error} />
      {keys.data && keys.data.data.length > 0 && (
        <Table testId="api-key-table" columns={["Name", "Key", "Scopes", "Created", "Last used", ""]}>
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
        </Table>
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
        <Table testId="webhook-delivery-table" columns={["Time", "Event", "Attempt", "HTTP status", "Latency", "Next retry"]}>
          {log.data.data.map((d) => (
            <tr key={d.id}>
              <td>{when(d.attempted_at)}</td>
              <td>
                {d.event_type} <code>{d.event_id}</code>
              </td>
              <td>{d.attempt}</td>
              <td>{d.status_code ?? d.error ?? "—"}</td>
              <td>{d.latency_ms === null ? "—" : `${Math.round(d.latency_ms)} ms`}</td>
              <td>{when(d.next_retry_at)}</td>
            </tr>
          ))}
        </Table>
      )}
    </div>
  );
}

function Webhooks() {
  const hooks = useResource(() => get<Page<WebhookEndpoint>>("/v1/webhooks"), []);
  const [url, setUrl] = useState("");
  const [created, setCreated] = useState<CreatedWebhookEndpoint | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const action = useAction();
  const { busy, error } = action;
  // Every change to an endpoint is followed by a fresh list.
  const act = (work: () => Promise<unknown>) =>
    action.run(async () => {
      await work();
      void hooks.reload();
    });
  const create = (event: Event) => {
    event.preventDefault();
    void act(async () => {
      setCreated(await post<CreatedWebhookEndpoint>("/v1/webhooks", { url }));
      setUrl("");
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
        <Field label="Endpoint URL" error={fieldError(error, "url")}>
          <input name="webhook-url" value={url} placeholder="https://example.com/hooks" maxLength={2048} onInput={(e) => setUrl(e.currentTarget.value)} />
        </Field>
        <button class="primary" type="submit" disabled={busy || !url.trim()}>
          Add endpoint
        </button>
      </form>
      {created && <ShownOnce key={created.secret} secret={created.secret} testId="created-webhook" heading="Copy the signing secret now:" note="it is not shown again." />}
      {hooks.loading && <Loading />}
      <ErrorBox error={hooks.error} />
      {hooks.data && hooks.data.data.length > 0 && (
        <Table testId="webhook-table" columns={["URL", "Events", "Status", "Created", ""]}>
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
        </Table>
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
