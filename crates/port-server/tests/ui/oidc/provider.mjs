// A real OpenID Provider for portd's single sign-on test: panva's oidc-provider (the
// certified implementation), with its development login and consent pages, one
// confidential client and the accounts the test names. Not a hand-written imitation.
//
// Configuration comes from the environment:
//   OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI  the portd client
//   OIDC_ACCOUNTS  JSON {accountId: {email, email_verified?, name?}}
// It listens on a free loopback port and prints one JSON line to stdout,
// {"issuer": "http://127.0.0.1:PORT"}, once it serves; it exits when stdin closes (the
// test process ended, whatever way it ended).

import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const accounts = JSON.parse(env('OIDC_ACCOUNTS'));

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: env('OIDC_CLIENT_ID'),
        client_secret: env('OIDC_CLIENT_SECRET'),
        redirect_uris: [env('OIDC_REDIRECT_URI')],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // PKCE on every authorization request, so a client that skips it fails here.
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['portd-test-provider-cookie-key'] },
    findAccount: async (_ctx, sub) => {
      const account = accounts[sub];
      if (!account) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...account }) };
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
