import { useState } from "preact/hooks";
import { authErrorMessage, signIn, signUp } from "../auth";
import { Field } from "../ui";

export function SignIn() {
  const [mode, setMode] = useState<"signin" | "signup">("signin");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<{ field: "email" | "password" | null; message: string } | null>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await (mode === "signin" ? signIn(email, password) : signUp(email, password));
    } catch (caught) {
      setError(authErrorMessage(caught));
      setBusy(false);
    }
  };

  return (
    <div class="auth-page">
      <form class="card auth-card" onSubmit={submit} noValidate>
        <h1>Runtune</h1>
        <p class="muted">Fine-tune Gemma vision models on your own data.</p>
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === "signin"} onClick={() => setMode("signin")}>
            Sign in
          </button>
          <button type="button" role="tab" aria-selected={mode === "signup"} onClick={() => setMode("signup")}>
            Create account
          </button>
        </div>
        <Field label="Email" error={error?.field === "email" ? error.message : null}>
          <input type="email" name="email" autocomplete="email" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </Field>
        <Field
          label="Password"
          error={error?.field === "password" ? error.message : null}
          hint={mode === "signup" ? "At least 6 characters" : undefined}
        >
          <input
            type="password"
            name="password"
            autocomplete={mode === "signin" ? "current-password" : "new-password"}
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </Field>
        {error && error.field === null && (
          <div class="error-box" role="alert">
            {error.message}
          </div>
        )}
        <button class="primary" type="submit" disabled={busy}>
          {busy ? "Please wait…" : mode === "signin" ? "Sign in" : "Create account"}
        </button>
      </form>
    </div>
  );
}
