//! Local buffers of points, written element by element (`let mut f = vec![[0.0; 3]; n];`
//! then `f[i][k] += ..`, `let mut x = x0.to_vec();` then `x[i][k] = ..`), and points returned
//! (`-> Vec<[f64; 3]>`, with a pullback and a Jacobian): forces accumulated pair by pair, a
//! velocity-Verlet time-stepping loop over positions and velocities, whole points stored,
//! swapped, walked and taken apart. Each gradient against central finite differences, an
//! analytic value, or the generated gradient of the energy whose forces are written by hand.
#![allow(clippy::needless_range_loop, clippy::useless_vec)]
use autodiff::differentiate;

mod common;
use common::{assert_close, fd};

/// The Lennard-Jones energy of points.
#[differentiate]
pub fn energy(x: &[[f64; 3]]) -> f64 {
    let mut e = 0.0;
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let mut r2 = 0.0;
            for k in 0..3 {
                let d = x[i][k] - x[j][k];
                r2 += d * d;
            }
            let s6 = 1.0 / (r2 * r2 * r2);
            e += 4.0 * (s6 * s6 - s6);
        }
    }
    e
}

/// Its forces, written by hand and accumulated pair by pair into a buffer of points: a
/// vector-valued function whose pullback is a Hessian-vector product.
#[differentiate]
pub fn forces(x: &[[f64; 3]]) -> Vec<[f64; 3]> {
    let n = x.len();
    let mut f = vec![[0.0; 3]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = [x[i][0] - x[j][0], x[i][1] - x[j][1], x[i][2] - x[j][2]];
            let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            let s6 = 1.0 / (r2 * r2 * r2);
            // -dE/dr2 times 2: the force on i along d.
            let scale = 24.0 * (2.0 * s6 * s6 - s6) / r2;
            for k in 0..3 {
                f[i][k] += scale * d[k];
                f[j][k] -= scale * d[k];
            }
        }
    }
    f
}

/// Velocity Verlet: positions and velocities copied into buffers of points and stepped, the
/// forces a call of the function above; the total energy at the end.
#[differentiate]
pub fn verlet(x0: &[[f64; 3]], v0: &[[f64; 3]], dt: f64, steps: usize) -> f64 {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut v = v0.to_vec();
    let mut f = forces(&x);
    for _ in 0..steps {
        for i in 0..n {
            for k in 0..3 {
                v[i][k] += 0.5 * dt * f[i][k];
                x[i][k] += dt * v[i][k];
            }
        }
        f = forces(&x);
        for i in 0..n {
            for k in 0..3 {
                v[i][k] += 0.5 * dt * f[i][k];
            }
        }
    }
    let mut kinetic = 0.0;
    for i in 0..n {
        kinetic += 0.5 * (v[i][0] * v[i][0] + v[i][1] * v[i][1] + v[i][2] * v[i][2]);
    }
    kinetic + energy(&x)
}

/// Whole points stored, swapped, walked (by pattern and by name) and read back whole.
#[differentiate]
pub fn shuffled(x: &[[f64; 3]], w: f64) -> f64 {
    let n = x.len();
    let mut p = vec![[0.0; 3]; n];
    for i in 0..n {
        p[i] = [x[i][0] * w, x[i][1].sin(), x[i][2] * x[i][0]];
    }
    p.swap(0, n - 1);
    let mut s = 0.0;
    for (i, &[a, b, c]) in p.iter().enumerate() {
        s += (a + b * c) * (i as f64 + 1.0);
    }
    for q in p.iter() {
        s += q[0] * q[1];
    }
    let [u, v, _] = p[1];
    let last = p[p.len() - 1];
    assert_eq!(p.len(), n, "{p:?}");
    s + u * v + last[2] * last[2]
}

/// A buffer of points of any width `D` (a const parameter): `sum(x^3 + x)`, whose gradient
/// is `3 x^2 + 1`.
#[differentiate]
pub fn cubes<const D: usize>(x: &[[f64; D]]) -> f64 {
    let mut y = x.to_vec();
    for i in 0..y.len() {
        for k in 0..D {
            y[i][k] = y[i][k] * y[i][k] + 1.0;
        }
    }
    let mut s = 0.0;
    for i in 0..y.len() {
        for k in 0..D {
            s += y[i][k] * x[i][k];
        }
    }
    s
}

/// The points moved so their centroid is at the origin: Jacobian `I - 1/n` per coordinate.
#[differentiate]
pub fn centered(x: &[[f64; 3]]) -> Vec<[f64; 3]> {
    let n = x.len();
    let mut c = [0.0; 3];
    for i in 0..n {
        for k in 0..3 {
            c[k] += x[i][k] / n as f64;
        }
    }
    let mut y = x.to_vec();
    for i in 0..n {
        for k in 0..3 {
            y[i][k] -= c[k];
        }
    }
    y
}

fn flat(points: &[[f64; 3]]) -> Vec<f64> {
    points.iter().flatten().copied().collect()
}

fn unflat(v: &[f64]) -> Vec<[f64; 3]> {
    v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

fn cluster() -> Vec<[f64; 3]> {
    vec![
        [0.0, 0.0, 0.0],
        [1.12, 0.05, -0.02],
        [0.5, 0.98, 0.1],
        [0.55, 0.35, 0.92],
    ]
}

#[test]
fn forces_accumulated_in_a_buffer_of_points_are_minus_the_gradient() {
    let x = cluster();
    // The hand-written forces against the generated gradient of the energy.
    let g = energy_grad(&x);
    assert_close(
        &flat(&forces(&x)),
        &flat(&g).iter().map(|v| -v).collect::<Vec<_>>(),
        1e-10,
    );
    // The pullback of the forces: a Hessian-vector product, against finite differences of
    // `<forces(x), v>`.
    let v = vec![
        [0.3, -0.2, 0.5],
        [1.0, 0.1, -0.4],
        [0.2, 0.7, 0.1],
        [-0.6, 0.2, 0.3],
    ];
    let weighted = |w: &[f64]| -> f64 {
        let f = forces(&unflat(w));
        flat(&f).iter().zip(flat(&v)).map(|(a, b)| a * b).sum()
    };
    let pb = forces_pullback(&x, v.clone());
    assert_close(&flat(&pb), &fd(&weighted, &flat(&x)), 1e-6);
    // The Jacobian: one row per coordinate of the output, point by point; minus the Hessian,
    // so symmetric, and each row against finite differences of that coordinate.
    let jac = forces_jacobian(&x);
    assert_eq!(jac.len(), 12);
    for r in 0..12 {
        let want = fd(&|w| flat(&forces(&unflat(w)))[r], &flat(&x));
        assert_close(&flat(&jac[r]), &want, 1e-6);
        for c in 0..12 {
            let (a, b) = (jac[r][c / 3][c % 3], jac[c][r / 3][r % 3]);
            assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "({r}, {c})");
        }
    }
}

#[test]
fn a_velocity_verlet_loop_over_points_matches_finite_differences() {
    let x = cluster();
    let v = vec![
        [0.1, 0.0, -0.1],
        [0.0, 0.2, 0.0],
        [-0.1, 0.0, 0.05],
        [0.0, -0.1, 0.1],
    ];
    let (dt, steps) = (0.002, 25);
    let (value, (gx, gv, gdt)) = verlet_value_and_grad(&x, &v, dt, steps);
    assert_eq!(value, verlet(&x, &v, dt, steps));
    let mut all = flat(&x);
    all.extend(flat(&v));
    all.push(dt);
    let want = fd(
        &|w| verlet(&unflat(&w[..12]), &unflat(&w[12..24]), w[24], steps),
        &all,
    );
    assert_close(&flat(&gx), &want[..12], 1e-5);
    assert_close(&flat(&gv), &want[12..24], 1e-5);
    assert_close(&[gdt], &want[24..], 1e-5);
    // Energy is nearly conserved: the gradient with respect to the start is nearly the
    // gradient of the starting energy (forces and velocities), a check that does not
    // difference the loop.
    let g0 = energy_grad(&x);
    for i in 0..4 {
        for k in 0..3 {
            assert!((gx[i][k] - g0[i][k]).abs() < 0.05 * g0[i][k].abs().max(1.0));
            assert!((gv[i][k] - v[i][k]).abs() < 0.05);
        }
    }
}

#[test]
fn whole_points_stored_swapped_and_walked_match_finite_differences() {
    let x = vec![[0.0, 0.1, 0.2], [1.0, 0.3, 0.1], [2.1, 0.0, 0.4]];
    let (g, gw) = shuffled_grad(&x, 0.7);
    let mut all = flat(&x);
    all.push(0.7);
    let want = fd(&|w| shuffled(&unflat(&w[..9]), w[9]), &all);
    assert_close(&flat(&g), &want[..9], 1e-7);
    assert_close(&[gw], &want[9..], 1e-7);
}

#[test]
fn buffers_of_points_of_any_width_match_the_analytic_gradient() {
    let x = vec![[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]];
    let g: Vec<[f64; 2]> = cubes_grad(&x);
    for i in 0..3 {
        for k in 0..2 {
            let want = 3.0 * x[i][k] * x[i][k] + 1.0;
            assert!((g[i][k] - want).abs() < 1e-12, "{i} {k}");
        }
    }
}

#[test]
fn points_returned_have_a_pullback_and_a_jacobian() {
    let x = cluster();
    let n = x.len() as f64;
    let jac = centered_jacobian(&x);
    for r in 0..12 {
        for c in 0..12 {
            let same = if r == c { 1.0 } else { 0.0 };
            let coordinate = if r % 3 == c % 3 { 1.0 / n } else { 0.0 };
            assert!((jac[r][c / 3][c % 3] - (same - coordinate)).abs() < 1e-12);
        }
    }
    // The pullback of a direction that sums to zero per coordinate is the direction itself.
    let d = vec![
        [1.0, 0.0, 2.0],
        [-1.0, 0.5, -1.0],
        [0.0, -0.5, -1.0],
        [0.0, 0.0, 0.0],
    ];
    assert_close(&flat(&centered_pullback(&x, d.clone())), &flat(&d), 1e-12);
}

/// Rows of differentiated values, `[[a, b], [c, d]]` and `vec![[..], [..]]`: points, kept flat,
/// read, written and passed on like a buffer of points.
#[differentiate]
pub fn rows_of_values(x: &[f64]) -> f64 {
    let p = [[x[0], x[1]], [x[2], x[3]]];
    let mut m = vec![[x[0] * x[1], 1.0, x[2]], [x[3], x[0], 2.0]];
    m[1][2] += p[0][1] * x[2];
    let [a, b] = p[1];
    p[0][0] * p[1][1] + m[1][2] * m[0][0] + pair_products(&p) + a * b + m.len() as f64
}

#[differentiate]
pub fn pair_products(p: &[[f64; 2]]) -> f64 {
    let mut s = 0.0;
    for q in p {
        s += q[0] * q[1];
    }
    s
}

#[test]
fn rows_of_differentiated_values_match_the_analytic_gradient() {
    let x = [0.3, -0.5, 1.2, 0.7];
    // p00 p11 + (2 + x1 x2) x0 x1 + (x0 x1 + x2 x3) + x2 x3 + 2
    let (x0, x1, x2, x3) = (x[0], x[1], x[2], x[3]);
    let want = [
        x3 + (2.0 + x1 * x2) * x1 + x1,
        (2.0 + x1 * x2) * x0 + x2 * x0 * x1 + x0,
        x1 * x0 * x1 + 2.0 * x3,
        x0 + 2.0 * x2,
    ];
    assert_close(&rows_of_values_grad(&x), &want, 1e-12);
    assert_close(&rows_of_values_grad(&x), &fd(&rows_of_values, &x), 1e-7);
}

/// Elements of a fixed-size array read at constant indices in straight-line code (their first
/// adjoint contributions are assignments onto the zero adjoint), read again, around a loop and
/// a branch that add to the same adjoint, through a part, a buffer stored at constant indices,
/// and the array passed whole.
#[differentiate]
fn constant_index_reads(p: [f64; 3], q: &[f64; 4], s: f64) -> f64 {
    let a = p[0] * p[1] + q[3];
    let mut b = [0.0; 3];
    b[0] = a * p[2];
    b[2] = q[1] * s;
    let mut t = 0.0;
    for i in 0..3 {
        t += p[i] * q[i] + b[i];
    }
    let c = if s > 0.0 { p[0] * q[0] } else { p[1] };
    let tail = &q[2..];
    let d = tail[0] * tail[1] + p[0].sin() + b[0] * b[2];
    a * c + t * d + p[1] + q[3] * q[3] + norm_of(&p)
}

/// Straight-line reads only: each element's first contribution assigns, the later ones add.
#[differentiate]
fn first_writes(p: [f64; 3], q: &[f64; 2]) -> f64 {
    let a = p[0] * p[1];
    let b = p[0] * q[1] + p[2];
    a * b + p[0].sin() + q[1] * q[0] + norm_of(&p) * p[2]
}

/// Straight-line reads through a part (`&q[2..]`): its element `t[0]` is `q[2]`, also read
/// directly; the part's writes must add to it.
#[differentiate]
fn part_first_writes(q: [f64; 4]) -> f64 {
    let a = q[0] * q[3];
    let t = &q[2..];
    a + t[0] * t[1] + q[2] * 3.0
}

#[differentiate]
fn norm_of(v: &[f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

#[test]
fn constant_index_first_writes_match_finite_differences() {
    for s in [0.8, -0.6] {
        let (p, q) = ([0.4, -1.2, 0.9], [1.1, 0.3, -0.7, 0.5]);
        let (dp, dq, ds) = constant_index_reads_grad(p, &q, s);
        let x = [p[0], p[1], p[2], q[0], q[1], q[2], q[3], s];
        let want = fd(
            &|v: &[f64]| constant_index_reads([v[0], v[1], v[2]], &[v[3], v[4], v[5], v[6]], v[7]),
            &x,
        );
        let got = [dp[0], dp[1], dp[2], dq[0], dq[1], dq[2], dq[3], ds];
        assert_close(&got, &want, 1e-6);
    }
    let (p, q) = ([0.4, -1.2, 0.9], [1.1, 0.3]);
    let (dp, dq) = first_writes_grad(p, &q);
    let want = fd(
        &|v: &[f64]| first_writes([v[0], v[1], v[2]], &[v[3], v[4]]),
        &[p[0], p[1], p[2], q[0], q[1]],
    );
    assert_close(&[dp[0], dp[1], dp[2], dq[0], dq[1]], &want, 1e-6);
    let q = [0.4, -1.2, 0.9, 1.7];
    let dq = part_first_writes_grad(q);
    let want = fd(&|v: &[f64]| part_first_writes([v[0], v[1], v[2], v[3]]), &q);
    assert_close(&dq, &want, 1e-6);
}
