// A real OpenID Connect provider for tests: oidc-provider 9 on loopback http.
// Configuration comes from the environment (the client secret never goes into argv):
//   OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
//   OIDC_ACCOUNTS = JSON {"login": {"preferred_username": "...", "groups": ["..."]}}
// Login needs no browser: GET /interaction/<uid>?login=<name> logs <name> in (the
// test client adds ?login=), or the first account when none is given; consent is granted.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name) => {
  const v = process.env[name];
  if (!v) { console.error(`missing environment variable ${name}`); process.exit(2); }
  return v;
};
const port = Number(env('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(env('OIDC_ACCOUNTS'));

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('OIDC_CLIENT_ID'),
    client_secret: env('OIDC_CLIENT_SECRET'),
    redirect_uris: [env('OIDC_REDIRECT_URI')],
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => (accounts[sub] ? {
    accountId: sub,
    claims: async () => ({ sub, name: sub, preferred_username: sub, groups: [], ...accounts[sub] }),
  } : undefined),
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const oidc = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (!url.pathname.startsWith('/interaction/')) return oidc(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    let result;
    if (details.prompt.name === 'login') {
      const login = url.searchParams.get('login') || Object.keys(accounts)[0];
      if (!accounts[login]) {
        result = { error: 'access_denied', error_description: `no such test account ${login}` };
      } else {
        result = { login: { accountId: login } };
      }
    } else {
      const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  } catch (err) {
    res.statusCode = 400;
    res.end(`interaction failed: ${err.message}`);
  }
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
