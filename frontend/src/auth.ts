// Firebase Auth (modular SDK: only what is imported lands in the bundle). The ID token lives in the
// SDK's own IndexedDB persistence; Runtune stores nothing of its own in localStorage.
import { initializeApp } from "firebase/app";
import {
  type Auth,
  type User,
  browserLocalPersistence,
  browserSessionPersistence,
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  indexedDBLocalPersistence,
  initializeAuth,
  onIdTokenChanged,
  sendEmailVerification,
  signInWithEmailAndPassword,
  signOut as firebaseSignOut,
} from "firebase/auth";
import type { RuntimeConfig } from "./config";

let auth: Auth | null = null;

export function initAuth(config: RuntimeConfig): Auth {
  const app = initializeApp(config.firebase);
  // Not `getAuth`: it installs the popup/redirect resolver, which on a phone's user agent loads
  // `https://apis.google.com/js/api.js` on every page to finish a possible redirect sign-in. Runtune
  // signs in with email and password only, so the resolver is left out and no page asks any host
  // but the deployment's own (the local platform works offline).
  auth = initializeAuth(app, { persistence: [indexedDBLocalPersistence, browserLocalPersistence, browserSessionPersistence] });
  if (config.authEmulatorUrl) {
    connectAuthEmulator(auth, config.authEmulatorUrl, { disableWarnings: true });
  }
  return auth;
}

function current(): Auth {
  if (!auth) throw new Error("auth is not initialised");
  return auth;
}

export function watchUser(callback: (user: User | null) => void): () => void {
  return onIdTokenChanged(current(), callback);
}

export async function idToken(): Promise<string | null> {
  const user = current().currentUser;
  return user ? user.getIdToken() : null;
}

export async function signIn(email: string, password: string): Promise<void> {
  await signInWithEmailAndPassword(current(), email, password);
}

export async function signUp(email: string, password: string): Promise<void> {
  const { user } = await createUserWithEmailAndPassword(current(), email, password);
  // A deployment that admits only invited addresses or domains trusts verified addresses only
  // (gateway/signup.py): send the link at once. Best effort: an open deployment needs no
  // verification, and a closed one answers with what to do when the address is still unverified.
  await sendEmailVerification(user).catch(() => undefined);
}

export async function signOut(): Promise<void> {
  await firebaseSignOut(current());
}

const WRONG_CREDENTIALS = "Wrong email or password";

// Firebase error codes, in words, with the form field each one belongs to.
export function authErrorMessage(error: unknown): { field: "email" | "password" | null; message: string } {
  const code = (error as { code?: string }).code ?? "";
  const known: Record<string, ["email" | "password" | null, string]> = {
    "auth/invalid-email": ["email", "That is not a valid email address"],
    "auth/email-already-in-use": ["email", "An account with this email exists already: sign in instead"],
    // One answer whether the address has no account or the password is wrong: a sign-in form must
    // not tell a stranger which addresses have accounts.
    "auth/user-not-found": ["password", WRONG_CREDENTIALS],
    "auth/wrong-password": ["password", WRONG_CREDENTIALS],
    "auth/invalid-credential": ["password", WRONG_CREDENTIALS],
    "auth/invalid-login-credentials": ["password", WRONG_CREDENTIALS],
    "auth/user-disabled": ["password", WRONG_CREDENTIALS],
    "auth/weak-password": ["password", "Choose a password of at least 6 characters"],
    "auth/missing-password": ["password", "Enter a password"],
    "auth/too-many-requests": [null, "Too many attempts: wait a minute and try again"],
    "auth/network-request-failed": [null, "The sign-in service cannot be reached"],
  };
  const hit = known[code];
  if (hit) return { field: hit[0], message: hit[1] };
  return { field: null, message: (error as Error).message || "Sign-in failed" };
}
