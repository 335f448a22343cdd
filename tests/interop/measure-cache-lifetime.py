"""Measures how long PyJWT (PyJWKClient) and npm jose (createRemoteJWKSet),
built with their default settings, keep trusting a key after the operator
revoked it, when every token they see carries a kid they know (so no
unknown-kid refetch). Takes about ten minutes (jose's default lifetime); the
seconds-long checks are in tests/interop_verifiers.rs.

    tests/interop/install-verifiers.sh          # once
    cargo build                                 # target/debug/jwks-operator
    $HOME/.cache/jwks-operator/venv/bin/python tests/interop/measure-cache-lifetime.py \
        [target/debug/jwks-operator]

Prints one line per library: how long after the revocation was served the
revoked key's token was still accepted, and when it was first refused (the
library's own refresh). The numbers are in docs/verifier-caches.md.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../target/debug/jwks-operator")
POLL = 5.0
LIMIT = 900.0

SPEC = """apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: lifetime
spec:
  algorithm: ES256
  rotationInterval: 8s
  publishAhead: 2s
  maxTokenTTL: 20m
  clockSkew: 1s
  tokenEndpoint: {enabled: true}
"""


def http(url, body=None):
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def start_operator(work):
    policies = os.path.join(work, "policies")
    os.makedirs(policies)
    with open(os.path.join(policies, "p.yaml"), "w") as f:
        f.write(SPEC)
    proc = subprocess.Popen(
        [BIN, "standalone", "--policies", policies, "--state-dir", os.path.join(work, "state"),
         "--jwks-addr", "127.0.0.1:0", "--token-addr", "127.0.0.1:0", "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RUST_LOG": "info"},
    )
    addrs = {}
    for line in proc.stderr:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "JWKS listener started":
            addrs["jwks"] = entry["addr"]
        if entry.get("message") == "token listener started":
            addrs["token"] = entry["addr"]
        if entry.get("message") == "standalone mode ready":
            break
    # Keep draining the log so the operator never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, policies, addrs


class Verifier:
    def __init__(self, name, cmd, cwd, env):
        self.name = name
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, **env})

    def check(self, url, token):
        self.proc.stdin.write(f"{url} {token}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.kill()
        self.proc.wait()


def main():
    venv_python = sys.executable
    work = tempfile.mkdtemp()
    op, policies, addrs = start_operator(work)
    verifiers = []
    try:
        p = "default/lifetime"
        url = f"http://{addrs['jwks']}/{p}/.well-known/jwks.json"
        summary = lambda: next(s for s in http(f"http://{addrs['jwks']}/policies")
                               if s["name"] == "lifetime")
        mint = lambda: http(f"http://{addrs['token']}/{p}/token", json.dumps({"sub": "m"}).encode())
        first = mint()
        while summary()["activeKeyID"] == first["kid"]:
            time.sleep(0.5)
        current = mint()
        verifiers = [
            Verifier("PyJWT", [venv_python, os.path.join(HERE, "python/jwt_interop.py"), "verify"],
                     None, {"PYJWT_LIFESPAN": "default"}),
            Verifier("jose", ["node", "jwt_interop.mjs", "verify"], os.path.join(HERE, "jose"),
                     {"JOSE_CACHE_MS": "default"}),
        ]
        fetched = {}
        for v in verifiers:
            assert v.check(url, first["token"])["ok"], v.name
            assert v.check(url, current["token"])["ok"], v.name
            fetched[v.name] = time.monotonic()
        # Revoke the retired first key (no rotateOnRevoke: no new kid).
        with open(os.path.join(policies, "p.yaml"), "a") as f:
            f.write(f"  revokedKeyIDs: [{first['kid']}]\n")
        op.send_signal(signal.SIGHUP)
        while first["kid"] in [k["kid"] for k in http(url)["keys"]]:
            time.sleep(0.2)
        served = time.monotonic()
        print(f"revocation served; max-age is 1 s; polling every {POLL:.0f} s", flush=True)
        pending = {v.name: v for v in verifiers}
        while pending and time.monotonic() - served < LIMIT:
            for name, v in list(pending.items()):
                # A token with a known kid keeps the cache as it is.
                assert v.check(url, current["token"])["ok"], name
                verdict = v.check(url, first["token"])
                if not verdict["ok"]:
                    print(f"{name}: trusted the revoked key until {time.monotonic() - served:.0f} s "
                          f"after the revocation was served ({time.monotonic() - fetched[name]:.0f} s "
                          f"after its last fetch): {verdict['error']}", flush=True)
                    del pending[name]
            time.sleep(POLL)
        for name in pending:
            print(f"{name}: still trusts the revoked key {LIMIT:.0f} s after the revocation", flush=True)
    finally:
        for v in verifiers:
            v.close()
        op.terminate()
        op.wait()


if __name__ == "__main__":
    main()
