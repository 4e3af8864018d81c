// The OpenID Connect provider that airlock-testkit starts for tests: the real npm package
// `oidc-provider` (pinned in package.json), configured like a JumpCloud OIDC application.
//
//   node server.mjs serve CONFIG.json             serves until killed; prints a ready line
//   node server.mjs rotate-keys CONFIG.json keep  puts new signing keys first in the key file,
//   node server.mjs rotate-keys CONFIG.json drop  keeping the old ones after them, or not
//
// CONFIG.json is written by the Rust side (crates/airlock-testkit/src/oidc.rs): the port, the
// issuer, the users, the one confidential client, the resource server (audience, resource
// indicator, token format), the token lifetimes and the cookie signing keys. The private signing
// keys live in `keys.json` next to it, created on the first `serve` (an RS256 key, plus an ES256
// key when asked for). Before the ready line the server reads its own discovery document and
// JWKS back over HTTP and writes them, as served, to `discovery.json` and `jwks.json`, so the
// Rust side can hand them to tests without a request of its own.
//
// Like JumpCloud: the issuer is `http://127.0.0.1:PORT/` (trailing slash, as
// `https://oauth.id.jumpcloud.com/`), there is no consent screen (the client is first party), ID
// tokens are RS256 and carry the scope claims (`email`, `name`, `preferred_username`) and the
// group attribute (`groups` by default, a list or a single string as configured per user)
// themselves, not only at userinfo.
//
// Not like JumpCloud: there are no passwords (naming a user on the login page signs in as them),
// and access tokens for the resource are JWTs (JumpCloud's are opaque) that also carry the user's
// email, name, username and groups, so an API can take either token as a bearer token.
//
// What it does not do: persist anything but keys (the memory adapter loses sessions, codes and
// grants on restart), dynamic registration, refresh tokens, logout pages.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

import Provider from 'oidc-provider';

const READY = 'airlock-oidc: ready';

function fail(message) {
  console.error(`airlock-oidc: ${message}`);
  process.exit(1);
}

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    return fail(`cannot read ${path}: ${err.message}`);
  }
}

function writeJsonAtomically(path, value) {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

// A private JWK for signing; the provider computes its `kid` (the RFC 7638 thumbprint).
function newKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig' };
}

function newKeySet(config) {
  return config.es256 ? [newKey('RS256'), newKey('ES256')] : [newKey('RS256')];
}

function keysPath(configPath) {
  return join(dirname(configPath), 'keys.json');
}

function rotateKeys(configPath, mode) {
  if (mode !== 'keep' && mode !== 'drop') {
    fail(`rotate-keys wants "keep" or "drop", got ${JSON.stringify(mode)}`);
  }
  const config = readJson(configPath);
  const path = keysPath(configPath);
  const old = existsSync(path) ? readJson(path).keys : [];
  const keys = mode === 'keep' ? [...newKeySet(config), ...old] : newKeySet(config);
  writeJsonAtomically(path, { keys });
}

function usersByLogin(users) {
  const bySub = new Map(users.map((user) => [user.sub, user]));
  return {
    bySub,
    // A login names a user by sub, else by email (any case), else by username.
    find(login) {
      const wanted = String(login ?? '').trim();
      return bySub.get(wanted)
        ?? users.find((u) => u.email.toLowerCase() === wanted.toLowerCase())
        ?? users.find((u) => u.preferred_username === wanted);
    },
  };
}

// The claims of `user` that both token kinds carry (scope filtering aside).
function userClaims(user, groupsClaim) {
  const claims = {
    sub: user.sub,
    email: user.email,
    email_verified: true,
    name: user.name,
    preferred_username: user.preferred_username,
  };
  if (user.groups !== null && user.groups !== undefined) {
    claims[groupsClaim] = user.groups;
  }
  return claims;
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, clientId, error) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in to ${escapeHtml(clientId)}</h1>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>User (sub, email or username) <input name="login" autofocus></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function serve(configPath) {
  const config = readJson(configPath);
  const path = keysPath(configPath);
  if (!existsSync(path)) {
    writeJsonAtomically(path, { keys: newKeySet(config) });
  }
  const { keys } = readJson(path);
  const users = usersByLogin(config.users);
  const groupsClaim = config.groups_claim;
  const { client } = config;
  const resource = config.resource;

  const provider = new Provider(config.issuer, {
    clients: [{
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys },
    cookies: { keys: config.cookie_keys },
    // Scope -> claims. The group attribute rides on `openid`, as JumpCloud includes it whenever
    // it is mapped; a `groups` scope exists too so clients that ask for it are not refused.
    claims: {
      openid: ['sub', groupsClaim],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: [groupsClaim],
    },
    // With the default (true) an authorization-code ID token would hold only `sub` and the
    // scope claims would be at userinfo alone; JumpCloud puts them in the ID token.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // The client need not send `resource`: its tokens are for the one resource server.
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? resource,
        // The token request need not repeat it either: the code's resource is used.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (indicator !== resource) {
            throw new Provider.errors.InvalidTarget(`unknown resource ${indicator}`);
          }
          return {
            audience: config.audience,
            // No scopes of its own: the token is for the API, which reads the claims.
            scope: '',
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.access_token_ttl,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // The user's claims in JWT access tokens too (not scope-filtered: an API reads them).
    extraTokenClaims: async (_ctx, token) => {
      const user = token.accountId && users.bySub.get(token.accountId);
      if (!user) return undefined;
      const { sub: _sub, ...claims } = userClaims(user, groupsClaim);
      return claims;
    },
    findAccount: async (_ctx, sub) => {
      const user = users.bySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        claims: async () => userClaims(user, groupsClaim),
      };
    },
    // First-party client, no consent screen: the grant is made on the spot with what was asked.
    loadExistingGrant: async (ctx) => {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
      if (grantId) {
        const existing = await oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      if (!oidc.session.accountId) return undefined;
      const grant = new oidc.provider.Grant({
        accountId: oidc.session.accountId,
        clientId: oidc.client.clientId,
      });
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      for (const indicator of Object.keys(oidc.resourceServers)) {
        grant.addResourceScope(indicator, '');
      }
      await grant.save();
      return grant;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: config.access_token_ttl,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: config.id_token_ttl,
      Interaction: 600,
      Session: 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });

  // The login page (the provider's own interaction API, cookies and redirects around it).
  provider.use(async (ctx, next) => {
    const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(ctx.path);
    if (!match) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== match[1]) {
      ctx.status = 400;
      ctx.body = 'interaction mismatch';
      return undefined;
    }
    if (details.prompt.name !== 'login') {
      ctx.status = 500;
      ctx.body = `unexpected prompt ${details.prompt.name}: ${JSON.stringify(details.prompt.details)}`;
      return undefined;
    }
    if (!match[2] && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, details.params.client_id);
      return undefined;
    }
    if (match[2] && ctx.method === 'POST') {
      const form = await readForm(ctx.req);
      const user = users.find(form.get('login'));
      if (!user) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(details.uid, details.params.client_id, `no user ${form.get('login')}`);
        return undefined;
      }
      ctx.respond = false;
      await provider.interactionFinished(
        ctx.req,
        ctx.res,
        { login: { accountId: user.sub } },
        { mergeWithLastSubmission: false },
      );
      return undefined;
    }
    ctx.status = 405;
    return undefined;
  });

  const server = provider.listen(config.port, '127.0.0.1');
  server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${config.port}: ${err.code ?? err.message}`));
  server.on('listening', async () => {
    try {
      const discovery = await (await fetch(new URL('.well-known/openid-configuration', config.issuer))).json();
      if (discovery.issuer !== config.issuer) {
        fail(`discovery says issuer ${discovery.issuer}, want ${config.issuer}`);
      }
      const jwks = await (await fetch(discovery.jwks_uri)).json();
      writeJsonAtomically(join(dirname(configPath), 'discovery.json'), discovery);
      writeJsonAtomically(join(dirname(configPath), 'jwks.json'), jwks);
    } catch (err) {
      fail(`cannot read back discovery and JWKS: ${err.message}`);
    }
    console.log(`${READY} ${config.issuer}`);
  });
}

const [command, configPath, arg] = process.argv.slice(2);
if (!configPath) fail('usage: server.mjs serve|rotate-keys CONFIG.json [keep|drop]');
if (command === 'serve') {
  await serve(configPath);
} else if (command === 'rotate-keys') {
  rotateKeys(configPath, arg);
} else {
  fail(`unknown command ${JSON.stringify(command)}`);
}
