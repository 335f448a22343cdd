// Interop checks run by tests/node_jose.rs.
//
//   node interop.js check <jwks.json> <tokens.json>
//     Loads our private JWK Set with JWK.asKeyStore, verifies each token in
//     tokens.json ([{kid, alg, token}]) restricted to its algorithm, and signs
//     one token per key for the Rust side to verify. Prints a JSON report.
//
//   node interop.js load <jwks.json>
//     Only loads the set; prints {"ok": true, "kids": [...]} or
//     {"ok": false, "error": "..."}.
"use strict";

const fs = require("fs");
const jose = require("node-jose");

async function load(path) {
  const doc = JSON.parse(fs.readFileSync(path, "utf8"));
  return jose.JWK.asKeyStore(doc);
}

async function check(jwksPath, tokensPath) {
  const keystore = await load(jwksPath);
  const keys = keystore.all();
  const report = {
    kids: keys.map((k) => k.kid),
    keys: Object.fromEntries(keys.map((k) => [k.kid, k.toJSON(true)])),
    verified: [],
    signed: [],
  };

  const tokens = JSON.parse(fs.readFileSync(tokensPath, "utf8"));
  for (const t of tokens) {
    try {
      const result = await jose.JWS.createVerify(keystore, {
        algorithms: [t.alg],
      }).verify(t.token);
      report.verified.push({
        kid: t.kid,
        ok: true,
        keyKid: result.key.kid,
        header: result.header,
        claims: JSON.parse(result.payload.toString("utf8")),
      });
    } catch (e) {
      report.verified.push({ kid: t.kid, ok: false, error: String(e && e.message) });
    }
  }

  for (const key of keys) {
    const alg = key.alg;
    const claims = { iss: "node-jose", sub: "interop", iat: 1750000000, exp: 1750003600 };
    const token = await jose.JWS.createSign(
      { format: "compact", fields: { alg, kid: key.kid, typ: "JWT" } },
      key,
    )
      .update(JSON.stringify(claims))
      .final();
    report.signed.push({ kid: key.kid, alg, token });
  }
  return report;
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  let out;
  if (mode === "check") {
    out = await check(args[0], args[1]);
  } else if (mode === "load") {
    try {
      const ks = await load(args[0]);
      out = { ok: true, kids: ks.all().map((k) => k.kid) };
    } catch (e) {
      out = { ok: false, error: String(e && e.message) };
    }
  } else {
    throw new Error("usage: interop.js check <jwks.json> <tokens.json> | load <jwks.json>");
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + "\n");
  process.exit(1);
});
