// A real OpenID Connect provider for the suite: the certified `oidc-provider` package, with
// its development sign-in pages (any password), one confidential client, and people whose
// `groups` claim the tests map to roles. Not for production: keys are made at start.
//
//   node e2e/oidc-provider.mjs <port> <redirect_uri>
//
// Prints `ready <issuer>` once it listens. People: `ada` (groups farm-admins), `nora`
// (north-operators), `gus` (no group).
import Provider from "oidc-provider";

const [port, redirectUri] = process.argv.slice(2);
if (!port || !redirectUri) {
  console.error("usage: oidc-provider.mjs <port> <redirect_uri>");
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const people = {
  ada: { email: "ada@example.com", groups: ["farm-admins", "staff"] },
  nora: { email: "nora@example.com", groups: ["north-operators"] },
  gus: { email: "gus@example.com", groups: [] },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "printyard",
      client_secret: "printyard-test-secret",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { required: () => true },
  scopes: ["openid", "email", "profile", "groups"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username"],
    groups: ["groups"],
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["printyard-test-cookie-key"] },
  async findAccount(_ctx, id) {
    const person = people[id] ?? { email: `${id}@example.com`, groups: [] };
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          email: person.email,
          email_verified: true,
          groups: person.groups,
        };
      },
    };
  },
});
provider.proxy = false;

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`ready ${issuer}`);
});
