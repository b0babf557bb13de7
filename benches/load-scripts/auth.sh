#!/usr/bin/env bash
# Tile and query throughput with authentication and scope checks on (this
# build) versus a build from before access control, same store, alternating
# rounds on one machine. Usage:
#   benches/load-scripts/auth.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
# BEFORE_BINARY: e.g. a release build of bd05e22 (git worktree add /tmp/before bd05e22;
# cargo build --release there). Needs wrk (apt-get install wrk).
set -euo pipefail
before=$1; after=$2; rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
store=$dir/d.gpkg
"$after" demo --store "$store" --scale district > /dev/null
admin=$("$after" token create --store "$store" --role admin --name bench | tail -1)
street=$("$after" token create --store "$store" --role department --scope 990101001 --name bench-street | tail -1)
port=18090
serve() { "$1" serve --store "$store" --bind 127.0.0.1:$port --web "$here/../../web" --styles "$here/../../styles" --rate-per-minute 0 2>/dev/null & 
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && return; sleep 0.2; done; }
# The before build has no --rate-per-minute.
serve_before() { "$before" serve --store "$store" --bind 127.0.0.1:$port --web "$here/../../web" --styles "$here/../../styles" 2>/dev/null &
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && return; sleep 0.2; done; }
run() { # name token
  TOKEN=$2 wrk -t2 -c8 -d3s -s "$here/auth-tiles.lua" http://127.0.0.1:$port > /dev/null  # fill the cache
  local t q
  t=$(TOKEN=$2 wrk -t2 -c8 -d10s -s "$here/auth-tiles.lua" http://127.0.0.1:$port | awk '/Requests\/sec/ {print $2}')
  q=$(TOKEN=$2 wrk -t2 -c8 -d10s -s "$here/auth-query.lua" http://127.0.0.1:$port | awk '/Requests\/sec/ {print $2}')
  echo "$1 tiles_rps=$t query_rps=$q"
}
for r in $(seq "$rounds"); do
  serve_before; run "round$r before" ""; kill %1; wait %1 2>/dev/null || true
  serve "$after"; run "round$r unscoped" "$admin"; run "round$r scoped" "$street"; kill %1; wait %1 2>/dev/null || true
done
