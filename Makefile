# aod: two commands do all the set-up on a fresh machine with Go installed:
#   make run    builds and starts `aod serve` on 127.0.0.1:8777 with ./aod-data
#   make test   runs every test (gofmt, go vet and the race detector included)

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
DATA_DIR ?= ./aod-data
LISTEN   ?= 127.0.0.1:8777

export CGO_ENABLED = 0

.PHONY: run build test lint bench clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/aod .

run: build
	./bin/aod --data-dir $(DATA_DIR) serve --listen $(LISTEN)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# The race detector needs cgo; the binary itself stays cgo-free.
test: lint
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...
	$(GO) build -o /dev/null .

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
