#!/usr/bin/env bash
# Builds the sluice container image from binaries compiled on this host, so
# that nothing is pulled from a registry.
#
#   deploy/docker/build.sh [TAG]      (default sluice:dev)
set -euo pipefail
tag=${1:-sluice:dev}
root=$(cd "$(dirname "$0")/../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cd "$root"
export CGO_ENABLED=0 GOOS=linux
go build -trimpath -ldflags='-s -w' -o "$ctx/sluice" ./cmd/node
go build -trimpath -ldflags='-s -w' -o "$ctx/demo" ./cmd/demo
mkdir "$ctx/data"
cp deploy/docker/Dockerfile "$ctx/"
docker build --quiet --tag "$tag" "$ctx" >/dev/null
echo "$tag"
