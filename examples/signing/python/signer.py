"""Signs JWTs with the key jwks-operator keeps for a policy: the files
active.pem and active.kid of its Secret, mounted as a volume (or of a
standalone state directory, which holds the same files). The files are
re-read every RELOAD_INTERVAL seconds; a new key is used as soon as it
appears. Uses PyJWT with `cryptography` (pip install 'pyjwt[crypto]').

Run:  KEY_DIR=/var/run/jwks ALG=ES256 ISSUER=https://my-app.example.com \\
        AUDIENCE=my-app python3 signer.py
Each line read on standard input is a subject; a token for it is written to
standard output.
"""

import base64
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(public_key) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of public_key."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        size = (public_key.curve.key_size + 7) // 8
        n = public_key.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public_key.curve.name]
        members = {"crv": crv, "kty": "EC",
                   "x": b64(n.x.to_bytes(size, "big")), "y": b64(n.y.to_bytes(size, "big"))}
    elif isinstance(public_key, rsa.RSAPublicKey):
        n = public_key.public_numbers()
        members = {"e": b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big")), "kty": "RSA",
                   "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big"))}
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        members = {"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}
    else:
        raise ValueError(f"unsupported key type {type(public_key).__name__}")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64(hashlib.sha256(canonical.encode()).digest())


class Signer:
    """Holds the active key and swaps it when the files change."""

    def __init__(self, key_dir: str, alg: str):
        self.dir = Path(key_dir)
        self.alg = alg
        self._lock = threading.Lock()
        self.key = None
        self.kid = None
        self.reload()

    def reload(self) -> bool:
        """Reads active.kid and active.pem; True when they hold a new key.

        The pair is taken only when the kid is the key's RFC 7638 thumbprint
        (which jwks-operator's kids are), so a read in the middle of an update
        keeps the previous key instead of signing under a wrong kid.
        """
        kid = (self.dir / "active.kid").read_text().strip()
        key = load_pem_private_key((self.dir / "active.pem").read_bytes(), password=None)
        found = thumbprint(key.public_key())
        if found != kid:
            raise ValueError(f"active.kid ({kid}) and active.pem ({found}) differ: read during an update")
        with self._lock:
            changed = kid != self.kid
            self.key, self.kid = key, kid
        return changed

    def watch(self, every: float) -> None:
        """Calls reload every `every` seconds, in a daemon thread."""
        def loop():
            while True:
                time.sleep(every)
                try:
                    if self.reload():
                        print(f"python-signer: signing with key {self.kid}", file=sys.stderr)
                except Exception as e:  # keep signing with the key we have
                    print(f"python-signer: keeping key {self.kid}: {e}", file=sys.stderr)
        threading.Thread(target=loop, daemon=True).start()

    def sign(self, claims: dict) -> str:
        with self._lock:
            key, kid = self.key, self.kid
        return jwt.encode(claims, key, algorithm=self.alg, headers={"kid": kid, "typ": "JWT"})


def main() -> None:
    signer = Signer(os.environ.get("KEY_DIR", "/var/run/jwks"), os.environ.get("ALG", "ES256"))
    print(f"python-signer: signing with key {signer.kid}", file=sys.stderr)
    signer.watch(float(os.environ.get("RELOAD_INTERVAL", "10")))
    ttl = int(os.environ.get("TTL_SECONDS", "600"))
    for line in sys.stdin:
        now = int(time.time())
        token = signer.sign({
            "iss": os.environ.get("ISSUER", ""),
            "aud": os.environ.get("AUDIENCE", ""),
            "sub": line.strip(),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        })
        print(token, flush=True)


if __name__ == "__main__":
    main()
