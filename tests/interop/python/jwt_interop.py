"""PyJWT as a third-party relying party and signer for tests/interop_verifiers.rs.

verify:  reads lines "<jwks_url> <token>" on stdin; for each, finds the
         signing key with PyJWKClient (one client per URL, kept across lines,
         so its JWK Set cache and its refresh on an unknown kid are exercised)
         and verifies the token (signature with the key's algorithm only,
         exp, nbf, iat). Prints one JSON line per token:
         {"ok": true, "kid": ..., "claims": {...}} or {"ok": false, "error": ...}
         The client keeps a set for PYJWT_LIFESPAN seconds (default 1); with
         PYJWT_LIFESPAN=default it is built with PyJWT's own defaults, as an
         application would (to measure its cache, tests/interop_verifiers.rs).
sign <private_jwks.json> <kid>:
         signs {"sub": "pyjwt", "iat", "exp": +60s} with that key of the set
         (our state directory's jwks.json) and prints the compact token.
"""

import json
import os
import sys
import time

import jwt


def verify() -> None:
    clients = {}
    lifespan = os.environ.get("PYJWT_LIFESPAN", "1")
    if lifespan == "default":
        options = {}
    else:
        options = {"lifespan": float(lifespan), "cooldown_duration": float(lifespan) / 2}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        url, token = line.split(" ", 1)
        try:
            if url not in clients:
                clients[url] = jwt.PyJWKClient(url, **options)
            client = clients[url]
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                options={"verify_aud": False, "require": ["exp"]},
            )
            out = {"ok": True, "kid": key.key_id, "claims": claims}
        except Exception as e:  # report every failure as a line
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


def sign(path: str, kid: str) -> None:
    with open(path) as f:
        keys = json.load(f)["keys"]
    jwk = next(k for k in keys if k["kid"] == kid)
    key = jwt.PyJWK(jwk)
    now = int(time.time())
    token = jwt.encode(
        {"sub": "pyjwt", "iat": now, "exp": now + 60},
        key.key,
        algorithm=jwk["alg"],
        headers={"kid": kid},
    )
    print(token)


if __name__ == "__main__":
    if sys.argv[1] == "verify":
        verify()
    elif sys.argv[1] == "sign":
        sign(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
