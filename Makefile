# aod: two commands do all the set-up on a fresh machine with Go installed:
#   make run    builds and starts `aod serve` on 127.0.0.1:8777 with ./aod-data
#   make test   runs every test (gofmt, go vet and the race detector included)

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
DATA_DIR ?= ./aod-data
LISTEN   ?= 127.0.0.1:8777

export CGO_ENABLED = 0

.PHONY: run build dist test test-deps lint bench clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/aod .

# Static, cgo-free binaries for a VM: bin/aod-linux-amd64, bin/aod-linux-arm64.
dist:
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/aod-linux-amd64 .
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/aod-linux-arm64 .

run: build
	./bin/aod --data-dir $(DATA_DIR) serve --listen $(LISTEN)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# What the tests drive for real: Chromium for the browser tests, bubblewrap
# for the sandbox tests. Installed here when missing and we can (root with
# apt, as on CI); otherwise those tests say loudly that they did not run.
test-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "!!! not installed:$$missing (the tests needing them will say so) !!!"; fi; \
	fi

# The race detector needs cgo; the binary itself stays cgo-free.
test: lint test-deps
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	# The API scenario tests again, every session on the Sprites backend
	# (against the fake of the service).
	AOD_TEST_SANDBOX=sprites CGO_ENABLED=1 $(GO) test -race -count=1 ./server/
	$(GO) build -o /dev/null .

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
