// A real OpenID provider (the certified `oidc-provider` package) for witness's OIDC tests.
//
// Usage: node provider.mjs PORT        (PORT 0: let the kernel choose a free one)
//
// Written for oidc-provider 8.x (pinned in crates/testkit/src/oidc.rs), which also runs on
// Node.js 18; the same configuration works with 9.x.
//
// It listens on 127.0.0.1 with issuer http://127.0.0.1:PORT and prints one line
// `ready http://127.0.0.1:PORT` on stdout once it accepts connections. The Rust harness
// (crates/testkit/src/oidc.rs) waits for that line; nothing else is printed on stdout.
//
// Clients (all use the client-credentials grant with `client_secret_post`; the secret is
// "<client>-secret"): a token request with `resource=<audience>` yields a JWT access token for
// that audience, signed with the client's algorithm and carrying its groups and task claims.
//
// Signing keys are generated at start (one RSA, one P-256, one Ed25519), so every run has fresh
// keys. GET /test/counts returns how many requests each path has had, so tests can check how
// often a verifier fetched discovery and JWKS without reading logs.
//
// With WITNESS_CONSOLE_REDIRECT set (a redirect URI), it also has the public client
// `console-client` for the review console's login (authorization code with PKCE), and the
// provider's development login and consent pages: any login name with any password logs in as
// that name; ID tokens carry the groups of PEOPLE below. Without it nothing is interactive.

import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const CLIENTS = {
    // The plain case: RS256, groups as an array, a task claim.
    'agent-client': { alg: 'RS256', groups: ['ai-agents'], task: 'JIRA-42' },
    // A single string instead of an array, no task, an elliptic-curve key.
    'ops-client': { alg: 'ES256', groups: 'dba' },
    // One invalid group name among valid ones (the verifier keeps only valid names), EdDSA.
    'ed-client': { alg: 'EdDSA', groups: ['ai-agents', 'not a group!', 'readers'], task: 'nightly-report' },
    // RSA-PSS with the same RSA key as RS256.
    'pss-client': { alg: 'PS256', groups: [] },
};

// People who log in to the console at the login page, with their groups (see
// CONSOLE_PEOPLE in crates/testkit/src/oidc.rs).
const PEOPLE = { rita: ['platform'], otto: ['ai-agents'] };
const consoleRedirect = process.env.WITNESS_CONSOLE_REDIRECT || '';

const requestedPort = Number(process.argv[2] ?? '0');
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    console.error(`provider.mjs: bad port ${process.argv[2]}`);
    process.exit(2);
}

function jwk(kind, options, kid) {
    const { privateKey } = generateKeyPairSync(kind, options);
    return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

const keys = [
    jwk('rsa', { modulusLength: 2048 }, 'rsa-1'),
    jwk('ec', { namedCurve: 'P-256' }, 'ec-1'),
    jwk('ed25519', {}, 'ed-1'),
];

const counts = {};
const server = createServer();

// Listen first, so that the issuer (which contains the port) is known before the provider is
// built: with port 0 there is no window in which another process could take the port.
server.listen(requestedPort, '127.0.0.1', () => {
    const { port } = server.address();
    const issuer = `http://127.0.0.1:${port}`;

    const provider = new Provider(issuer, {
        clients: [
            ...Object.keys(CLIENTS).map((clientId) => ({
                client_id: clientId,
                client_secret: `${clientId}-secret`,
                grant_types: ['client_credentials'],
                redirect_uris: [],
                response_types: [],
                token_endpoint_auth_method: 'client_secret_post',
                scope: 'db',
            })),
            ...(consoleRedirect
                ? [{
                    client_id: 'console-client',
                    grant_types: ['authorization_code'],
                    response_types: ['code'],
                    redirect_uris: [consoleRedirect],
                    token_endpoint_auth_method: 'none',
                }]
                : []),
        ],
        jwks: { keys },
        scopes: ['db', 'openid', 'groups'],
        claims: { openid: ['sub'], groups: ['groups'] },
        // The console reads the groups from the ID token itself (it never calls userinfo).
        conformIdTokenClaims: false,
        findAccount: (_ctx, sub) => ({
            accountId: sub,
            claims: () => ({ sub, groups: PEOPLE[sub] ?? [] }),
        }),
        // Only to keep the provider from warning: no flow here uses cookies.
        cookies: { keys: ['witness-test-only'] },
        features: {
            devInteractions: { enabled: Boolean(consoleRedirect) },
            clientCredentials: { enabled: true },
            resourceIndicators: {
                enabled: true,
                // Any absolute URI is an audience; its tokens are JWTs signed with the client's
                // algorithm.
                getResourceServerInfo: (_ctx, resourceIndicator, client) => ({
                    scope: 'db',
                    audience: resourceIndicator,
                    accessTokenFormat: 'jwt',
                    accessTokenTTL: 300,
                    jwt: { sign: { alg: CLIENTS[client.clientId].alg } },
                }),
            },
        },
        extraTokenClaims: (_ctx, token) => {
            const { groups, task } = CLIENTS[token.clientId] ?? {};
            return { groups, task };
        },
    });

    const callback = provider.callback();
    server.on('request', (req, res) => {
        const path = new URL(req.url, issuer).pathname;
        if (path === '/test/counts') {
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify(counts));
            return;
        }
        counts[path] = (counts[path] ?? 0) + 1;
        callback(req, res);
    });

    // Errors the provider handles itself (bad client secret, ...) are expected in tests; print
    // them on stderr for debugging, never on stdout.
    provider.on('server_error', (_ctx, error) => console.error('server_error', error));

    console.log(`ready ${issuer}`);
});

server.on('error', (error) => {
    console.error(`provider.mjs: ${error.message}`);
    process.exit(1);
});

// The harness closes our stdin when it is done (and kills us anyway); exiting on EOF means a
// crashed test process never leaves a provider running.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
