// People (admin): users (create, role, scope, enable or disable, new password) and roles (the
// four built in, and the farm's own with their permissions and scope).
import { useState } from "preact/hooks";
import { api, must, type Permission, type Role, type User } from "../api/client";
import { ActionButton, ErrorNote, useAnswer, useSubmit, when } from "../ui";

const PERMISSIONS: Permission[] = ["read", "write", "control", "admin"];

/** `north, south` → `["north", "south"]`; `1, 2` → `[1, 2]`. */
const words = (text: string): string[] =>
  text
    .split(",")
    .map((w) => w.trim())
    .filter(Boolean);
const numbers = (text: string): number[] => words(text).map(Number).filter(Number.isInteger);

const scope = (sites: string[], ids: number[]): string =>
  [sites.length ? `sites ${sites.join(", ")}` : "", ids.length ? `printers ${ids.join(", ")}` : ""].filter(Boolean).join("; ") ||
  "everything";

export function People() {
  const roles = useAnswer(() => must(api.GET("/roles")), []);
  return (
    <>
      <Users roles={roles.data ?? []} />
      <Roles roles={roles.data ?? []} error={roles.error} onChanged={roles.reload} />
    </>
  );
}

function Users({ roles }: { roles: Role[] }) {
  const users = useAnswer(() => must(api.GET("/users")), []);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("viewer");
  const [sites, setSites] = useState("");
  const [printers, setPrinters] = useState("");
  const { submit: create, error } = useSubmit(async () => {
    await must(
      api.POST("/users", {
        body: {
          username,
          password: password || undefined,
          role,
          email: email || undefined,
          sites: words(sites),
          printer_ids: numbers(printers),
        },
      }),
    );
    setUsername("");
    setPassword("");
    setEmail("");
    users.reload();
  });
  const patch = async (user: User, body: Record<string, unknown>) => {
    await must(api.PATCH("/users/{id}", { params: { path: { id: user.id } }, body }));
    users.reload();
  };
  return (
    <section aria-label="Users">
      <h2>Users</h2>
      <form class="toolbar wrap" onSubmit={create}>
        <label>
          Username <input name="user-name" value={username} onInput={(e) => setUsername(e.currentTarget.value)} required maxLength={100} />
        </label>
        <label>
          Password
          <input
            name="user-password"
            type="password"
            autocomplete="new-password"
            placeholder="12+ characters; empty: SSO only"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            minLength={12}
          />
        </label>
        <label>
          Email <input name="user-email" type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          Role
          <select name="user-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            {roles.map((r) => (
              <option value={r.name}>{r.name}</option>
            ))}
          </select>
        </label>
        <label>
          Sites <input name="user-sites" placeholder="all" value={sites} onInput={(e) => setSites(e.currentTarget.value)} />
        </label>
        <label>
          Printers <input name="user-printers" placeholder="all (ids, comma-separated)" value={printers} onInput={(e) => setPrinters(e.currentTarget.value)} />
        </label>
        <button type="submit">Add user</button>
        <ErrorNote error={error ?? users.error} />
      </form>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th>User</th>
              <th>Role</th>
              <th>Limited to</th>
              <th>Sign-in</th>
              <th>Last sign-in</th>
              <th>State</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(users.data ?? []).map((u) => (
              <tr key={u.id} data-user={u.username}>
                <td>
                  {u.username}
                  {u.email && <div class="hint">{u.email}</div>}
                </td>
                <td>
                  <select aria-label={`Role of ${u.username}`} value={u.role} onChange={(e) => patch(u, { role: e.currentTarget.value })}>
                    {roles.map((r) => (
                      <option value={r.name}>{r.name}</option>
                    ))}
                  </select>
                </td>
                <td>{scope(u.sites, u.printer_ids)}</td>
                <td>{[u.has_password && "password", u.sso && "single sign-on"].filter(Boolean).join(", ") || "–"}</td>
                <td>{when(u.last_login_at)}</td>
                <td>{!u.enabled ? "disabled" : u.locked_until && new Date(u.locked_until) > new Date() ? "locked" : "active"}</td>
                <td>
                  <ActionButton
                    class={u.enabled ? "danger" : undefined}
                    confirm={u.enabled ? `Disable ${u.username}? Their sessions end at once.` : undefined}
                    action={() => patch(u, { enabled: !u.enabled })}
                  >
                    {u.enabled ? "Disable" : "Enable"}
                  </ActionButton>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Roles({ roles, error: loadError, onChanged }: { roles: Role[]; error?: string; onChanged: () => void }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [chosen, setChosen] = useState<Permission[]>(["read"]);
  const [sites, setSites] = useState("");
  const [printers, setPrinters] = useState("");
  const { submit: create, error } = useSubmit(async () => {
    await must(
      api.POST("/roles", {
        body: { name, description, permissions: chosen, sites: words(sites), printer_ids: numbers(printers) },
      }),
    );
    setName("");
    setDescription("");
    onChanged();
  });
  return (
    <section aria-label="Roles">
      <h2>Roles</h2>
      <form class="toolbar wrap" onSubmit={create}>
        <label>
          Name <input name="role-name" pattern="[a-z][a-z0-9_\\-]{0,39}" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
        </label>
        <label class="grow">
          Description <input name="role-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} maxLength={500} />
        </label>
        <fieldset>
          <legend>Permissions</legend>
          {PERMISSIONS.map((p) => (
            <label class="check">
              <input
                type="checkbox"
                name={`role-perm-${p}`}
                checked={chosen.includes(p)}
                onChange={(e) => setChosen(e.currentTarget.checked ? [...chosen, p] : chosen.filter((x) => x !== p))}
              />
              {p}
            </label>
          ))}
        </fieldset>
        <label>
          Sites <input name="role-sites" placeholder="all" value={sites} onInput={(e) => setSites(e.currentTarget.value)} />
        </label>
        <label>
          Printers <input name="role-printers" placeholder="all" value={printers} onInput={(e) => setPrinters(e.currentTarget.value)} />
        </label>
        <button type="submit">Add role</button>
        <ErrorNote error={error ?? loadError} />
      </form>
      <div class="scroll">
        <table>
          <thead>
            <tr>
              <th>Role</th>
              <th>Permissions</th>
              <th>Limited to</th>
              <th>Description</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {roles.map((r) => (
              <tr key={r.name}>
                <td>{r.name}</td>
                <td>{r.permissions.join(", ")}</td>
                <td>{scope(r.sites, r.printer_ids)}</td>
                <td>{r.description}</td>
                <td>
                  {!r.builtin && (
                    <ActionButton
                      class="danger"
                      confirm={`Delete the role ${r.name}?`}
                      action={async () => (await must(api.DELETE("/roles/{name}", { params: { path: { name: r.name } } })), onChanged())}
                    >
                      Delete
                    </ActionButton>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
