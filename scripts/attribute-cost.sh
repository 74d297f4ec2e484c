#!/usr/bin/env bash
# The attribute's own cost:
#  1. build time of a crate of 100 annotated functions against the same crate without the
#     attribute (debug builds of that crate alone, dependencies already built, best of 3 each:
#     a rebuild after touching its source, which rustc's incremental cache shortens, and a cold
#     build with that cache removed);
#  2. the expansion time of one 500-statement function (the macro times itself when
#     AUTODIFF_TIMING is set).
# Usage: scripts/attribute-cost.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/attribute-cost"
export CARGO_TARGET_DIR="$work/target"
mkdir -p "$work"

# One of four shapes per function: straight-line scalar code, a loop over a slice, a pair
# loop, an ndarray expression.
functions() { # $1: the attribute line (or empty)
  for i in $(seq 0 99); do
    case $((i % 4)) in
      0) cat <<RS
$1
pub fn g$i(x: f64, y: f64) -> f64 {
    let a = (x * y + $i.0).sin();
    let b = a * a + x.exp() / (1.0 + y * y);
    (b + a.tanh()).ln_1p() * y
}
RS
      ;;
      1) cat <<RS
$1
pub fn g$i(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for k in 0..x.len() - 1 {
        let a = x[k + 1] - x[k] * x[k];
        s += $i.0 * a * a + (1.0 - x[k]).powi(2);
    }
    s
}
RS
      ;;
      2) cat <<RS
$1
pub fn g$i(x: &[f64]) -> f64 {
    let n = x.len();
    let mut e = 0.0;
    for a in 0..n {
        for b in (a + 1)..n {
            let d = x[a] - x[b] + $i.0;
            e += 1.0 / (1.0 + d * d);
        }
    }
    e
}
RS
      ;;
      3) cat <<RS
$1
pub fn g$i(x: &Array2<f64>, w: &Array2<f64>) -> f64 {
    let h = x.dot(w).tanh();
    (&h * &h).sum() + $i.0 * h.mean().unwrap()
}
RS
      ;;
    esac
  done
}

make_crate() { # $1: name, $2: attribute line
  local dir="$work/$1"
  mkdir -p "$dir/src"
  cat > "$dir/Cargo.toml" <<TOML
[package]
name = "$1"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
autodiff = { path = "$root" }

[workspace]
TOML
  {
    echo "#![allow(clippy::all, unused)]"
    echo "use autodiff::differentiate;"
    echo "use autodiff::ndarray::Array2;"
    functions "$2"
  } > "$dir/src/lib.rs"
}

time_build() { # $1: crate name, $2: `touch` (a rebuild after touching the crate's source) or
  # `clean` (a cold build: its dependencies built, its own incremental cache removed); prints
  # the best of 3 such builds of the crate itself, in seconds
  local dir="$work/$1" best=""
  # A crate that fails to build would time its errors: stop instead (this runs inside `$(..)`,
  # where `set -e` does not reach).
  if ! (cd "$dir" && cargo build -q >/dev/null 2>"$work/$1.log"); then
    echo "$1 did not build:" >&2; tail -20 "$work/$1.log" >&2; exit 1
  fi
  for _ in 1 2 3; do
    if [ "$2" = clean ]; then
      (cd "$dir" && cargo clean -q -p "$1" 2>/dev/null) || exit 1
    else
      touch "$dir/src/lib.rs"
    fi
    local start end t
    start=$(date +%s.%N)
    (cd "$dir" && cargo build -q 2>/dev/null) || exit 1
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}

make_crate with_attribute "#[differentiate]"
make_crate without_attribute ""
report() { # $1: how the macro is built
  local with without
  with=$(time_build with_attribute touch) || exit 1
  without=$(time_build without_attribute touch) || exit 1
  printf '100 functions, debug rebuild of the crate after touching it (%s): with #[differentiate] %.2f s, without %.2f s, ratio %.2f\n' \
    "$1" "$with" "$without" "$(echo "$with / $without" | bc -l)"
  with=$(time_build with_attribute clean) || exit 1
  without=$(time_build without_attribute clean) || exit 1
  printf '100 functions, cold debug build of the crate (%s): with #[differentiate] %.2f s, without %.2f s, ratio %.2f\n' \
    "$1" "$with" "$without" "$(echo "$with / $without" | bc -l)"
}
report "macro at opt-level 0, cargo's default"

# One function of 500 statements.
big="$work/big"
mkdir -p "$big/src"
sed 's/name = "with_attribute"/name = "big"/' "$work/with_attribute/Cargo.toml" > "$big/Cargo.toml"
{
  echo "#![allow(clippy::all, unused)]"
  echo "use autodiff::differentiate;"
  echo "#[differentiate]"
  echo "pub fn big(x: &[f64], y: f64) -> f64 {"
  echo "    let v0 = x[0] * y;"
  for i in $(seq 1 499); do
    p=$((i - 1))
    case $((i % 5)) in
      0) echo "    let v$i = v$p.sin() + x[$((i % 7))];" ;;
      1) echo "    let v$i = v$p * y - 0.5 * v$((i / 2));" ;;
      2) echo "    let v$i = (v$p * v$p + 1.0).sqrt();" ;;
      3) echo "    let v$i = v$p.tanh() * x[$((i % 3))] + v$((i / 3));" ;;
      4) echo "    let v$i = v$p / (1.0 + v$((i / 4)).abs());" ;;
    esac
  done
  echo "    v499"
  echo "}"
} > "$big/src/lib.rs"
(cd "$big" && cargo build -q 2>/dev/null) || true
touch "$big/src/lib.rs"
(cd "$big" && AUTODIFF_TIMING=1 cargo build 2>&1 | grep "autodiff: expanded" | sed 's/$/ (macro at opt-level 0)/') || {
  echo "the 500-statement crate did not build:"; (cd "$big" && cargo build 2>&1 | tail -20); exit 1; }

# The same with the macro optimised: `[profile.dev.build-override] opt-level = 3`.
export CARGO_PROFILE_DEV_BUILD_OVERRIDE_OPT_LEVEL=3
report "macro at opt-level 3"
(cd "$big" && cargo build -q 2>/dev/null) || true
touch "$big/src/lib.rs"
(cd "$big" && AUTODIFF_TIMING=1 cargo build 2>&1 | grep "autodiff: expanded" | sed 's/$/ (macro at opt-level 3)/')
