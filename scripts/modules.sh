#!/usr/bin/env bash
# The module graph of the library, from the code (docs/architecture.md,
# CONTRIBUTING.md): cargo-modules reads which module uses which, Graphviz
# judges it.
#
#   scripts/modules.sh check    fails when any module imports, directly or
#                               through others, a module that imports it (a
#                               circle), naming the modules of each circle; and
#                               when docs/architecture.md's layer picture is not
#                               the one the code gives
#   scripts/modules.sh layers   prints that picture
#
# The graph is every `use` between the library's modules at every depth
# (`keys::material::ec` -> `keys::material::key`); the picture folds it to the
# top-level modules and ranks them with Graphviz's `dot`, users above the
# modules they use. Tests (`#[cfg(test)]`) are left out: a test module may use
# anything. Installs cargo-modules (pinned, cached) and Graphviz (Debian) once.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_MODULES_VERSION=0.27.0
DOC=docs/architecture.md
BEGIN='<!-- modules.sh layers: begin -->'
END='<!-- modules.sh layers: end -->'

if ! command -v acyclic >/dev/null || ! command -v sccmap >/dev/null || ! command -v dot >/dev/null; then
  bash scripts/apt-install.sh modules graphviz
fi
bin=$(bash scripts/install-cargo-tool.sh cargo-modules "$CARGO_MODULES_VERSION")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Modules only, `use` edges only (a parent owning its children is not a use).
"$bin/cargo-modules" dependencies --lib --no-owns --no-externs --no-sysroot \
  --no-fns --no-types --no-traits >"$work/uses.dot"

layers() {
  # Fold every module into its top-level one, drop self-uses and repeats.
  {
    echo 'digraph layers {'
    sed -nE 's/^ *"jwks_operator::([a-z0-9_]+)[^"]*" -> "jwks_operator::([a-z0-9_]+)[^"]*".*/  "\1" -> "\2";/p' "$work/uses.dot" \
      | awk '{ a = $1; b = $3; sub(/;$/, "", b) } a != b' | sort -u
    echo '}'
  } >"$work/top.dot"
  # dot ranks a node below every node that uses it; -Tplain gives each
  # node's rank as its y. Print the ranks top-down, each with what its
  # modules use directly.
  dot -Tplain "$work/top.dot" | awk '
    $1 == "node" { y[$2] = $4; ys[$4] = 1 }
    $1 == "edge" { uses[$2] = uses[$2] " " $3 }
    END {
      n = 0; for (v in ys) order[++n] = v
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (order[j] + 0 > order[i] + 0) { t = order[i]; order[i] = order[j]; order[j] = t }
      for (i = 1; i <= n; i++) {
        line = ""
        m = 0; delete names
        for (v in y) if (y[v] == order[i]) names[++m] = v
        for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (names[b] < names[a]) { t = names[a]; names[a] = names[b]; names[b] = t }
        for (a = 1; a <= m; a++) {
          split(uses[names[a]], u, " "); k = 0; delete us
          for (x in u) us[++k] = u[x]
          for (c = 1; c <= k; c++) for (d = c + 1; d <= k; d++) if (us[d] < us[c]) { t = us[c]; us[c] = us[d]; us[d] = t }
          deps = ""; for (c = 1; c <= k; c++) deps = deps (c > 1 ? " " : "") us[c]
          printf "%d  %-11s -> %s\n", i, names[a], (deps == "" ? "(nothing of ours)" : deps)
        }
      }
    }'
}

case ${1:-check} in
  layers)
    layers
    ;;
  check)
    if ! acyclic -n "$work/uses.dot"; then
      echo "modules: the library's modules import each other in a circle; each circle:" >&2
      # sccmap prints the strongly connected components: a component of more
      # than one module is a circle.
      sccmap -S "$work/uses.dot" 2>/dev/null | awk '/^digraph/ { name = $0; n = 0; list = "" }
        /->/ { next }
        /^\t"/ { sub(/\[.*/, ""); gsub(/[\t"; ]/, ""); list = list "\n    " $0; n++ }
        /^}/ { if (n > 1) print "  circle:" list }' >&2
      exit 1
    fi
    n=$(grep -c -- '->' "$work/uses.dot" || true)
    echo "modules: no circles among the library's modules ($n uses between them)"
    layers >"$work/layers.txt"
    awk -v b="$BEGIN" -v e="$END" '$0 == e { on = 0 } on && !/^```/ { print } $0 == b { on = 1 }' "$DOC" >"$work/documented.txt"
    if ! diff -u "$work/documented.txt" "$work/layers.txt" >&2; then
      echo "modules: $DOC's layer picture is not the code's (above: - documented, + code); paste 'bash scripts/modules.sh layers' between its markers" >&2
      exit 1
    fi
    echo "modules: $DOC's layer picture matches the code"
    ;;
  *)
    echo "usage: scripts/modules.sh [check|layers]" >&2
    exit 2
    ;;
esac
