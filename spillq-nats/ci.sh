#!/usr/bin/env bash
# CI for spillq-nats: formatting, lints, unit and integration tests, examples and doctests.
# The integration tests start real nats-server processes on loopback ports (Debian's package).
# Runs from any directory; a member of the spillq workspace (`.ci/run` runs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
fi

cargo fmt --check
cargo clippy --all-targets --all-features -- -D warnings
# Release: the tests forward a million items; unoptimised, that alone takes minutes.
cargo test --release --all-targets
cargo test --release --doc
