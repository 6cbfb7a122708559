#!/bin/sh
# Regenerates the Go code for wanda_plugin.proto. Needs protoc (Debian: apt-get install -y
# protobuf-compiler) and the Go plugins, pinned to the versions in go.mod:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
protoc --proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	wanda_plugin.proto
