// A verifier pointed at a published copy (tests/publication.rs): one token
// per stdin line, answers "ok <kid>" or "err <message>" per line.
// createRemoteJWKSet with a cache shorter than the policy's publishAhead and
// a cooldown longer than the test: it never refetches on an unknown kid, so
// success means the key was in the copy before it signed.
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from "jose";
import * as readline from "node:readline";

const url = new URL(process.argv[2]);
const cacheMaxAge = Number(process.argv[3]);
const jwks = createRemoteJWKSet(url, { cacheMaxAge, cooldownDuration: 600000 });
const rl = readline.createInterface({ input: process.stdin });
for await (const token of rl) {
  try {
    const { kid } = decodeProtectedHeader(token);
    await jwtVerify(token, jwks);
    console.log(`ok ${kid}`);
  } catch (e) {
    console.log(`err ${e.code ?? ""} ${e.message}`.replace(/\n/g, " "));
  }
}
