"""A verifier pointed at a published copy (tests/publication.rs): one token
per stdin line, answers "ok <kid>" or "err <message>" per line, with PyJWT's
PyJWKClient fetching the copy's public URL."""
import sys

import jwt

url = sys.argv[1]
client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=float(sys.argv[2]))
for line in sys.stdin:
    token = line.strip()
    try:
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["ES256"], options={"verify_aud": False})
        print("ok", key.key_id, flush=True)
    except Exception as e:  # every failure is an answer, the loop goes on
        print("err", type(e).__name__, str(e).replace("\n", " "), flush=True)
