//go:build tools

// Package tools pins the packaging tools, apart from corral's own module:
// `go run github.com/goreleaser/nfpm/v2/cmd/nfpm` in this directory runs
// the version in go.mod.
package tools

import _ "github.com/goreleaser/nfpm/v2/cmd/nfpm"
