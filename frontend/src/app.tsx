import type { User } from "firebase/auth";
import { useEffect, useState } from "preact/hooks";
import { signOut, watchUser } from "./auth";
import { CompareRuns } from "./pages/compare";
import { DatasetDetail } from "./pages/dataset-detail";
import { Datasets } from "./pages/datasets";
import { Evaluations } from "./pages/evaluations";
import { Exports } from "./pages/exports";
import { NewDataset } from "./pages/new-dataset";
import { NewRun } from "./pages/new-run";
import { Playground } from "./pages/playground";
import { RunDetail } from "./pages/run-detail";
import { Runs } from "./pages/runs";
import { Settings } from "./pages/settings";
import { SignIn } from "./pages/sign-in";
import { Link, match, navigate, usePath } from "./router";
import { Loading, NotFound } from "./ui";

const NAV = [
  ["/datasets", "Datasets"],
  ["/runs", "Runs"],
  ["/playground", "Playground"],
  ["/evaluations", "Evaluations"],
  ["/exports", "Exports"],
  ["/settings", "Settings"],
] as const;

function Page({ path, user, profile }: { path: string; user: User; profile: string }) {
  let params: Record<string, string> | null;
  if (path === "/" || path === "/signin") {
    navigate("/datasets", true);
    return <Loading />;
  }
  if (path === "/datasets") return <Datasets />;
  if (path === "/datasets/new") return <NewDataset />;
  if ((params = match("/datasets/:id", path))) return <DatasetDetail id={params.id} />;
  if (path === "/runs") return <Runs />;
  if (path === "/runs/new") return <NewRun />;
  if (path === "/runs/compare") return <CompareRuns />;
  if ((params = match("/runs/:id", path))) return <RunDetail id={params.id} />;
  if (path === "/playground") return <Playground />;
  if (path === "/evaluations") return <Evaluations />;
  if ((params = match("/evaluations/:id", path))) return <Evaluations id={params.id} />;
  if (path === "/exports") return <Exports />;
  if (path === "/settings") return <Settings user={user} profile={profile} />;
  return <NotFound what="Page" detail={`There is no page at ${path}.`} back={{ href: "/datasets", label: "Back to your datasets" }} />;
}

export function App({ profile }: { profile: string }) {
  const [user, setUser] = useState<User | null | undefined>(undefined);
  const path = usePath();
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => watchUser(setUser), []);
  useEffect(() => setMenuOpen(false), [path]);

  if (user === undefined) return <Loading label="Signing in…" />;
  if (user === null) return <SignIn />;
  return (
    <div class="shell">
      <header class="topbar">
        <Link href="/datasets" class="brand">
          Runtune
        </Link>
        <button class="menu-toggle" aria-expanded={menuOpen} aria-label="Menu" onClick={() => setMenuOpen(!menuOpen)}>
          ☰
        </button>
        <nav class={menuOpen ? "open" : ""}>
          {NAV.map(([href, label]) => (
            <Link key={href} href={href} class={path.startsWith(href) ? "active" : ""}>
              {label}
            </Link>
          ))}
        </nav>
        <div class="account">
          <span class="email" data-testid="account-email">
            {user.email}
          </span>
          <button class="link" onClick={() => void signOut().then(() => navigate("/signin", true))}>
            Sign out
          </button>
        </div>
      </header>
      <main>
        <Page path={path} user={user} profile={profile} />
      </main>
    </div>
  );
}
