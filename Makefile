# gresec: build, lab, tests. `sudo make lab` and `sudo make test` work on a
# fresh Debian machine that has only Go and gcc: they install what they need.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
STATICCHECK_VERSION := v0.8.2
BIN := bin/gresec

# Debian packages, installed with --no-install-recommends when missing.
APT_LAB  := iproute2 iputils-ping iperf3
APT_TEST := $(APT_LAB) bird2 tshark python3-scapy python3-cryptography nftables tcpdump procps \
            strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libc6-dev \
            qemu-system-x86 debootstrap e2fsprogs prometheus openiked groff-base man-db systemd \
            conntrack libcharon-extra-plugins

.PHONY: all build lab test interop soak unit lint cross install deps-lab deps-test deps-bench bench fuzz clean

PREFIX ?= /usr/local

all: build

# Without cgo: daemon.user's privilege drop must change every thread at once
# (syscall.AllThreadsSyscall), which Go refuses in a cgo binary.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/gresec

lab: deps-lab build
	./$(BIN) lab

test: deps-test lint
	$(GO) test -count=1 -timeout 85m ./...

# Interop with real peers: a Linux kernel (GRE, XFRM) under qemu, strongSwan.
interop: deps-test
	$(GO) test -count=1 -timeout 30m -v ./interop/... ./internal/swan/...

# Not in CI: iperf3 and 20 pings/s through a gresec pair whose SAs rekey every
# few seconds and whose ends are each killed and restarted once; prints lost
# pings, esp_bad_spi, TCP retransmits and recovery times (docs/soak.md).
# GRESEC_SOAK_DURATION=2m for a short run (default 10m).
SOAK_TIMEOUT ?= 40m
soak: deps-lab
	GRESEC_SOAK=1 $(GO) test -count=1 -v -run '^TestSoak$$' -timeout $(SOAK_TIMEOUT) ./integration/

# Unit tests only: no root, no network namespaces.
unit:
	$(GO) test -count=1 -short ./...

# The BSDs and macOS: the same code with the platform parts behind build
# tags (rawip, tun addresses, privdrop). Compiled, not run, here.
cross:
	CGO_ENABLED=0 GOOS=freebsd GOARCH=amd64 $(GO) build -o /dev/null ./cmd/gresec
	CGO_ENABLED=0 GOOS=openbsd GOARCH=amd64 $(GO) build -o /dev/null ./cmd/gresec
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/gresec

# Binary, man pages, the systemd unit (or rc.d script), an example config and
# a random PSK file; DESTDIR for packaging. See scripts/install.sh.
install: build
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) sh scripts/install.sh $(BIN)

lint: cross $(GOBIN_DIR)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN_DIR)/staticcheck ./...

$(GOBIN_DIR)/staticcheck:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Side-by-side throughput (bare veth, gresec, wireguard-go), then the
# per-stage micro-benchmarks.
bench: deps-bench build
	$(GO) build -o bin/wireguard-go golang.zx2c4.com/wireguard
	./$(BIN) bench -wireguard-go bin/wireguard-go
	$(GO) test -run '^$$' -bench . -benchmem ./esp ./gre ./tun ./rawip ./tunnel

deps-bench:
	@sh scripts/apt-ensure.sh $(APT_LAB) wireguard-tools

fuzz:
	for t in FuzzOpen:./esp FuzzDecap:./gre FuzzParse:./config FuzzClampMSS:./tun \
		FuzzParseKeyLog:./internal/swan FuzzParseSAs:./internal/swan FuzzEngineSequence:./ike \
		FuzzSplit:./udpencap; do \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime 30s "$${t#*:}" || exit 1; done

deps-lab:
	@sh scripts/apt-ensure.sh $(APT_LAB)

deps-test:
	@sh scripts/apt-ensure.sh $(APT_TEST)

clean:
	rm -rf bin results
