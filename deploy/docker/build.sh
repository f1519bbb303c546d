#!/usr/bin/env bash
# Builds the sluice container image from binaries compiled on this host, so
# that nothing is pulled from a registry.
#
#   deploy/docker/build.sh [TAG]      (default sluice:dev)
#
# The version stamped into the binary (sluice --version, sluice_build_info,
# the status page) and the image's label is $SLUICE_VERSION, else what
# `git describe --tags --always --dirty` says, else "dev"; the revision is
# the commit's.
set -euo pipefail
tag=${1:-sluice:dev}
root=$(cd "$(dirname "$0")/../.." && pwd)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cd "$root"
version=${SLUICE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export CGO_ENABLED=0 GOOS=linux
go build -trimpath -ldflags="-s -w -X main.version=$version -X main.revision=$revision" -o "$ctx/sluice" ./cmd/node
go build -trimpath -ldflags='-s -w' -o "$ctx/demo" ./cmd/demo
mkdir "$ctx/data"
cp deploy/docker/Dockerfile "$ctx/"
docker build --quiet --build-arg "VERSION=$version" --tag "$tag" "$ctx" >/dev/null
echo "$tag"
