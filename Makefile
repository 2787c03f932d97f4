# Meridian's build. `make demo` and `make test` work on a fresh machine with
# Go: they install what they need (scripts/ensure-deps.sh).

GO       ?= go
BIN      ?= bin/meridian
# Fuzz budget per target in `make test`, as an execution count (~5–10 s
# each here): Go 1.26's fuzz coordinator can fail a duration-bounded run
# with "context deadline exceeded" at the deadline, with no failing input
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
# Longer runs: make fuzz FUZZTIME=20000000x
FUZZTIME ?= 150000x
# Simulator seeds run by `make test` (thousands belong to `meridian sim`).
SIMSEEDS ?= 200

.PHONY: all build test test-unit test-race test-invariants fuzz bench lint demo deps proto clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/meridian

deps:
	@./scripts/ensure-deps.sh

# Everything CI runs.
test: deps lint test-unit test-race test-invariants fuzz

# The tests that start real `meridian start` processes run once, in
# test-invariants (their node binary is built with the tag too).
test-unit:
	MERIDIAN_PROCESS_TESTS=0 $(GO) test -count=1 ./...

# -race with -short: the race detector is slow; long randomized runs stay in
# test-unit and test-invariants.
test-race:
	$(GO) test -count=1 -race -short ./...

test-invariants:
	$(GO) test -count=1 -tags invariants ./...

# Short coverage-guided runs of every fuzz target.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    log=$$(mktemp); \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1 || \
	      { cat $$log; rm -f $$log; exit 1; }; \
	    rm -f $$log; \
	  done; \
	done

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags invariants ./...

demo: build
	./$(BIN) demo --no-shell

clean:
	rm -rf bin

# Regenerate the protobuf code (committed) with pinned generators.
PROTOC_GEN_GO_VERSION      = v1.36.12
PROTOC_GEN_GO_GRPC_VERSION = v1.6.2
proto:
	@command -v protoc >/dev/null || { echo "installing protobuf-compiler"; sudo apt-get install -y protobuf-compiler || apt-get install -y protobuf-compiler; }
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(CURDIR)/bin:$$PATH protoc --proto_path=rpc --go_out=rpc/meridianpb --go_opt=paths=source_relative \
	  --go-grpc_out=rpc/meridianpb --go-grpc_opt=paths=source_relative rpc/meridian.proto
