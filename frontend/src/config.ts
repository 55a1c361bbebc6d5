// The Firebase web configuration. Two sources, in this order:
//  1. baked in at build time (`VITE_FIREBASE_CONFIG`, the JSON of `terraform output firebase_web_config`):
//     the cloud build; such a build never talks to an emulator, whatever the server says;
//  2. `/config.json` from the gateway, which only the local profile serves with an Auth emulator in it.

export interface FirebaseWebConfig {
  apiKey: string;
  authDomain?: string;
  projectId: string;
  appId?: string;
}

export interface RuntimeConfig {
  profile: "local" | "gcp";
  firebase: FirebaseWebConfig;
  authEmulatorUrl: string | null;
}

function isLoopback(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === "127.0.0.1" || host === "localhost" || host === "[::1]";
  } catch {
    return false;
  }
}

export async function loadConfig(): Promise<RuntimeConfig> {
  const baked = import.meta.env.VITE_FIREBASE_CONFIG as string | undefined;
  if (baked) {
    return { profile: "gcp", firebase: JSON.parse(baked) as FirebaseWebConfig, authEmulatorUrl: null };
  }
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) {
    throw new Error(`The web configuration is missing (GET /config.json answered ${response.status})`);
  }
  const body = (await response.json()) as {
    profile: "local" | "gcp";
    firebase: FirebaseWebConfig;
    auth_emulator_url?: string | null;
  };
  const emulator = body.auth_emulator_url ?? null;
  // An emulator accepts any token for any user: only ever use one that runs on this very machine.
  if (emulator && (body.profile !== "local" || !isLoopback(emulator))) {
    throw new Error("Refusing an Auth emulator outside the local profile");
  }
  return { profile: body.profile, firebase: body.firebase, authEmulatorUrl: emulator };
}
