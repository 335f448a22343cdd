// npm `jose` as a third-party relying party and signer for
// tests/interop_verifiers.rs.
//
// verify: reads lines "<jwks_url> <token>" on stdin; verifies each with
//         createRemoteJWKSet (one per URL, kept across lines, so its cache and
//         refetch are exercised) and jwtVerify; prints one JSON line per token:
//         {"ok": true, "kid": ..., "claims": {...}} or {"ok": false, "error": ...}
//         The remote set is cached for JOSE_CACHE_MS (default 1000 ms): a
//         verifier must refresh at least as often as the served
//         Cache-Control max-age says (publishAhead / 2). With
//         JOSE_CACHE_MS=default the set is built with jose's own defaults, as
//         an application would (to measure its cache).
// sign <private_jwks.json> <kid>:
//         signs {"sub": "jose", iat, exp: +60s} with that key of the set and
//         prints the compact token.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { SignJWT, createRemoteJWKSet, decodeProtectedHeader, importJWK, jwtVerify } from "jose";

const [mode, ...args] = process.argv.slice(2);

if (mode === "verify") {
  const cache = process.env.JOSE_CACHE_MS ?? "1000";
  const options =
    cache === "default" ? {} : { cacheMaxAge: Number(cache), cooldownDuration: Number(cache) / 2 };
  const sets = new Map();
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const [url, token] = line.trim().split(" ");
    let out;
    try {
      if (!sets.has(url)) {
        sets.set(url, createRemoteJWKSet(new URL(url), options));
      }
      const { payload } = await jwtVerify(token, sets.get(url), { requiredClaims: ["exp"] });
      out = { ok: true, kid: decodeProtectedHeader(token).kid, claims: payload };
    } catch (e) {
      out = { ok: false, error: `${e.code ?? e.name}: ${e.message}` };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  }
} else if (mode === "sign") {
  const [path, kid] = args;
  const jwk = JSON.parse(readFileSync(path, "utf8")).keys.find((k) => k.kid === kid);
  const key = await importJWK(jwk, jwk.alg);
  const token = await new SignJWT({ sub: "jose" })
    .setProtectedHeader({ alg: jwk.alg, kid })
    .setIssuedAt()
    .setExpirationTime("60s")
    .sign(key);
  process.stdout.write(token + "\n");
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
