//! `det`: the determinant of an `ell x ell` matrix by expansion by minors; `primal` and
//! `gradient`.
//!
//! The reference recurses over minors with `&mut` row and column index lists. The eval's
//! README names the alternative used here: the same sum written without recursion, over all
//! `ell!` permutations (`sum sign(p) prod_i A[i, p(i)]`, each term a product of `ell` entries;
//! Futhark's tool does the same). The permutations come in lexicographic order from one
//! integer buffer that each iteration advances in place.
#![allow(clippy::needless_range_loop)]

use crate::protocol::{parse, timed, Evaluated, Runs};
use autodiff::differentiate;
use serde::Deserialize;
use serde_json::Value;

/// The determinant of the row-major `ell x ell` matrix `a`.
#[differentiate]
pub fn det(a: &[f64], ell: usize) -> f64 {
    let count: usize = (1..=ell).product();
    let mut perm = vec![0usize; ell];
    for i in 0..ell {
        perm[i] = i;
    }
    let mut odd = false;
    let mut total = 0.0;
    for _ in 0..count {
        let mut term = if odd { -1.0 } else { 1.0 };
        for i in 0..ell {
            term *= a[i * ell + perm[i]];
        }
        total += term;
        // The next permutation: the longest decreasing suffix starts at k; swap the entry
        // before it with the smallest larger one in the suffix, then reverse the suffix. Each
        // swap flips the sign.
        let mut k = ell - 1;
        while k > 0 && perm[k - 1] > perm[k] {
            k -= 1;
        }
        if k > 0 {
            let mut l = ell - 1;
            while perm[l] < perm[k - 1] {
                l -= 1;
            }
            perm.swap(k - 1, l);
            odd = !odd;
            let mut lo = k;
            let mut hi = ell - 1;
            while lo < hi {
                perm.swap(lo, hi);
                odd = !odd;
                lo += 1;
                hi -= 1;
            }
        }
    }
    total
}

#[derive(Deserialize)]
struct Input {
    #[serde(rename = "A")]
    a: Vec<f64>,
    ell: usize,
}

pub fn evaluate(function: &str, input: &Value) -> Result<Evaluated, String> {
    let Input { a, ell } = parse(input)?;
    if ell == 0 || a.len() != ell * ell {
        return Err(format!(
            "det: `A` has {} entries, `ell` is {ell}: expected ell * ell > 0",
            a.len()
        ));
    }
    let runs = Runs::of(input);
    match function {
        "primal" => timed(runs, || det(&a, ell)),
        "gradient" => timed(runs, || det_grad(&a, ell)),
        _ => super::unknown("det", function),
    }
}
