// Regenerates tests/fixtures/node-jose/{keys.json,tokens.json}: a keystore
// made by node-jose itself, as an operator would find it in a Secret to
// adopt, and one token signed by each key.
//
//   node tests/interop/node/generate-fixture.js
//
// Keys: RSA 2048 RS256 (node-jose's default thumbprint kid), EC P-256 with no
// `alg` member (node-jose leaves it out unless asked), EC P-384 ES384, and an
// RSA 2048 PS256 key with a random UUID kid as older node-jose versions made.
"use strict";

const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const jose = require("node-jose");

const out = path.join(__dirname, "..", "..", "fixtures", "node-jose");

async function main() {
  const keystore = jose.JWK.createKeyStore();
  await keystore.generate("RSA", 2048, { alg: "RS256", use: "sig" });
  await keystore.generate("EC", "P-256", { use: "sig" });
  await keystore.generate("EC", "P-384", { alg: "ES384", use: "sig" });
  await keystore.generate("RSA", 2048, { alg: "PS256", use: "sig", kid: crypto.randomUUID() });

  const iat = 1750000000;
  const tokens = [];
  for (const key of keystore.all()) {
    const alg = key.alg || (key.kty === "EC" ? (key.get("crv") === "P-384" ? "ES384" : "ES256") : "RS256");
    const claims = { iss: "https://node-jose.example", sub: "fixture", iat, exp: iat + 3600 };
    const token = await jose.JWS.createSign(
      { format: "compact", fields: { alg, kid: key.kid, typ: "JWT" } },
      key,
    )
      .update(JSON.stringify(claims))
      .final();
    tokens.push({ kid: key.kid, alg, token });
  }

  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, "keys.json"), JSON.stringify(keystore.toJSON(true), null, 2) + "\n");
  fs.writeFileSync(path.join(out, "tokens.json"), JSON.stringify(tokens, null, 2) + "\n");
  console.log(`wrote ${out}/keys.json and tokens.json (${tokens.length} keys)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
