#!/usr/bin/env bash
# Regenerates the Go code for warmpod's protobuf APIs. Needs protoc,
# protoc-gen-go and protoc-gen-go-grpc on PATH (`make proto` installs the Go plugins).
set -euo pipefail
cd "$(dirname "$0")"
for f in shim/v1/shim.proto warmpod/v1/warmpod.proto; do
  protoc --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. "$f"
done
