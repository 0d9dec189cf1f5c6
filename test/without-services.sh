#!/usr/bin/env bash
# Runs a command as on a machine without the services some suites need (redis-server, redis-cli, chromium, nginx),
# with CI unset: a PATH of links to every command but them. Every suite that needs one is skipped, saying what to
# install, and the coverage map leaves out what only those suites reach (test/coverage-map.js).
#   bash test/without-services.sh npm test
set -euo pipefail
without=$(mktemp -d)
trap 'rm -rf "$without"' EXIT
IFS=: read -ra dirs <<< "$PATH"
for dir in "${dirs[@]}"; do
  for command in "$dir"/*; do
    [ -e "$command" ] || continue
    name=$(basename "$command")
    case "$name" in redis-server|redis-cli|chromium|nginx) continue ;; esac
    [ -e "$without/$name" ] || ln -s "$command" "$without/$name"
  done
done
env -u CI PATH="$without" "$@"
