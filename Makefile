# stapes — make targets. `make demo` runs the system locally; `make test`
# runs every test (race detector on, short fuzz runs); `make bench` writes a
# benchmark report under bench/results/.

GO      ?= go
BIN     ?= bin
FUZZTIME ?= 5s
PKGS    := ./...

.PHONY: all build test unit fuzz demo bench lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Every test, race detector on, then each fuzz target for $(FUZZTIME).
test: lint unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

demo: build
	$(BIN)/stapes demo

bench: build
	$(BIN)/stapes bench

clean:
	rm -rf $(BIN) .stapes-demo
