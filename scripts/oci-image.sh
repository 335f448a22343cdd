#!/usr/bin/env bash
# Packs a directory as a one-layer OCI image tarball, without a container
# engine: oci-layout, index.json and blobs/sha256/<digest> (a gzipped tar
# layer, the image config, the manifest). `ctr images import`, `skopeo copy
# oci-archive:...` and `crane push` read it.
#
# Usage:
#   scripts/oci-image.sh --rootfs DIR --ref NAME:TAG --out FILE.tar \
#       [--user UID:GID] [--entrypoint PATH] [--cmd ARG]... [--env K=V]... \
#       [--port N/tcp]... [--label K=V]...
#
# Reproducible: entries sorted, owned by 0:0, mtime 0, gzip without a name or
# time stamp, so the same rootfs gives the same digests. Values are written
# into JSON as given: they must not contain `"` or `\`.
# Prints the manifest digest on stdout.
set -euo pipefail

die() { printf '[oci-image] ERROR: %s\n' "$*" >&2; exit 1; }

rootfs= ref= out= user= entrypoint=
cmd=() env=() ports=() labels=()
while (($#)); do
  case $1 in
    --rootfs) rootfs=$2; shift 2 ;;
    --ref) ref=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --entrypoint) entrypoint=$2; shift 2 ;;
    --cmd) cmd+=("$2"); shift 2 ;;
    --env) env+=("$2"); shift 2 ;;
    --port) ports+=("$2"); shift 2 ;;
    --label) labels+=("$2"); shift 2 ;;
    *) die "unknown argument $1 (see the usage at the top of $0)" ;;
  esac
done
[[ -d $rootfs ]] || die "--rootfs DIR is required"
[[ -n $ref && -n $out ]] || die "--ref and --out are required"
[[ $ref == *:* ]] || die "--ref must be NAME:TAG"
for v in "$ref" "$user" "$entrypoint" "${cmd[@]}" "${env[@]}" "${ports[@]}" "${labels[@]}"; do
  [[ $v != *[\"\\]* ]] || die "value contains a quote or backslash: $v"
done

json_join() { # <open> <close> <item>... -> the items, comma-separated, between open and close
  local IFS=,
  printf '%s%s%s' "$1" "${*:3}" "$2"
}
json_list() { # "a" "b" -> ["a","b"]
  local items=() v
  for v in "$@"; do items+=("\"$v\""); done
  json_join '[' ']' "${items[@]}"
}
json_map() { # "k=v" ... -> {"k":"v",...}
  local items=() kv
  for kv in "$@"; do items+=("\"${kv%%=*}\":\"${kv#*=}\""); done
  json_join '{' '}' "${items[@]}"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
blobs=$work/oci/blobs/sha256
mkdir -p "$blobs"

# Puts stdin into the blob store; prints "<hex digest> <size>".
add_blob() {
  local tmp=$work/blob.tmp digest
  cat >"$tmp"
  digest=$(sha256sum "$tmp" | cut -d' ' -f1)
  mv "$tmp" "$blobs/$digest"
  printf '%s %s\n' "$digest" "$(stat -c %s "$blobs/$digest")"
}

# The layer: the rootfs as a tar (its sha256 is the config's diff_id) and
# its gzip (the manifest's layer digest).
tar_flags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
mapfile -t entries < <(cd "$rootfs" && ls -A)
((${#entries[@]})) || die "$rootfs is empty"
tar "${tar_flags[@]}" -C "$rootfs" -cf "$work/layer.tar" "${entries[@]}"
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
read -r layer_digest layer_size < <(gzip -n -6 <"$work/layer.tar" | add_blob)

config="{\"created\":\"1970-01-01T00:00:00Z\",\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
[[ -n $user ]] && config+="\"User\":\"$user\","
if ((${#ports[@]})); then
  config+='"ExposedPorts":{'
  first=1
  for p in "${ports[@]}"; do ((first)) || config+=','; config+="\"$p\":{}"; first=0; done
  config+='},'
fi
((${#env[@]})) && config+="\"Env\":$(json_list "${env[@]}"),"
[[ -n $entrypoint ]] && config+="\"Entrypoint\":[\"$entrypoint\"],"
((${#cmd[@]})) && config+="\"Cmd\":$(json_list "${cmd[@]}"),"
config+="\"Labels\":$(json_map "${labels[@]}")},"
config+="\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},"
config+="\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"scripts/oci-image.sh\"}]}"
read -r config_digest config_size < <(printf '%s' "$config" | add_blob)

manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
manifest+="\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},"
manifest+="\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}"
read -r manifest_digest manifest_size < <(printf '%s' "$manifest" | add_blob)

# The full reference for containerd (`ctr images import` names the image
# after it), the tag for OCI tools (skopeo, crane).
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},\"annotations\":{\"io.containerd.image.name\":\"$ref\",\"org.opencontainers.image.ref.name\":\"${ref##*:}\"}}]}" \
  >"$work/oci/index.json"

mkdir -p "$(dirname "$out")"
tar "${tar_flags[@]}" -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
mv -f "$out.tmp" "$out"
echo "sha256:$manifest_digest"
