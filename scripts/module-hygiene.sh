#!/usr/bin/env bash
# module-hygiene.sh: what a module that imports only the root package
# downloads (docs/testing.md, "Module hygiene").
#
# It writes a user module (a main that calls dbrouter.ParseConfig and
# dbrouter.Open) requiring github.com/dbrouter/dbrouter v0.0.0 with a replace
# to this checkout, and runs each of go build, go list -m all and go mod tidy
# alone, in a fresh copy of that module with an empty GOMODCACHE, then counts
# what landed in $GOMODCACHE/cache/download. go mod download runs the same
# way on the module as go build left it (go.mod then requires the modules
# the build needed; on the bare module it has nothing to download). Needs
# the module proxy (GOPROXY as configured); takes about a minute, most of it
# go mod tidy when the root's tests pull in the test harness.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/module-hygiene-XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off

mkdir "$work/user"
cat >"$work/user/go.mod" <<EOF
module example.com/dbrouteruser

go 1.26.0

require github.com/dbrouter/dbrouter v0.0.0

replace github.com/dbrouter/dbrouter => $repo
EOF
cat >"$work/user/main.go" <<'EOF'
package main

import (
	"fmt"
	"log"

	"github.com/dbrouter/dbrouter"
)

func main() {
	cfg, err := dbrouter.ParseConfig([]byte("defaults: {user: app}\nclusters: {c: {nodes: [127.0.0.1:1]}}\n"))
	if err != nil {
		log.Fatal(err)
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println(r.Clusters())
}
EOF

heavy='testcontainers|moby|docker|gonum|containerd|opentelemetry'
printf '| command | .mod files | .zip files | zip bytes | module cache | modules listed | heavy modules (%s) |\n' "${heavy//|/, }"
printf '|---|---:|---:|---:|---:|---:|---|\n'
n=0
for cmd in "go build ." "go mod download" "go list -m all" "go mod tidy"; do
	n=$((n + 1))
	dir="$work/run$n"
	from="$work/user"
	[ "$cmd" = "go mod download" ] && from="$work/run1" # after go build
	cp -r "$from" "$dir"
	export GOMODCACHE="$work/gmc-$n"
	out=$(cd "$dir" && $cmd 2>&1) || { echo "$cmd failed:" >&2; echo "$out" >&2; exit 1; }
	dl="$GOMODCACHE/cache/download"
	mkdir -p "$dl"
	mods=$(find "$dl" -name '*.mod' 2>/dev/null | wc -l)
	zips=$(find "$dl" -name '*.zip' 2>/dev/null | wc -l)
	zbytes=$(find "$dl" -name '*.zip' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {printf "%d", s}')
	size=$(du -sh "$GOMODCACHE" 2>/dev/null | cut -f1)
	hz=$(find "$dl" -name '*.zip' 2>/dev/null | grep -cE "$heavy" || true)
	hm=$(find "$dl" -name '*.mod' 2>/dev/null | grep -cE "$heavy" || true)
	sum=$(cat "$dir/go.sum" 2>/dev/null | wc -l)
	hsum=$(grep -cE "$heavy" "$dir/go.sum" 2>/dev/null || true)
	got=$(find "$dl" -name '*.zip' -printf '%P\n' | sed 's|/@v/| |; s|\.zip$||' | sort)
	# Listing the modules afterwards may fetch more go.mod files (and, with
	# -mod=mod, add go.sum lines): everything else is counted above.
	listed=$(cd "$dir" && go list -m all 2>/dev/null | wc -l)
	hl=$(cd "$dir" && go list -m all 2>/dev/null | grep -cE "$heavy" || true)
	printf '| `%s` | %d | %d | %s | %s | %d | %d zips, %d go.mod files, %d listed |\n' \
		"$cmd" "$mods" "$zips" "$(printf "%'d" "$zbytes")" "$size" "$listed" "$hz" "$hm" "$hl"
	if [ "$cmd" = "go mod tidy" ]; then
		tidy="go.sum after go mod tidy: $sum lines, ${hsum:-0} of them for heavy modules
modules downloaded by go mod tidy:
$(echo "$got" | sed 's/^/  /')"
	fi
done
echo
echo "$tidy"

# The adapters: a user module that imports only one of them must not list
# the test harness's modules either (their real-ring tests and benchmark
# live in integration/). Each is built and listed with its own module
# cache; the script fails when a heavy module other than the adapter's own
# library (opentelemetry for otel) is listed.
echo
printf '| adapter | modules listed by go list -m all | heavy modules listed |\n|---|---:|---|\n'
for adapter in prometheus otel; do
	dir="$work/user-$adapter"
	mkdir "$dir"
	export GOMODCACHE="$work/gmc-$adapter"
	cat >"$dir/go.mod" <<EOM
module example.com/dbrouter${adapter}user

go 1.26.0

require (
	github.com/dbrouter/dbrouter v0.0.0
	github.com/dbrouter/dbrouter/$adapter v0.0.0
)

replace (
	github.com/dbrouter/dbrouter => $repo
	github.com/dbrouter/dbrouter/$adapter => $repo/$adapter
)
EOM
	case $adapter in
	prometheus) body='_ = dbprom.New()' imp='dbprom "github.com/dbrouter/dbrouter/prometheus"' ;;
	otel) body='_, _ = dbotel.New(dbotel.Options{})' imp='dbotel "github.com/dbrouter/dbrouter/otel"' ;;
	esac
	printf 'package main\n\nimport %s\n\nfunc main() { %s }\n' "$imp" "$body" >"$dir/main.go"
	out=$(cd "$dir" && go mod tidy 2>&1 && go build -o /dev/null . 2>&1) || { echo "$adapter user module failed:" >&2; echo "$out" >&2; exit 1; }
	all=$(cd "$dir" && go list -m all)
	bad=$(echo "$all" | grep -E "$heavy" | grep -vE "$([ "$adapter" = otel ] && echo opentelemetry || echo '^$')" || true)
	printf '| `%s` | %d | %s |\n' "$adapter" "$(echo "$all" | wc -l)" "${bad:-none}"
	[ -z "$bad" ] || { echo "the $adapter adapter pulls the test harness into its users' module graph" >&2; exit 1; }
done
