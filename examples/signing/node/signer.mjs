// Signs JWTs with the key jwks-operator keeps for a policy: the files
// active.pem and active.kid of its Secret, mounted as a volume (or of a
// standalone state directory, which holds the same files). The files are
// re-read every RELOAD_INTERVAL milliseconds; a new key is used as soon as it
// appears. Only Node.js's own crypto module is used (Node.js >= 20).
//
// Run:   KEY_DIR=/var/run/jwks ALG=ES256 ISSUER=https://my-app.example.com \
//          AUDIENCE=my-app node signer.mjs
// Each line read on standard input is a subject; a token for it is written
// to standard output.
import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const b64 = (buf) => Buffer.from(buf).toString('base64url');

// The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key.
function thumbprint(publicKey) {
  const jwk = publicKey.export({ format: 'jwk' });
  const members = {
    EC: ['crv', 'kty', 'x', 'y'],
    RSA: ['e', 'kty', 'n'],
    OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  if (!members) throw new Error(`unsupported key type ${jwk.kty}`);
  const canonical = JSON.stringify(Object.fromEntries(members.map((m) => [m, jwk[m]])));
  return b64(createHash('sha256').update(canonical).digest());
}

// How each JWS algorithm signs with node:crypto.
const ALGORITHMS = {
  ES256: { hash: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  ES384: { hash: 'sha384', options: { dsaEncoding: 'ieee-p1363' } },
  RS256: { hash: 'sha256', options: {} },
  EdDSA: { hash: null, options: {} },
};

export class Signer {
  constructor(dir, alg) {
    if (!ALGORITHMS[alg]) throw new Error(`unsupported alg ${alg}`);
    this.dir = dir;
    this.alg = alg;
    this.key = null;
    this.kid = null;
    this.reload();
  }

  // Reads active.kid and active.pem; true when they hold a new key. The
  // pair is taken only when the kid is the key's RFC 7638 thumbprint (which
  // jwks-operator's kids are), so a read in the middle of an update keeps
  // the previous key instead of signing under a wrong kid.
  reload() {
    const kid = readFileSync(join(this.dir, 'active.kid'), 'utf8').trim();
    const key = createPrivateKey(readFileSync(join(this.dir, 'active.pem')));
    const found = thumbprint(createPublicKey(key));
    if (found !== kid) {
      throw new Error(`active.kid (${kid}) and active.pem (${found}) differ: read during an update`);
    }
    const changed = kid !== this.kid;
    this.key = key;
    this.kid = kid;
    return changed;
  }

  // Calls reload every `everyMs` milliseconds; keeps the current key on errors.
  watch(everyMs) {
    setInterval(() => {
      try {
        if (this.reload()) console.error(`node-signer: signing with key ${this.kid}`);
      } catch (e) {
        console.error(`node-signer: keeping key ${this.kid}: ${e.message}`);
      }
    }, everyMs).unref();
  }

  sign(claims) {
    const header = { alg: this.alg, kid: this.kid, typ: 'JWT' };
    const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
    const { hash, options } = ALGORITHMS[this.alg];
    const signature = sign(hash, Buffer.from(input), { key: this.key, ...options });
    return `${input}.${b64(signature)}`;
  }
}

const env = process.env;
const signer = new Signer(env.KEY_DIR ?? '/var/run/jwks', env.ALG ?? 'ES256');
console.error(`node-signer: signing with key ${signer.kid}`);
signer.watch(Number(env.RELOAD_INTERVAL ?? 10000));
const ttl = Number(env.TTL_SECONDS ?? 600);
for await (const line of createInterface({ input: process.stdin })) {
  const now = Math.floor(Date.now() / 1000);
  const token = signer.sign({
    iss: env.ISSUER ?? '',
    aud: env.AUDIENCE ?? '',
    sub: line.trim(),
    iat: now,
    nbf: now,
    exp: now + ttl,
  });
  process.stdout.write(`${token}\n`);
}
