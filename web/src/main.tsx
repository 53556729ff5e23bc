// The dashboard: sign-in (username and password, single sign-on, or an API key), then one
// screen per part of the farm that the signed-in person may see, chosen by the
// address's fragment (#/wall, #/archive, …) so the api serves one page for all of them.
import { render } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, grants, must, onKeyRefused, storeKey, storedKey, type Me } from "./api/client";
import { Audit } from "./pages/audit";
import { People } from "./pages/people";
import { Archives } from "./pages/archive";
import { Cameras } from "./pages/cameras";
import { Filament } from "./pages/filament";
import { Maintenance } from "./pages/maintenance";
import { Queue } from "./pages/queue";
import { Settings } from "./pages/settings";
import { Stats } from "./pages/stats";
import { Utilisation } from "./pages/utilisation";
import { Wall } from "./pages/wall";
import { ErrorNote, message, type Session } from "./ui";
import "./style.css";

const SCREENS = [
  { path: "wall", title: "Farm", need: "read" },
  { path: "cameras", title: "Cameras", need: "read" },
  { path: "archive", title: "Archive", need: "read" },
  { path: "queue", title: "Queue", need: "read" },
  { path: "filament", title: "Filament", need: "read" },
  { path: "maintenance", title: "Care", need: "read" },
  { path: "statistics", title: "Statistics", need: "read" },
  { path: "utilisation", title: "Utilisation", need: "read" },
  { path: "people", title: "People", need: "admin" },
  { path: "audit", title: "Audit", need: "admin" },
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

async function whoAmI(): Promise<Me> {
  return must(api.GET("/auth/me"));
}

function SignIn({ onSignedIn, note }: { onSignedIn: (me: Me) => void; note?: string }) {
  const [withKey, setWithKey] = useState(false);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | undefined>(note ?? currentRoute().query.get("error") ?? undefined);
  const [sso, setSso] = useState<{ enabled: boolean; display_name?: string | null; login_url?: string | null }>();
  useEffect(() => {
    api.GET("/auth/sso").then(({ data }) => data && setSso(data), () => {});
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      if (withKey) {
        storeKey(key.trim());
      } else {
        storeKey(null);
        await must(api.POST("/auth/login", { body: { username: username.trim(), password } }));
        setPassword("");
      }
      if (location.hash.startsWith("#/signin")) location.hash = "#/";
      onSignedIn(await whoAmI());
    } catch (err) {
      if (withKey) storeKey(null);
      setError(message(err));
    }
  };
  return (
    <main class="signin">
      <h1>Printyard</h1>
      <form onSubmit={submit}>
        {withKey ? (
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
        ) : (
          <>
            <label>
              Username
              <input
                name="username"
                autocomplete="username"
                value={username}
                onInput={(e) => setUsername(e.currentTarget.value)}
                required
                maxLength={100}
              />
            </label>
            <label>
              Password
              <input
                name="password"
                type="password"
                autocomplete="current-password"
                value={password}
                onInput={(e) => setPassword(e.currentTarget.value)}
                required
              />
            </label>
          </>
        )}
        <button type="submit">Sign in</button>
        {!withKey && sso?.enabled && sso.login_url && (
          <a class="button sso" href={sso.login_url}>
            Sign in with {sso.display_name ?? "single sign-on"}
          </a>
        )}
        <ErrorNote error={error} />
        <button type="button" class="quiet" name="use-key" onClick={() => setWithKey(!withKey)}>
          {withKey ? "Sign in with a username instead" : "Use an API key instead"}
        </button>
        {withKey && <p class="hint">The key stays in this browser's storage and is sent only to this server as X-API-Key.</p>}
      </form>
    </main>
  );
}

function App() {
  const route = useRoute();
  const [theme, toggleTheme] = useTheme();
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [note, setNote] = useState<string | undefined>(undefined);

  useEffect(() => {
    // A stored key, or else the session cookie the browser may hold.
    whoAmI().then(setMe, (e: unknown) => {
      if (storedKey()) setNote(message(e));
      setMe(null);
    });
  }, []);
  // Told only when someone was signed in: the first look for a session may well find none.
  const signedIn = useRef(false);
  signedIn.current = !!me;
  useEffect(
    () =>
      onKeyRefused(() => {
        const byKey = storedKey() !== null;
        storeKey(null);
        if (signedIn.current) setNote(byKey ? "The API key was refused: sign in again." : "Your session ended: sign in again.");
        setMe(null);
      }),
    [],
  );

  const session = useMemo<Session | undefined>(
    () =>
      me
        ? {
            permissions: me.permissions,
            can: (p) => grants(me.permissions, p),
            limited: me.printer_ids != null,
          }
        : undefined,
    [me],
  );

  if (me === undefined) return <p class="loading">Loading…</p>;
  if (me === null || !session) return <SignIn onSignedIn={setMe} note={note} />;

  const signOut = async () => {
    if (!storedKey()) await api.POST("/auth/logout").catch(() => undefined);
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
          {SCREENS.filter((s) => session.can(s.need) && !(s.need === "admin" && session.limited)).map((s) => (
            <a href={`#/${s.path}`} aria-current={s === screen ? "page" : undefined}>
              {s.title}
            </a>
          ))}
        </nav>
        <span class="who" title={`${me.kind === "key" ? "API key" : `role ${me.role}`}; permissions: ${me.permissions.join(", ")}${session.limited ? "; limited to some printers" : ""}`}>
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
        {screen.path === "wall" && <Wall session={session} query={route.query} />}
        {screen.path === "cameras" && <Cameras />}
        {screen.path === "archive" && <Archives session={session} />}
        {screen.path === "queue" && <Queue session={session} preset={route.query.get("archive")} />}
        {screen.path === "filament" && <Filament session={session} />}
        {screen.path === "maintenance" && <Maintenance session={session} />}
        {screen.path === "statistics" && <Stats />}
        {screen.path === "utilisation" && <Utilisation />}
        {screen.path === "people" && session.can("admin") && <People />}
        {screen.path === "audit" && session.can("admin") && <Audit />}
        {screen.path === "settings" && <Settings session={session} me={me} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
