#!/usr/bin/env bash
# Smoke test / reference launcher for the control plane built by build.sh:
# starts etcd, kube-apiserver and kube-controller-manager on free 127.0.0.1
# ports with the exact flag set the Rust test harness should use, checks
# /readyz, kubectl, namespace deletion and ownerReference garbage collection,
# then stops everything it started.
#
# Usage: tests/controlplane/smoke.sh [BIN_DIR]   (default: runs build.sh)
#   JWKS_CP_KEEP=1  leave the work dir (certs, logs) behind
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:-$("$HERE/build.sh")}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jwks-cp-smoke.XXXXXX")
PIDS=()

log() { printf '[smoke] %s\n' "$*" >&2; }
cleanup() {
  local rc=$?
  # Stop in reverse start order (controller-manager, apiserver, etcd), each
  # waited for: killing etcd under a running apiserver makes the apiserver's
  # graceful shutdown hang ~30s on etcd retries.
  local i t
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    t=$SECONDS
    kill "${PIDS[i]}" 2>/dev/null || continue
    wait "${PIDS[i]}" 2>/dev/null || true
    log "stopped pid ${PIDS[i]} in $((SECONDS - t))s"
  done
  if [[ "${JWKS_CP_KEEP:-0}" == 1 || $rc -ne 0 ]]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT INT TERM
fail() { log "FAIL: $*"; for f in "$WORK"/*.log; do log "---- tail $f"; tail -n 30 "$f" >&2; done; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port); API_PORT=$(free_port)
API=https://127.0.0.1:$API_PORT
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

# ---- credentials ------------------------------------------------------------
cd "$WORK"
# A CA plus a leaf serving cert: rustls/webpki reject a self-signed CA cert
# used directly as the server cert, so give clients ca.crt to trust.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=jwks-test-ca \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
  -keyout apiserver.key -out apiserver.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >san.ext
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -days 2 -extfile san.ext -out apiserver.crt 2>/dev/null
# Service-account token signing key pair.
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
# Static token file: token,user,uid,"group1,group2"
printf '%s,admin,admin-uid,"system:masters"\n' "$TOKEN" >tokens.csv
cat >kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: $API
    certificate-authority: $WORK/ca.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF

# ---- etcd -------------------------------------------------------------------
t0=$(date +%s.%N)
"$BIN/etcd" \
  --name=test \
  --data-dir="$WORK/etcd-data" \
  --listen-client-urls=http://127.0.0.1:$ETCD_PORT \
  --advertise-client-urls=http://127.0.0.1:$ETCD_PORT \
  --listen-peer-urls=http://127.0.0.1:$ETCD_PEER_PORT \
  --initial-advertise-peer-urls=http://127.0.0.1:$ETCD_PEER_PORT \
  --initial-cluster=test=http://127.0.0.1:$ETCD_PEER_PORT \
  --unsafe-no-fsync=true \
  --log-level=warn \
  >etcd.log 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' && break
  kill -0 "${PIDS[0]}" 2>/dev/null || fail "etcd exited"
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"' || fail "etcd not healthy"
log "etcd healthy on :$ETCD_PORT after $(python3 -c "print(round($(date +%s.%N)-$t0,2))")s"

# ---- kube-apiserver ---------------------------------------------------------
t0=$(date +%s.%N)
"$BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:$ETCD_PORT \
  --bind-address=127.0.0.1 \
  --secure-port=$API_PORT \
  --tls-cert-file="$WORK/apiserver.crt" \
  --tls-private-key-file="$WORK/apiserver.key" \
  --cert-dir="$WORK/cert-dir" \
  --token-auth-file="$WORK/tokens.csv" \
  --authorization-mode=RBAC \
  --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true \
  --disable-admission-plugins=ServiceAccount \
  --service-account-issuer=$API \
  --service-account-key-file="$WORK/sa.pub" \
  --service-account-signing-key-file="$WORK/sa.key" \
  >apiserver.log 2>&1 &
PIDS+=($!)
ready=
for _ in $(seq 1 600); do
  code=$(curl -sk -o /dev/null -w '%{http_code}' "$API/readyz" || true)
  [[ "$code" == 200 ]] && { ready=1; break; }
  kill -0 "${PIDS[1]}" 2>/dev/null || fail "kube-apiserver exited"
  sleep 0.1
done
[[ -n "$ready" ]] || fail "kube-apiserver /readyz not 200 within 60s"
READY_S=$(python3 -c "print(round($(date +%s.%N)-$t0,2))")
log "kube-apiserver /readyz 200 on :$API_PORT after ${READY_S}s"
curl -fsS --cacert ca.crt -H "Authorization: Bearer $TOKEN" "$API/version" >&2 || fail "GET /version with CA + token"
echo >&2

KC=("$BIN/kubectl" --kubeconfig="$WORK/kubeconfig")
"$BIN/kubectl" --server="$API" --token="$TOKEN" --insecure-skip-tls-verify get ns >&2 \
  || fail "kubectl get ns"
"${KC[@]}" auth can-i '*' '*' >/dev/null || fail "admin token is not cluster-admin"

# ---- kube-controller-manager ------------------------------------------------
"$BIN/kube-controller-manager" \
  --kubeconfig="$WORK/kubeconfig" \
  --controllers=garbage-collector-controller,namespace-controller \
  --leader-elect=false \
  --secure-port=0 \
  >controller-manager.log 2>&1 &
PIDS+=($!)

# namespace deletion needs the namespace controller
"${KC[@]}" create ns smoke-ns >/dev/null
# ownerReference GC needs the garbage collector
"${KC[@]}" -n smoke-ns create configmap owner >/dev/null
OWNER_UID=$("${KC[@]}" -n smoke-ns get configmap owner -o jsonpath='{.metadata.uid}')
"${KC[@]}" -n smoke-ns apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: dependent
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: $OWNER_UID}
EOF
sleep 2
kill -0 "${PIDS[2]}" 2>/dev/null || fail "kube-controller-manager exited"
"${KC[@]}" -n smoke-ns delete configmap owner >/dev/null
t1=$SECONDS
until ! "${KC[@]}" -n smoke-ns get configmap dependent >/dev/null 2>&1; do
  (( SECONDS - t1 < 90 )) || fail "dependent configmap not garbage-collected in 90s"
  sleep 1
done
log "ownerReference GC: dependent deleted $((SECONDS - t1))s after its owner"
"${KC[@]}" delete ns smoke-ns --wait=true --timeout=90s >/dev/null || fail "namespace deletion"
log "namespace smoke-ns deleted"
kill -0 "${PIDS[2]}" 2>/dev/null || fail "kube-controller-manager exited"
kill -0 "${PIDS[1]}" 2>/dev/null || fail "kube-apiserver exited"
log "OK (apiserver ready in ${READY_S}s)"
