// The dashboard: sign-in with an API key, then one screen per part of the farm, chosen by the
// address's fragment (#/wall, #/archive, …) so the api serves one page for all of them.
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { api, grants, must, onKeyRefused, storeKey, storedKey, type ApiKey } from "./api/client";
import { Archives } from "./pages/archive";
import { Cameras } from "./pages/cameras";
import { Filament } from "./pages/filament";
import { Queue } from "./pages/queue";
import { Settings } from "./pages/settings";
import { Stats } from "./pages/stats";
import { Wall } from "./pages/wall";
import { ErrorNote, message, type Session } from "./ui";
import "./style.css";

const SCREENS = [
  { path: "wall", title: "Farm", need: "read" },
  { path: "cameras", title: "Cameras", need: "read" },
  { path: "archive", title: "Archive", need: "read" },
  { path: "queue", title: "Queue", need: "read" },
  { path: "filament", title: "Filament", need: "read" },
  { path: "statistics", title: "Statistics", need: "read" },
  { path: "settings", title: "Settings", need: "read" },
] as const;

type Route = { screen: string; query: URLSearchParams };

function currentRoute(): Route {
  const [screen, query] = location.hash.replace(/^#\/?/, "").split("?");
  return { screen: screen || "wall", query: new URLSearchParams(query ?? "") };
}

function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

const THEME_STORAGE = "printyard.theme";

function useTheme(): [string, () => void] {
  const [theme, setTheme] = useState(
    () => localStorage.getItem(THEME_STORAGE) ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"),
  );
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem(THEME_STORAGE, theme);
  }, [theme]);
  return [theme, () => setTheme(theme === "dark" ? "light" : "dark")];
}

async function whoAmI(): Promise<ApiKey> {
  return must(api.GET("/api-keys/current"));
}

function SignIn({ onSignedIn, note }: { onSignedIn: (key: ApiKey) => void; note?: string }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | undefined>(note);
  const submit = async (e: Event) => {
    e.preventDefault();
    storeKey(key.trim());
    try {
      onSignedIn(await whoAmI());
    } catch (err) {
      storeKey(null);
      setError(message(err));
    }
  };
  return (
    <main class="signin">
      <h1>Printyard</h1>
      <form onSubmit={submit}>
        <label>
          API key
          <input
            name="api-key"
            type="password"
            autocomplete="off"
            placeholder="pyk_…"
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
            required
          />
        </label>
        <button type="submit">Sign in</button>
        <ErrorNote error={error} />
        <p class="hint">The key stays in this browser's storage and is sent only to this server as X-API-Key.</p>
      </form>
    </main>
  );
}

function App() {
  const route = useRoute();
  const [theme, toggleTheme] = useTheme();
  const [me, setMe] = useState<ApiKey | null | undefined>(undefined);
  const [note, setNote] = useState<string | undefined>(undefined);

  useEffect(() => {
    if (!storedKey()) {
      setMe(null);
      return;
    }
    whoAmI().then(setMe, (e: unknown) => {
      setNote(message(e));
      setMe(null);
    });
  }, []);
  useEffect(
    () =>
      onKeyRefused(() => {
        storeKey(null);
        setNote("The API key was refused: sign in again.");
        setMe(null);
      }),
    [],
  );

  const session = useMemo<Session | undefined>(
    () => (me ? { permissions: me.permissions, can: (p) => grants(me.permissions, p) } : undefined),
    [me],
  );

  if (me === undefined) return <p class="loading">Loading…</p>;
  if (me === null || !session) return <SignIn onSignedIn={setMe} note={note} />;

  const signOut = () => {
    storeKey(null);
    setNote(undefined);
    setMe(null);
  };
  const screen = SCREENS.find((s) => s.path === route.screen) ?? SCREENS[0];
  return (
    <>
      <header class="top">
        <strong class="brand">Printyard</strong>
        <nav>
          {SCREENS.filter((s) => session.can(s.need)).map((s) => (
            <a href={`#/${s.path}`} aria-current={s === screen ? "page" : undefined}>
              {s.title}
            </a>
          ))}
        </nav>
        <span class="who" title={`permissions: ${me.permissions.join(", ")}`}>
          {me.name}
        </span>
        <button class="quiet" onClick={toggleTheme} aria-label="Toggle dark theme">
          {theme === "dark" ? "Light" : "Dark"}
        </button>
        <button class="quiet" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main class={`screen screen-${screen.path}`}>
        {screen.path === "wall" && <Wall session={session} />}
        {screen.path === "cameras" && <Cameras />}
        {screen.path === "archive" && <Archives session={session} />}
        {screen.path === "queue" && <Queue session={session} preset={route.query.get("archive")} />}
        {screen.path === "filament" && <Filament session={session} />}
        {screen.path === "statistics" && <Stats />}
        {screen.path === "settings" && <Settings session={session} me={me} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
