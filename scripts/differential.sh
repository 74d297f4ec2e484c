#!/usr/bin/env bash
# Random-program differential testing for a release: generates N random differentiable
# functions (default 10000) in chunks of 500, builds them once in a scratch crate, checks every
# gradient against forward-mode dual numbers (num-dual) and central finite differences, and
# prints `N passed, N failed`.
#
#   scripts/differential.sh [N] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-10000}
seed=${2:-1000}
root=$(pwd)
dir=target/differential
rm -rf "$dir"
mkdir -p "$dir/tests" "$dir/src"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "autodiff-differential"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
autodiff = { path = "$root" }
num-dual = { version = "0.15", default-features = false, features = ["ndarray"] }

[workspace]
TOML
echo "" > "$dir/src/lib.rs"
chunk=500
k=0
made=0
while [ "$made" -lt "$total" ]; do
  n=$(( total - made < chunk ? total - made : chunk ))
  cargo run -q -p autodiff-fuzz -- --seed $(( seed + k )) --count "$n" > "$dir/tests/chunk_$k.rs"
  made=$(( made + n ))
  k=$(( k + 1 ))
done
log=$(mktemp)
status=0
# Every chunk runs even when one fails, so the counts cover all N programs.
CARGO_TARGET_DIR="$root/target/differential-build" cargo test --no-fail-fast --manifest-path "$dir/Cargo.toml" -- --nocapture > "$log" 2>&1 || status=$?
# A chunk that does not compile prints no count line: its errors follow (`|| true`, since
# `pipefail` would otherwise end the script at a grep that finds nothing).
{ grep -E "^[0-9]+ passed, [0-9]+ failed$" "$log" || true; } | awk '{p += $1; f += $3} END {print p + 0 " passed, " f + 0 " failed"}'
if [ "$status" -ne 0 ]; then
  grep -E "^p[0-9]+:|panicked|^error" -A6 "$log" | head -60 || true
fi
exit "$status"
