// The OpenID Connect provider of `make demo-oauth` and of the OAuth tests: oidc-provider
// (npm), a certified OpenID provider nobody in this project wrote, on 127.0.0.1 with short
// lifetimes. demo/idp/servers.py starts it (IdentityProvider).
//
//   node demo/idp/provider.mjs            (settings from the environment, see below)
//
// It listens on 127.0.0.1 (IDP_PORT, or an ephemeral port) and prints one JSON line on
// stdout, {"issuer": "http://127.0.0.1:PORT", "listen": "http://127.0.0.1:PORT"}, once it
// accepts connections (the two differ when IDP_ISSUER names a proxy in front of it).
//
// Clients (the protected API is a client too: it introspects the tokens it receives):
//   notebook  public; device code, authorization code + PKCE (loopback redirect,
//             any port: a native client per RFC 8252), refresh tokens (rotating)
//   robot     confidential (client_secret_basic / client_secret_post); client credentials
//   api       confidential; may only introspect
//
// A person's part (sign-in, consent, device approval) goes through the provider's
// own development pages (devInteractions): any login name, any password.
//
// Environment: IDP_PORT, IDP_ACCESS_TTL, IDP_REFRESH_TTL, IDP_DEVICE_TTL (seconds),
// IDP_DEVICE_INTERVAL (the polling interval the device endpoint announces),
// IDP_SLOW_DOWN (answer the first N device polls with slow_down), IDP_CLIENT_SECRET,
// IDP_API_SECRET, IDP_ISSUER.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name, fallback) => process.env[name] ?? fallback;
const seconds = (name, fallback) => Number.parseInt(env(name, String(fallback)), 10);

const accessTtl = seconds('IDP_ACCESS_TTL', 60);
const refreshTtl = seconds('IDP_REFRESH_TTL', 3600);
const deviceTtl = seconds('IDP_DEVICE_TTL', 120);
const interval = seconds('IDP_DEVICE_INTERVAL', 1);
let slowDowns = seconds('IDP_SLOW_DOWN', 0);

const server = http.createServer();
const port = Number.parseInt(env('IDP_PORT', '0'), 10);
await new Promise((resolve) => { server.listen(port, '127.0.0.1', resolve); });
const listen = `http://127.0.0.1:${server.address().port}`;
// IDP_ISSUER: the public address when a recording proxy stands in front of the provider.
const issuer = env('IDP_ISSUER', listen);

const configuration = {
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  clients: [
    {
      client_id: 'notebook',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
    },
    {
      client_id: 'robot',
      client_secret: env('IDP_CLIENT_SECRET', 'robot-secret-for-tests'),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'read write',
    },
    {
      client_id: 'api',
      client_secret: env('IDP_API_SECRET', 'api-secret-for-tests'),
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: `Test user ${id}` };
      },
    };
  },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
  conformIdTokenClaims: false, // the user's name in the ID token, not only at userinfo
  scopes: ['openid', 'offline_access', 'profile', 'read', 'write'],
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  // Every grant of the notebook client gets a refresh token, which rotates on each use.
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: accessTtl,
    ClientCredentials: accessTtl,
    RefreshToken: refreshTtl,
    DeviceCode: deviceTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
};

const provider = new Provider(issuer, configuration);

// RFC 8628 §3.2 "interval" and §3.5 "slow_down": oidc-provider announces no interval
// (clients then wait 5 s) and never answers slow_down; real providers do both.
provider.use(async (ctx, next) => {
  await next();
  const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : null;
  if (ctx.path === '/device/auth' && ctx.status === 200 && body) {
    body.interval = interval;
  }
  if (ctx.path === '/token' && body?.error === 'authorization_pending' && slowDowns > 0) {
    slowDowns -= 1;
    body.error = 'slow_down';
    body.error_description = 'polling too quickly: wait 5 s longer between polls';
  }
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer, listen })}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
