# warmpod: build, run and test.
#
# Building needs Go, gcc (libcontainer uses cgo) and libseccomp-dev; "make run" and the tests need root
# (they create namespaces, cgroups, mounts, a bridge and iptables rules). "make deps"
# (hack/install-deps.sh) installs what they need on Debian 12; "make run" and the test targets run it first.

GO ?= go
# Go's own install location, for a shell that does not have it on PATH yet.
export PATH := $(PATH):/usr/local/go/bin
BIN ?= bin
MODULE := github.com/warmpod/warmpod
TAGS := seccomp
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# make install: where the binaries, the systemd unit and the example configuration go. DESTDIR is
# prepended to each (for packaging).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
DESTDIR ?=

# make release: a tarball with a static warmpod (seccomp included), warmpodctl, the unit, the example
# configuration and their checksums.
GOARCH ?= $(shell $(GO) env GOARCH)
RELEASE_NAME := warmpod-$(VERSION)-linux-$(GOARCH)
RELEASE_OUT ?= _output
RELEASE_DIR := $(RELEASE_OUT)/$(RELEASE_NAME)

# ./integration itself starts the real daemon; every other package (integration/testimages included) is a
# unit test.
UNIT_PKGS = $(shell $(GO) list ./... | grep -vx '$(MODULE)/integration')
# Extra flags for go test, e.g. TEST_FLAGS='-run TestDaemonRestart'.
TEST_FLAGS ?=
INTEGRATION_TIMEOUT ?= 25m

# golangci-lint (.golangci.yml), installed by "make lint" into bin/tools, one directory per version, when
# that version is missing.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CURDIR)/bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint

# The Go protobuf plugins the checked-in api/ code was generated with.
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: all deps build install release run test test-unit test-integration test-libcontainer soak fuzz lint proto clean e2e

all: build

# Installs (as root) or names (otherwise) the apt packages and tools the build and tests need.
deps:
	@GO=$(GO) hack/install-deps.sh

build:
	@mkdir -p $(BIN)
	$(GO) build -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/warmpod ./cmd/warmpod
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/warmpodctl ./cmd/warmpodctl
	$(GO) build -o $(BIN)/testregistry ./integration/cmd/testregistry
	$(GO) build -o $(BIN)/withdaemon ./integration/cmd/withdaemon

# Installs the binaries built by make build, the systemd unit (its ExecStart pointing at BINDIR) and the
# example configuration, as $(SYSCONFDIR)/warmpod/config.example.toml (warmpod runs on its defaults without
# a configuration file; copy it to config.toml to change them).
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSCONFDIR)/warmpod
	install -m 0755 $(BIN)/warmpod $(BIN)/warmpodctl $(DESTDIR)$(BINDIR)/
	sed 's|^ExecStart=/usr/local/bin/warmpod|ExecStart=$(BINDIR)/warmpod|' deploy/systemd/warmpod.service \
		>$(DESTDIR)$(SYSTEMDUNITDIR)/warmpod.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/warmpod.service
	install -m 0644 deploy/config.toml $(DESTDIR)$(SYSCONFDIR)/warmpod/config.example.toml

# A statically linked warmpod (cgo and libseccomp included: Debian's libseccomp-dev has libseccomp.a; netgo
# and osusergo keep glibc's NSS out), so one tarball runs on any Linux of its architecture. The tarball's
# SHA256SUMS covers the files in it; $(RELEASE_NAME).tar.gz.sha256 beside it covers the tarball.
release: deps
	rm -rf $(RELEASE_DIR) $(RELEASE_DIR).tar.gz $(RELEASE_DIR).tar.gz.sha256
	mkdir -p $(RELEASE_DIR)/bin
	CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS),netgo,osusergo \
		-ldflags '$(LDFLAGS) -extldflags -static' -o $(RELEASE_DIR)/bin/warmpod ./cmd/warmpod
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(RELEASE_DIR)/bin/warmpodctl ./cmd/warmpodctl
	@if readelf -d $(RELEASE_DIR)/bin/warmpod | grep -q NEEDED; then \
		echo "$(RELEASE_DIR)/bin/warmpod is not statically linked:"; readelf -d $(RELEASE_DIR)/bin/warmpod | grep NEEDED; exit 1; fi
	$(RELEASE_DIR)/bin/warmpod --version | grep -q 'libseccomp: *[0-9]'
	cp deploy/systemd/warmpod.service deploy/config.toml LICENSE README.md $(RELEASE_DIR)/
	cd $(RELEASE_DIR) && sha256sum bin/warmpod bin/warmpodctl warmpod.service config.toml LICENSE README.md >SHA256SUMS
	tar -C $(RELEASE_OUT) --sort=name --owner=0 --group=0 --numeric-owner -czf $(RELEASE_DIR).tar.gz $(RELEASE_NAME)
	cd $(RELEASE_OUT) && sha256sum $(RELEASE_NAME).tar.gz >$(RELEASE_NAME).tar.gz.sha256
	@echo "$(RELEASE_DIR).tar.gz"

# Starts a local registry on 127.0.0.1:5000 and the daemon on its defaults (under bin/withdaemon), runs the
# in-place reset demo, then serves until Ctrl-C (see integration/quickstart.sh for its settings).
run: deps build
	$(GO) build -o $(BIN)/warmpod-demo ./integration/cmd/demo
	BIN=$(BIN) integration/quickstart.sh

# The CRI conformance run (critest) is part of the tests: a runtime that fails it is not done. Both
# spawners are tested: the default one (fast) by test-unit, test-integration and conformance, libcontainer by
# test-libcontainer (the shim's tests, the integration tests and critest with runtime.spawner =
# "libcontainer"), and runtime/container's equivalence tests (in test-unit) compare what the two make.
test: test-unit test-integration conformance test-libcontainer

test-unit: deps
	$(GO) test -tags $(TAGS) -race -count=1 $(TEST_FLAGS) $(UNIT_PKGS)

# -v shows each test and the latency report.
test-integration: deps
	$(GO) test -tags $(TAGS) -count=1 -v -timeout $(INTEGRATION_TIMEOUT) $(TEST_FLAGS) ./integration/

# The tests that start containers again, with libcontainer (runtime.spawner = "libcontainer"): the shim's,
# the integration tests and critest. WARMPOD_SPAWNER names the spawner for all of them. (runtime/container's
# tests run both spawners anyway: TestSpawnersMakeTheSameContainer compares what they make.)
test-libcontainer:
	WARMPOD_SPAWNER=libcontainer $(GO) test -tags $(TAGS) -race -count=1 $(TEST_FLAGS) ./runtime/shim/service/
	WARMPOD_SPAWNER=libcontainer $(MAKE) test-integration conformance

# The long load and soak runs, not part of "make test" (the suite runs TestLoad for 20 s): TestLoad's 50
# clients on 20 pods for LOAD_DURATION against a race-built daemon, then TestSoak's SOAK_RESETS resets of
# 4 pods, back to back and with pauses. SOAK_OUT names a JSON file for the soak's figures.
LOAD_DURATION ?= 5m
SOAK_RESETS ?= 10000
SOAK_OUT ?=
soak: deps
	$(GO) test -tags $(TAGS) -count=1 -v -timeout 4h -run '^(TestLoad|TestSoak)$$' $(TEST_FLAGS) ./integration/ \
		-args -load.duration $(LOAD_DURATION) -soak.resets $(SOAK_RESETS) $(if $(SOAK_OUT),-soak.out $(abspath $(SOAK_OUT)))

# Native Go fuzz targets, each run for FUZZTIME; CI runs them after "make test". Longer runs:
# "make fuzz FUZZTIME=10m", or one target as the README shows.
FUZZTIME ?= 20s
FUZZ_TARGETS = \
	./runtime/image:FuzzUnpack \
	./runtime/oci:FuzzResolveUser \
	./runtime/oci:FuzzBuild \
	./runtime/journal:FuzzReplay \
	./runtime/shim:FuzzParseRestartRules

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -tags $(TAGS) -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# The layering rules (depguard), staticcheck, errorlint, govet and gofmt; see .golangci.yml.
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...
	$(GO) vet -tags $(TAGS) ./...
	cd integration/e2e && $(GO) vet ./...

$(GOLANGCI_LINT):
	GOBIN=$(@D) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

proto:
	@command -v protoc >/dev/null || { echo 'protoc is missing (apt-get install protobuf-compiler)'; exit 1; }
	@command -v protoc-gen-go >/dev/null || $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@command -v protoc-gen-go-grpc >/dev/null || $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" api/generate.sh

# critest v1.37.0 (the CRI validation suite) against a daemon of its own, with look-alikes of its test
# images. Needs root. See integration/conformance/README.md.
.PHONY: conformance conformance-benchmark
conformance: deps build
	BIN=$(BIN) GO=$(GO) integration/conformance/run.sh

conformance-benchmark: deps build
	BIN=$(BIN) GO=$(GO) integration/conformance/run.sh --benchmark

# warmpod under a real single-node Kubernetes cluster (etcd, API server, controller manager, scheduler,
# kubelet), built from the Go module proxy and cached under /var/cache/warmpod-e2e; runs once with the
# kubelet's generic PLEG and once with EventedPLEG. Needs root. See integration/e2e/run.sh.
e2e:
	GO=$(GO) integration/e2e/run.sh

clean:
	rm -rf $(BIN) $(RELEASE_OUT)
