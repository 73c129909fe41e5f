// A real OpenID Provider for primage's tests: panva's oidc-provider (OpenID-certified), configured
// to look like EGI Check-in (Keycloak route layout under /auth/realms/egi, eduperson_entitlement and
// voperson_id claims, device flow, introspection, revocation, refresh tokens).
//
// Environment:
//   IDP_PORT        port to listen on (127.0.0.1)
//   IDP_KEYS        file with the private JWK set to sign with (the tests forge tokens with it)
//   IDP_ACCOUNTS    file with {"<login>": {"entitlements": [...], "name": ...}}; re-read on every
//                   claim lookup, so a test changes group membership "at the provider" by
//                   rewriting it, as an administrator of the VO would.
//   IDP_REDIRECTS   comma-separated redirect URIs allowed for the web client
//   IDP_AUDIENCE    the audience (resource) of JWT access tokens, default urn:primage:api
//   IDP_TTL         access-token lifetime in seconds, default 300
//
// Clients: "primage-web" (confidential, code + PKCE, JWT access tokens), "primage-cli" (public,
// device flow and refresh, JWT access tokens), "primage-opaque" (confidential, opaque access
// tokens, for the introspection path). The platform's own introspection uses primage-web.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const PORT = Number(process.env.IDP_PORT);
const PREFIX = '/auth/realms/egi';
const ISSUER = `http://127.0.0.1:${PORT}${PREFIX}`;
const AUDIENCE = process.env.IDP_AUDIENCE || 'urn:primage:api';
const TTL = Number(process.env.IDP_TTL || 300);
const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'eduperson_entitlement', 'voperson_id'];

function account(id) {
  const accounts = JSON.parse(readFileSync(process.env.IDP_ACCOUNTS, 'utf8'));
  return accounts[id];
}

function claimsOf(id) {
  const entry = account(id) || {};
  return {
    sub: id,
    preferred_username: id,
    name: entry.name || id,
    email: `${id}@example.org`,
    voperson_id: `${id}@egi.eu`,
    eduperson_entitlement: entry.entitlements || [],
  };
}

const keys = JSON.parse(readFileSync(process.env.IDP_KEYS, 'utf8'));
const redirects = (process.env.IDP_REDIRECTS || 'http://127.0.0.1/callback').split(',');
const grants = ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'];

const provider = new Provider(ISSUER, {
  jwks: keys,
  clients: [
    { client_id: 'primage-web', client_secret: 'web-secret', redirect_uris: redirects,
      grant_types: grants, response_types: ['code'] },
    { client_id: 'primage-cli', token_endpoint_auth_method: 'none', redirect_uris: [],
      grant_types: ['refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: [] },
    { client_id: 'primage-opaque', client_secret: 'opaque-secret', redirect_uris: redirects,
      grant_types: grants, response_types: ['code'] },
  ],
  scopes: SCOPES,
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    eduperson_entitlement: ['eduperson_entitlement'],
    voperson_id: ['voperson_id'],
  },
  routes: {
    authorization: '/protocol/openid-connect/auth',
    token: '/protocol/openid-connect/token',
    userinfo: '/protocol/openid-connect/userinfo',
    jwks: '/protocol/openid-connect/certs',
    introspection: '/protocol/openid-connect/token/introspect',
    revocation: '/protocol/openid-connect/revoke',
    device_authorization: '/protocol/openid-connect/auth/device',
    end_session: '/protocol/openid-connect/logout',
    code_verification: '/device',
  },
  ttl: { AccessToken: TTL, DeviceCode: 600, RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400 },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) => (client.clientId === 'primage-opaque' ? undefined : AUDIENCE),
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPES.join(' '),
        audience: AUDIENCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: TTL,
      }),
    },
  },
  // Like Check-in (Keycloak), refresh tokens come with every login, offline_access or not.
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  // JWT access tokens carry the identity claims (a resource-server token cannot be used at the
  // userinfo endpoint); opaque tokens are checked by introspection and userinfo instead.
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
    const { voperson_id, eduperson_entitlement } = claimsOf(token.accountId);
    return { voperson_id, eduperson_entitlement };
  },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return claimsOf(id); } };
  },
  async loadExistingGrant(ctx) {
    // Consent is implied (as in Check-in for registered services): every requested scope and
    // claim is granted, so the tests need only the login step.
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(SCOPES.join(' '));
    grant.addOIDCClaims(['eduperson_entitlement', 'voperson_id']);
    grant.addResourceScope(AUDIENCE, SCOPES.join(' '));
    await grant.save();
    return grant;
  },
});
provider.proxy = false;

const callback = provider.callback();
http.createServer((req, res) => {
  if (!req.url.startsWith(PREFIX)) {
    res.writeHead(404).end();
    return;
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(PREFIX.length) || '/';
  callback(req, res);
}).listen(PORT, '127.0.0.1', () => console.log(`listening ${ISSUER}`));
