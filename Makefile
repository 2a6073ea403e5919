# corral's two commands: `make run` starts corral with the bundled example on
# 127.0.0.1:8080, one worker per CPU; `make test` runs every test.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test soak bench clean package

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/corral ./cmd/corral
	$(GO) build -o bin/hello ./examples/hello

run: build
	@echo "corral: serving on http://127.0.0.1:8080/ with one worker per CPU."
	@echo "corral: try it:   curl http://127.0.0.1:8080/"
	@echo "corral: reload:   bin/corral reload      (or: kill -HUP <corral's pid>)"
	@echo "corral: status:   bin/corral status"
	@echo "corral: stop:     Ctrl-C"
	bin/corral run --listen 127.0.0.1:8080 -- bin/hello

test:
	$(GO) test -race -count=1 -timeout 30m ./...

# The long version of the reliability suite (docs/reliability.md): 1,000
# reloads under load of the Go and of the Node example, and a minute of
# crash storm. make test runs the short version of every row.
soak:
	CORRAL_SOAK=long $(GO) test -count=1 -timeout 90m -v -run '^(TestSoak|TestCrashStorm)$$' ./cmd/corral/

bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./workers/

# dist/corral_VERSION_{amd64,arm64}.deb and dist/corral-VERSION-1.{x86_64,aarch64}.rpm;
# packaging/build derives VERSION from git tags (`make package VERSION=1.2.4` overrides).
package:
	packaging/build

clean:
	rm -rf bin dist
