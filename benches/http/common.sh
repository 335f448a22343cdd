# Sourced by benches/http/run.sh and benches/http/profile.sh: the tools, the
# bench policies, the wait for a server, and nginx serving our JWKS bytes,
# so the profile is taken of the same setup the ratios are measured on.
# The caller sets TMP (its scratch dir) and uses `set -euo pipefail`.

# bench_tools PACKAGE...: apt-installs wrk, nginx and curl when missing, plus
# each extra Debian PACKAGE whose command (the part after '=', or the
# package name) is missing, e.g. `bench_tools openssl util-linux=taskset`.
# Sets NGINX to nginx's path.
bench_tools() {
    local need=() spec package command
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    for spec in "$@"; do
        package=${spec%%=*}
        command=${spec#*=}
        command -v "$command" >/dev/null 2>&1 || need+=("$package")
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "apt-get install ${need[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# wait_200 URL [seconds]: until URL answers 200 (default 30 s).
wait_200() {
    local url=$1 limit=${2:-30} i
    for i in $(seq $((limit * 20))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] && return 0
        sleep 0.05
    done
    echo "$(basename "$0"): $url did not answer 200 within ${limit}s" >&2
    return 1
}

# bench_policies FILE: examples/policies.yaml (JWKS route
# /default/demo/.well-known/jwks.json) plus bench/rs256 and bench/es256 with
# the token endpoint on.
bench_policies() {
    cp examples/policies.yaml "$1"
    local alg
    for alg in RS256 ES256; do
        cat >> "$1" <<POLICY
---
apiVersion: jwks.dev/v1alpha1
kind: KeyRotationPolicy
metadata:
  name: ${alg,,}
  namespace: bench
spec:
  algorithm: $alg
  tokenEndpoint:
    enabled: true
POLICY
    done
}

# nginx_conf ROOT PORT PATH CACHE_CONTROL: writes $TMP/nginx/nginx.conf for
# nginx serving ROOT/PATH on 127.0.0.1:PORT with our media type and headers,
# at its best for one small static file.
nginx_conf() {
    local root=$1 port=$2 path=$3 cache_control=$4
    mkdir -p "$TMP/nginx/tmp"
    cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    # No open()/fstat() per request.
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    keepalive_requests 100000000;
    client_body_temp_path $TMP/nginx/tmp;
    proxy_temp_path $TMP/nginx/tmp;
    fastcgi_temp_path $TMP/nginx/tmp;
    uwsgi_temp_path $TMP/nginx/tmp;
    scgi_temp_path $TMP/nginx/tmp;
    server {
        listen 127.0.0.1:$port;
        root $root;
        location = $path {
            types { }
            default_type application/jwk-set+json;
            add_header Cache-Control "$cache_control";
            add_header Access-Control-Allow-Origin "*";
        }
    }
}
CONF
}
