# Everyday recipes. `just --list` shows them.

# Run signet on embedded defaults (SQLite, embedded queue, local dev KMS).
up:
    cargo run -q -p signet-cli --bin signet -- up

# The whole test suite; installs and starts what it needs.
test *ARGS:
    scripts/test.sh {{ARGS}}

# What CI runs.
ci:
    .ci/run

# Regenerate schemas/ (JSON Schemas, openapi.json) from the code, then check real payloads
# against them. Needs docker-registry, like the rest of the suite.
schemas:
    SIGNET_UPDATE_SCHEMAS=1 cargo test -q -p signet-gateway --test schemas

# cargo-audit and cargo-deny, offline, against the RustSec snapshot in ../shared/advisory-db.
supply-chain:
    scripts/supply-chain.sh

# Fuzz every parser of untrusted bytes (services/fuzz/README.md), SECONDS per target.
# Needs the nightly toolchain; installs cargo-fuzz when missing.
fuzz SECONDS="300":
    scripts/fuzz.sh {{SECONDS}}

# Format, lint.
fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Build release binaries: signet, signet-gateway, signet-signer, signet-verifier.
build:
    cargo build --release --workspace --bins

# Benchmarks (docs/benchmarks.md): every scenario, small, against release builds; under
# two minutes once built, plus the inventory scenario at the end (2,000 Pods on a real
# kube-apiserver). Needs PostgreSQL, RabbitMQ and NATS on their usual ports (as
# scripts/test.sh starts them), docker-registry and bao. Figures go to target/bench/.
bench:
    cargo build --release -q -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load
    target/release/signet-load run --profile quick

# The full benchmark set, at the sizes the targets are stated for (4-6 minutes here, plus
# about 4.5 minutes for the inventory of 10,000 Pods at the end).
bench-full:
    cargo build --release -q -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load
    target/release/signet-load run --profile full

# Only the inventory of 10,000 running Pods (issue 12), on a real kube-apiserver from
# scripts/tools.sh (about 4.5 minutes here). bench and bench-full run it too, last.
bench-inventory:
    cargo build --release -q -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load
    target/release/signet-load run --profile full --only inventory

# Issue 15's run: full sizes on NATS, processes pinned to cores with taskset (registry and
# load generator on core 0, signet, PostgreSQL and NATS on core 1), no inventory: about
# 6 minutes here, the trust bundle at 100,000 signatures included.
bench-pinned:
    cargo build --release -q -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load
    target/release/signet-load run --profile full --bus nats --pin --inventory-pods 0

# The storm with one, two and three signers, two gateways, and one of three signers
# killed mid-storm, each checked for exactly-once signing; then one and three signers
# against a KMS that throttles at their shared quota.
bench-scale-out:
    cargo build --release -q -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load
    target/release/signet-load run --profile full --only scale-out

# Instructions per signed image and per admission review, counted by valgrind's
# callgrind (repeatable where wall-clock figures on two shared cores are not).
bench-instructions:
    cargo build --release -q -p signet-cli -p signet-gateway -p signet-signer -p signet-verifier -p signet-load
    target/release/signet-load run --profile full --only instructions
