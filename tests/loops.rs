//! Loops, indexing, buffers, composition and custom derivatives.
// The functions are written the way simulation code often is (index loops, `x = x + h * v`,
// `&Vec` parameters): those are the forms under test.
#![allow(
    clippy::assign_op_pattern,
    clippy::ptr_arg,
    clippy::needless_range_loop,
    clippy::explicit_counter_loop,
    clippy::manual_memcpy
)]
use autodiff::differentiate;

mod common;
use common::{assert_close, fd};

#[differentiate]
fn rosenbrock(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        s += 100.0 * a * a + b * b;
    }
    s
}

fn rosenbrock_hand(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut g = vec![0.0; n];
    for i in 0..n - 1 {
        let a = x[i + 1] - x[i] * x[i];
        g[i] += -400.0 * a * x[i] - 2.0 * (1.0 - x[i]);
        g[i + 1] += 200.0 * a;
    }
    g
}

#[test]
fn rosenbrock_matches_the_hand_written_gradient() {
    let x: Vec<f64> = (0..7).map(|i| 0.3 * i as f64 - 0.8).collect();
    let (v, g) = rosenbrock_value_and_grad(&x);
    assert_eq!(v, rosenbrock(&x));
    assert_close(&g, &rosenbrock_hand(&x), 1e-12);
}

/// Lennard-Jones energy of particles at `x` (flat, 3 coordinates each).
#[differentiate]
fn lennard_jones(x: &[f64]) -> f64 {
    let n = x.len() / 3;
    let mut e = 0.0;
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = x[3 * i] - x[3 * j];
            let dy = x[3 * i + 1] - x[3 * j + 1];
            let dz = x[3 * i + 2] - x[3 * j + 2];
            let r2 = dx * dx + dy * dy + dz * dz;
            let s6 = 1.0 / (r2 * r2 * r2);
            e += 4.0 * (s6 * s6 - s6);
        }
    }
    e
}

fn lennard_jones_forces(x: &[f64]) -> Vec<f64> {
    let n = x.len() / 3;
    let mut f = vec![0.0; x.len()];
    for i in 0..n {
        for j in (i + 1)..n {
            let d = [
                x[3 * i] - x[3 * j],
                x[3 * i + 1] - x[3 * j + 1],
                x[3 * i + 2] - x[3 * j + 2],
            ];
            let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            let s6 = 1.0 / (r2 * r2 * r2);
            // dE/dr2 = 4 (-6 s6^2 + 3 s6) / r2
            let de = 4.0 * (-6.0 * s6 * s6 + 3.0 * s6) / r2;
            for k in 0..3 {
                f[3 * i + k] -= de * 2.0 * d[k];
                f[3 * j + k] += de * 2.0 * d[k];
            }
        }
    }
    f
}

fn lattice(n: usize) -> Vec<f64> {
    let side = (n as f64).cbrt().ceil() as usize;
    let mut x = Vec::new();
    for p in 0..n {
        let (a, b, c) = (p % side, (p / side) % side, p / (side * side));
        let jitter = 0.05 * ((p * 7 % 11) as f64 / 11.0 - 0.5);
        x.extend([
            1.1 * a as f64 + jitter,
            1.1 * b as f64 - jitter,
            1.1 * c as f64 + 0.5 * jitter,
        ]);
    }
    x
}

#[test]
fn lennard_jones_gradient_is_minus_the_forces() {
    let x = lattice(20);
    let g = lennard_jones_grad(&x);
    let minus_f: Vec<f64> = lennard_jones_forces(&x).iter().map(|f| -f).collect();
    assert_close(&g, &minus_f, 1e-10);
}

/// Final position of a damped oscillator integrated with explicit Euler.
#[differentiate]
fn oscillator(x0: f64, v0: f64, k: f64, c: f64, steps: usize) -> f64 {
    let h = 0.01;
    let mut x = x0;
    let mut v = v0;
    for _ in 0..steps {
        let a = -k * x - c * v;
        x = x + h * v;
        v = v + h * a;
    }
    x
}

#[test]
fn damped_oscillator_euler_1000_steps() {
    let p = [1.0, -0.3, 4.0, 0.2];
    let (dx0, dv0, dk, dc) = oscillator_grad(p[0], p[1], p[2], p[3], 1000);
    let want = fd(&|q: &[f64]| oscillator(q[0], q[1], q[2], q[3], 1000), &p);
    assert_close(&[dx0, dv0, dk, dc], &want, 1e-6);
}

/// Square root by Newton's method: a while loop whose trip count depends on the data.
#[differentiate]
fn newton_sqrt(a: f64) -> f64 {
    let mut x = if a > 1.0 { a } else { 1.0 };
    let mut steps = 0;
    while (x * x - a).abs() > 1e-12 * a && steps < 100 {
        x = 0.5 * (x + a / x);
        steps += 1;
    }
    x
}

#[test]
fn while_loop_with_data_dependent_trip_count() {
    for &a in &[0.3, 2.0, 17.0, 1e4] {
        let g = newton_sqrt_grad(a);
        assert!(
            (g - 0.5 / a.sqrt()).abs() < 1e-9 * (1.0 / a.sqrt()).max(1.0),
            "at {a}: {g}"
        );
    }
}

/// A root by bisection: `loop` with `break`.
#[differentiate]
fn bisect_cube_root(t: f64) -> f64 {
    let mut lo = 0.0;
    let mut hi = t + 1.0;
    let mut it = 0;
    loop {
        let mid = 0.5 * (lo + hi);
        if mid * mid * mid > t {
            hi = mid;
        } else {
            lo = mid;
        }
        it += 1;
        if it >= 200 || hi - lo < 1e-14 {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[test]
fn loop_with_break_runs_forward_and_back() {
    // With the branches the run took held fixed, every midpoint is a fixed fraction of the
    // initial bracket [0, t + 1]: the output is c (t + 1) with c = output / (t + 1), and that
    // is the derivative of the program as executed.
    let t = 2.0;
    let (v, g) = bisect_cube_root_value_and_grad(t);
    assert!((v - t.cbrt()).abs() < 1e-12);
    assert!((g - v / (t + 1.0)).abs() < 1e-12, "{g}");
}

#[differentiate]
fn iterate_forms(x: &[f64], w: &Vec<f64>) -> f64 {
    let mut s = 0.0;
    for v in x.iter() {
        s += v * v;
    }
    for (i, v) in x.iter().enumerate() {
        s += (i as f64 + 1.0) * v.sin() * w[i];
    }
    for i in (0..x.len()).rev() {
        s = s * 0.5 + x[i];
    }
    for i in (0..x.len()).step_by(2) {
        s += x[i] * w[i];
    }
    for i in 1..=2 {
        if i == 2 {
            continue;
        }
        s += x[i].exp();
    }
    s
}

#[test]
fn iter_enumerate_rev_step_by_inclusive_and_continue() {
    let x = [0.3, -0.7, 1.1, 0.4, -0.2];
    let w = vec![1.0, 2.0, -0.5, 0.25, 3.0];
    let (gx, gw) = iterate_forms_grad(&x, &w);
    assert_close(&gx, &fd(&|v: &[f64]| iterate_forms(v, &w), &x), 1e-6);
    assert_close(
        &gw,
        &fd(&|v: &[f64]| iterate_forms(&x, &v.to_vec()), &w),
        1e-6,
    );
}

#[differentiate]
fn buffers(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![0.0; n];
    for i in 0..n {
        v[i] = x[i] * x[i];
    }
    for i in 1..n {
        v[i] += v[i - 1] * 0.5;
    }
    let mut total = 0.0;
    for i in 0..n {
        let old = v[i];
        v[i] = old.sin();
        total += v[i] * old;
    }
    v[0] = 10.0;
    total + v[0] * x[0]
}

#[test]
fn writes_into_local_buffers() {
    let x = [0.5, -1.2, 0.8, 2.0];
    assert_close(&buffers_grad(&x), &fd(&|v: &[f64]| buffers(v), &x), 1e-6);
}

#[differentiate]
fn nested_break(x: &[f64], limit: f64) -> f64 {
    let mut acc = 0.0;
    for i in 0..x.len() {
        let mut row = 0.0;
        for j in 0..x.len() {
            row += x[i] * x[j];
            if row > limit {
                break;
            }
        }
        acc += row.tanh();
        if acc > 3.0 * limit {
            break;
        }
    }
    acc
}

#[test]
fn nested_loops_with_breaks() {
    let x = [0.4, 0.9, -0.3, 1.3, 0.2];
    for &limit in &[0.5, 1.0, 10.0] {
        let (g, _) = nested_break_grad(&x, limit);
        assert_close(&g, &fd(&|v: &[f64]| nested_break(v, limit), &x), 1e-6);
    }
}

mod physics {
    use autodiff::differentiate;

    #[differentiate]
    pub fn pair_energy(r: f64) -> f64 {
        let s = 1.0 / (r * r);
        s * s - s
    }

    /// A hand-written derivative: `soft_abs(x) = sqrt(x^2 + eps)`.
    #[differentiate(pullback = soft_abs_pullback)]
    pub fn soft_abs(x: f64, eps: f64) -> f64 {
        (x * x + eps).sqrt()
    }

    pub fn soft_abs_pullback(x: f64, eps: f64, d_out: f64) -> (f64, f64) {
        let y = soft_abs(x, eps);
        (d_out * x / y, d_out * 0.5 / y)
    }
}

#[differentiate]
fn composed(x: &[f64], eps: f64) -> f64 {
    let mut e = 0.0;
    for i in 0..x.len() {
        for j in 0..i {
            let r = physics::soft_abs(x[i] - x[j], eps) + 1.0;
            e += physics::pair_energy(r);
        }
    }
    e
}

#[test]
fn composition_across_modules_and_a_hand_written_pullback_inside_loops() {
    let x = [0.1, 0.7, -0.4, 1.5];
    let (gx, geps) = composed_grad(&x, 0.3);
    assert_close(&gx, &fd(&|v: &[f64]| composed(v, 0.3), &x), 1e-6);
    assert_close(&[geps], &fd(&|e: &[f64]| composed(&x, e[0]), &[0.3]), 1e-6);
}

#[differentiate]
fn array_time_steps(p0: &autodiff::ndarray::Array1<f64>, k: f64) -> f64 {
    let mut p = p0.to_owned();
    let mut v = p0.mapv(|e| e * 0.0);
    for _ in 0..50 {
        let a = &p * (-k);
        v = &v + &(&a * 0.01);
        p = &p + &(&v * 0.01);
    }
    p.mapv(|e| e * e).sum()
}

#[test]
fn carried_arrays() {
    let p0 = autodiff::ndarray::Array1::from_vec(vec![1.0, -0.5, 0.25]);
    let (gp, gk) = array_time_steps_grad(&p0, 3.0);
    let x0 = p0.to_vec();
    assert_close(
        gp.as_slice().unwrap(),
        &fd(
            &|v: &[f64]| array_time_steps(&autodiff::ndarray::Array1::from_vec(v.to_vec()), 3.0),
            &x0,
        ),
        1e-6,
    );
    assert_close(
        &[gk],
        &fd(&|k: &[f64]| array_time_steps(&p0, k[0]), &[3.0]),
        1e-6,
    );
}

#[path = "../autodiff-bench/src/sim.rs"]
mod sim;

#[test]
fn benchmark_workloads_match_their_hand_written_gradients() {
    let x = sim::rosenbrock_point(50);
    assert_close(&sim::rosenbrock_grad(&x), &sim::rosenbrock_hand(&x), 1e-12);
    let p = sim::lattice(27);
    assert_close(
        &sim::lennard_jones_grad(&p),
        &sim::lennard_jones_hand(&p),
        1e-10,
    );
    // Over points, with `enumerate` and `skip`: the same gradient, point by point.
    let points: Vec<f64> = sim::lennard_jones_points_grad(&sim::as_points(&p))
        .into_iter()
        .flatten()
        .collect();
    assert_close(&points, &sim::lennard_jones_hand(&p), 1e-10);
    // Over structs, differentiated field by field: `pos` is the gradient, the rest copied.
    let atoms = sim::as_atoms(&p);
    let g = sim::lennard_jones_atoms_grad(&atoms);
    assert!(g
        .iter()
        .enumerate()
        .all(|(i, a)| a.id == i && a.charge == 0.0));
    let flat: Vec<f64> = g.iter().flat_map(|a| a.pos).collect();
    assert_close(&flat, &sim::lennard_jones_hand(&p), 1e-10);
    // Held in a struct, per pair by a function of two atoms: the same, and `epsilon`'s
    // gradient is the energy.
    let cluster = sim::Cluster {
        atoms,
        epsilon: 1.0,
    };
    let g = cluster.energy_grad();
    let flat: Vec<f64> = g.atoms.iter().flat_map(|a| a.pos).collect();
    assert_close(&flat, &sim::lennard_jones_hand(&p), 1e-10);
    assert_close(&[g.epsilon], &[sim::lennard_jones(&p)], 1e-12);
    // The benchmark's hand-written gradient of the whole struct, at another `epsilon`.
    let cluster = sim::Cluster {
        epsilon: 0.7,
        ..cluster
    };
    let (g, h) = (cluster.energy_grad(), cluster.energy_grad_hand());
    let flat = |c: &sim::Cluster| {
        let mut v: Vec<f64> = c.atoms.iter().flat_map(|a| a.pos).collect();
        v.push(c.epsilon);
        v
    };
    assert_close(&flat(&g), &flat(&h), 1e-10);
}

/// A last loop that only accumulates runs fused with its reverse; these vary what is inside.
#[differentiate]
#[allow(unused_variables, unused_assignments)]
fn fused_variants(x: &[f64], c: f64) -> f64 {
    let mut other = 0.0;
    let mut s = 0.0;
    let mut k = 0;
    while k < x.len() {
        let mut inner = 0.0;
        let mut m = 0;
        while m < 3 {
            inner += x[k] * (m as f64 + c);
            m += 1;
        }
        let term = if x[k] > 0.0 { inner.sin() } else { inner * c };
        s -= term * x[(k + 1) % x.len()];
        other += term;
        k += 1;
        if s < -100.0 {
            break;
        }
    }
    s
}

#[test]
fn fused_last_loops_match_finite_differences() {
    let x = [0.3, -0.8, 1.2, 0.5, -0.1];
    let (v, (g, gc)) = fused_variants_value_and_grad(&x, 0.7);
    assert_eq!(v, fused_variants(&x, 0.7));
    assert_close(&g, &fd(&|v: &[f64]| fused_variants(v, 0.7), &x), 1e-6);
    assert_close(
        &[gc],
        &fd(&|c: &[f64]| fused_variants(&x, c[0]), &[0.7]),
        1e-6,
    );
}

/// Loops whose reverse visits the iterations forwards (each carried value only accumulates, no
/// per-iteration records, no stores) beside loops that must run backwards (a product, a sum
/// read again in its own update, a recurrence through a buffer, records of nested loops).
#[differentiate]
fn reverse_orders(x: &[f64], c: f64) -> f64 {
    let n = x.len();
    // Forwards: accumulates only.
    let mut s = 0.0;
    for i in 0..n {
        s += (x[i] * c).sin();
    }
    // Backwards: each iteration's adjoint depends on the later ones.
    let mut p = 1.0;
    for i in 0..n {
        p = p * (1.0 + 0.1 * x[i]);
    }
    let mut r = 0.5;
    for i in 0..n {
        r += 0.3 * r * x[i];
    }
    let mut h = 0.0;
    for i in 0..n {
        h = 0.5 * h + x[i] * c;
    }
    // Backwards: an iteration reads what the one before it wrote.
    let mut b = vec![0.0; n];
    let mut t = 0.0;
    for i in 1..n {
        b[i] = b[i - 1] * 0.5 + x[i];
        t += b[i] * b[i];
    }
    // The inner loops forwards (one with an `if` inside), the outer one backwards.
    let mut e = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let d = x[i] - x[j];
            let w = if d > 0.0 { d * d * c } else { -d.sin() };
            e += w;
        }
        for j in 0..i {
            e -= 0.1 * x[j] * x[i];
        }
    }
    // Forwards over a reversed, stepped range.
    let mut q = 0.0;
    for i in (0..n).rev().step_by(2) {
        q += x[i].exp() * c;
    }
    (s * p + r.tanh() + t.sqrt() + e * s + q + h * h).sin()
}

#[test]
fn reverse_sweeps_in_either_order_match_finite_differences() {
    let x = [0.3, -0.8, 1.2, 0.5, -0.1, 0.9];
    let (v, (g, gc)) = reverse_orders_value_and_grad(&x, 0.7);
    assert_eq!(v, reverse_orders(&x, 0.7));
    assert_close(&g, &fd(&|v: &[f64]| reverse_orders(v, 0.7), &x), 1e-6);
    assert_close(
        &[gc],
        &fd(&|c: &[f64]| reverse_orders(&x, c[0]), &[0.7]),
        1e-6,
    );
}

/// A loop over data points that is not the function's last statement, with a scratch buffer
/// (`terms`, filled for every component before it is read) and a scalar defined before it:
/// it runs fused with its reverse where it stands, with a unit adjoint scaled afterwards.
#[differentiate]
fn mixture(x: &[f64], centres: &[f64], k: usize) -> f64 {
    let w = centres[0] * 0.5 + 1.0;
    let mut terms = vec![0.0; k];
    let mut total = 0.0;
    for p in 0..x.len() {
        for c in 0..k {
            let d = x[p] - centres[c];
            terms[c] = -d * d * w;
        }
        let mut mx = terms[0];
        for c in 1..k {
            mx = mx.max(terms[c]);
        }
        let mut se = 0.0;
        for c in 0..terms.len() {
            se += (terms[c] - mx).exp();
        }
        total += se.ln() + mx;
    }
    // Nonlinear in the loop's output: its adjoint is known only after the loop.
    total * total.sin()
}

/// The same shape, but each iteration first reads what the previous one wrote: the buffer
/// carries values between iterations, so the loop is reversed in reverse order.
#[differentiate]
fn carried_through_a_buffer(x: &[f64], k: usize) -> f64 {
    let mut terms = vec![0.0; k];
    let mut total = 0.0;
    for p in 0..x.len() {
        let prev = terms[k - 1];
        for c in 0..k {
            terms[c] = (x[p] * (c as f64 + 1.0) + prev).sin();
        }
        let mut s = 0.0;
        for c in 0..k {
            s += terms[c] * terms[c];
        }
        total += s;
    }
    total.exp()
}

/// A scratch buffer of an inner loop: every component fills `v` (then adds into it) before
/// reading it, and nothing else in the point loop touches it, so the point loop carries
/// nothing through it and still runs fused with its reverse.
#[differentiate]
fn nested_scratch(x: &[f64], a: &[f64], k: usize, dim: usize) -> f64 {
    let mut v = vec![0.0; dim];
    let mut main = vec![0.0; k];
    let mut total = 0.0;
    for p in 0..x.len() / dim {
        let xp = &x[p * dim..(p + 1) * dim];
        for c in 0..k {
            for j in 0..dim {
                v[j] = a[c * dim + j] * xp[j];
            }
            for i in 0..dim {
                let xi = xp[i];
                for j in i + 1..dim {
                    v[j] += a[(c + j) % (k * dim)] * xi;
                }
            }
            let mut sq = 0.0;
            for j in 0..dim {
                sq += v[j].sin() * v[j];
            }
            main[c] = sq;
        }
        let mut se = 0.0;
        for c in 0..k {
            se += main[c].exp();
        }
        total += se.ln();
    }
    total * total.cos()
}

#[test]
fn point_loops_with_scratch_buffers_match_finite_differences() {
    let x = [0.3, -0.8, 1.2, 0.5, -0.1, 0.9];
    let centres = [0.2, -0.5, 0.7];
    let (v, (gx, gc)) = mixture_value_and_grad(&x, &centres, 3);
    assert_eq!(v, mixture(&x, &centres, 3));
    assert_close(&gx, &fd(&|v: &[f64]| mixture(v, &centres, 3), &x), 1e-6);
    assert_close(&gc, &fd(&|c: &[f64]| mixture(&x, c, 3), &centres), 1e-6);
    let (pgx, pgc, ()) = mixture_pullback(&x, &centres, 3, 2.0);
    for (p, g) in pgx.iter().chain(&pgc).zip(gx.iter().chain(&gc)) {
        assert!((p - 2.0 * g).abs() <= 1e-12 * g.abs().max(1.0));
    }
    let a = [0.4, -0.2, 0.9, 0.1, -0.7, 0.3];
    let (v, (gx, ga)) = nested_scratch_value_and_grad(&x, &a, 2, 3);
    assert_eq!(v, nested_scratch(&x, &a, 2, 3));
    assert_close(&gx, &fd(&|v: &[f64]| nested_scratch(v, &a, 2, 3), &x), 1e-6);
    assert_close(&ga, &fd(&|v: &[f64]| nested_scratch(&x, v, 2, 3), &a), 1e-6);
    let (v, gx) = carried_through_a_buffer_value_and_grad(&x, 3);
    assert_eq!(v, carried_through_a_buffer(&x, 3));
    let want = fd(&|v: &[f64]| carried_through_a_buffer(v, 3), &x);
    assert_close(&gx, &want, 1e-6);
}

/// Explicit steps with a stage buffer written before it is read in every step (`k[0]`, then
/// the rest by a loop), checkpointed and recorded.
macro_rules! staged {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(x: &[f64], steps: usize) -> f64 {
            let n = x.len();
            let mut y = vec![0.0; n];
            let mut k = vec![0.0; n];
            for i in 0..n {
                y[i] = x[i];
            }
            for _ in 0..steps {
                k[0] = -y[0];
                for i in 1..n {
                    k[i] = x[i] * y[i - 1] - y[i];
                }
                for i in 0..n {
                    y[i] += 0.05 * (k[i] + (y[i] * k[i]).sin());
                }
            }
            y[n - 1] * y[0]
        }
    };
}
staged!(
    #[differentiate(checkpoint)]
    staged_checkpointed
);
staged!(
    #[differentiate]
    staged_recorded
);

/// A trajectory kept step by step (`hist`, only written by the steps): checkpointed, each
/// step keeps its state but not the trajectory.
macro_rules! trajectory {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(x: &[f64], steps: usize) -> f64 {
            let n = x.len();
            let mut y = x.to_vec();
            let mut k = vec![0.0; n];
            let mut hist = vec![0.0; steps * n];
            for t in 0..steps {
                for i in 0..n {
                    k[i] = (y[i] * y[(i + 1) % n]).sin();
                }
                for i in 0..n {
                    y[i] += 0.1 * k[i];
                    hist[t * n + i] = y[i] * (t as f64 + 1.0);
                }
            }
            let mut s = 0.0;
            for i in 0..steps * n {
                s += hist[i] * hist[i].cos();
            }
            s + y[0]
        }
    };
}
trajectory!(
    #[differentiate(checkpoint)]
    trajectory_checkpointed
);
trajectory!(
    #[differentiate]
    trajectory_recorded
);

#[test]
fn checkpointed_trajectories_match_the_recorded_gradient() {
    let x = [0.4, -0.3, 0.8, 0.5];
    let (v, g) = trajectory_checkpointed_value_and_grad(&x, 7);
    assert_eq!(v, trajectory_checkpointed(&x, 7));
    assert_close(&g, &trajectory_recorded_grad(&x, 7), 1e-12);
    assert_close(
        &g,
        &fd(&|v: &[f64]| trajectory_checkpointed(v, 7), &x),
        1e-6,
    );
}

#[test]
fn checkpointed_stages_match_the_recorded_gradient() {
    let x = [0.4, -0.3, 0.8, 0.5, -0.6];
    let (v, g) = staged_checkpointed_value_and_grad(&x, 12);
    assert_eq!(v, staged_checkpointed(&x, 12));
    assert_close(&g, &staged_recorded_grad(&x, 12), 1e-12);
    assert_close(&g, &fd(&|v: &[f64]| staged_checkpointed(v, 12), &x), 1e-6);
}

#[differentiate]
fn matrix_loops(a: &autodiff::ndarray::Array2<f64>, w: &[f64]) -> f64 {
    let (rows, cols) = (a.nrows(), a.ncols());
    let mut acc: autodiff::ndarray::Array1<f64> = autodiff::ndarray::Array1::zeros(rows);
    for i in 0..rows {
        for j in 0..cols {
            acc[i] += a[[i, j]] * w[j];
        }
    }
    let mut s = 0.0;
    for i in 0..rows {
        s += acc[i].tanh();
    }
    s
}

#[test]
fn two_dimensional_indexing_and_an_array_buffer() {
    let a = autodiff::ndarray::Array2::from_shape_fn((3, 2), |(i, j)| {
        0.3 * i as f64 - 0.4 * j as f64 + 0.1
    });
    let w = [0.7, -1.1];
    let (ga, gw) = matrix_loops_grad(&a, &w);
    let flat: Vec<f64> = a.iter().copied().collect();
    let want_a = fd(
        &|v: &[f64]| {
            matrix_loops(
                &autodiff::ndarray::Array2::from_shape_vec((3, 2), v.to_vec()).unwrap(),
                &w,
            )
        },
        &flat,
    );
    assert_close(&ga.iter().copied().collect::<Vec<_>>(), &want_a, 1e-6);
    assert_close(&gw, &fd(&|v: &[f64]| matrix_loops(&a, v), &w), 1e-6);
}

#[differentiate]
fn reads_past_the_end(x: &[f64], k: usize) -> f64 {
    x[k] * 2.0
}

#[test]
fn out_of_bounds_reads_panic_as_the_primal_does() {
    let x = [1.0, 2.0];
    let text =
        |e: Box<dyn std::any::Any + Send>| e.downcast_ref::<String>().cloned().unwrap_or_default();
    let primal = text(std::panic::catch_unwind(|| reads_past_the_end(&x, 5)).unwrap_err());
    let grad = text(std::panic::catch_unwind(|| reads_past_the_end_grad(&x, 5)).unwrap_err());
    assert!(primal.contains("index out of bounds"), "{primal}");
    assert_eq!(primal, grad);
}

/// A final accumulating loop whose body fills and reads its own buffer (fresh every
/// iteration): it runs fused with its reverse.
#[differentiate]
fn local_buffer_sum(x: &[f64]) -> f64 {
    let n = x.len();
    let mut total = 0.0;
    for r in 0..n {
        let mut terms = vec![0.0; n];
        for i in 0..n {
            terms[i] = (x[i] * x[r]).sin();
        }
        let mut mx = terms[0];
        for i in 1..n {
            mx = mx.max(terms[i]);
        }
        let mut s = 0.0;
        for i in 0..n {
            s += (terms[i] - mx).exp();
        }
        total += s.ln() + mx;
    }
    total
}

#[test]
fn a_buffer_declared_in_a_fused_loop() {
    let x: Vec<f64> = (0..6).map(|i| 0.4 * i as f64 - 0.9).collect();
    let (v, g) = local_buffer_sum_value_and_grad(&x);
    assert_eq!(v, local_buffer_sum(&x));
    assert_close(&g, &fd(&local_buffer_sum, &x), 1e-6);
}

/// Regression (found by the macro_rules hygiene test): the reverse sweep reads only this
/// buffer's shape (for its adjoint), so its values are freed early and the shape is kept.
#[differentiate]
fn ends_of_a_buffer(x: &[f64]) -> f64 {
    let mut acc = vec![0.0; x.len()];
    for i in 0..x.len() {
        acc[i] = x[i].sin() * x[i];
    }
    acc[x.len() - 1] + 2.0 * acc[0]
}

#[test]
fn a_buffer_whose_shape_alone_the_reverse_reads() {
    let x = [0.3, -0.7, 1.1, 0.4];
    assert_close(&ends_of_a_buffer_grad(&x), &fd(&ends_of_a_buffer, &x), 1e-7);
}

/// Regression (found by GradBench's `det`): the determinant as a sum over all permutations,
/// the permutation kept in an integer buffer that each iteration advances after its product
/// read `a[i * n + perm[i]]`. The reverse sweep recomputed that index from the buffer as the
/// loop had left it: a silently wrong gradient. Such values are now recorded.
#[differentiate]
fn det_by_permutations(a: &[f64], n: usize) -> f64 {
    let count: usize = (1..=n).product();
    let mut perm = vec![0usize; n];
    for i in 0..n {
        perm[i] = i;
    }
    let mut odd = false;
    let mut total = 0.0;
    for _ in 0..count {
        let mut prod = if odd { -1.0 } else { 1.0 };
        for i in 0..n {
            prod *= a[i * n + perm[i]];
        }
        total += prod;
        // The next permutation in lexicographic order; each swap flips the sign.
        let mut k = n - 1;
        while k > 0 && perm[k - 1] > perm[k] {
            k -= 1;
        }
        if k > 0 {
            let mut l = n - 1;
            while perm[l] < perm[k - 1] {
                l -= 1;
            }
            perm.swap(k - 1, l);
            odd = !odd;
            let mut lo = k;
            let mut hi = n - 1;
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

#[test]
fn an_index_read_from_a_buffer_that_changes_later() {
    let a = [0.9, -0.3, 0.5, 0.2, 1.1, -0.7, 0.4, 0.6, 1.3];
    // d det / d a_ij is the cofactor C_ij.
    let m = |i: usize, j: usize| a[i * 3 + j];
    let mut cofactors = vec![0.0; 9];
    for i in 0..3 {
        for j in 0..3 {
            let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
            let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
            cofactors[i * 3 + j] = m(r0, c0) * m(r1, c1) - m(r0, c1) * m(r1, c0);
        }
    }
    let det: f64 = (0..3).map(|j| a[j] * cofactors[j]).sum();
    let (value, grad) = det_by_permutations_value_and_grad(&a, 3);
    assert!((value - det).abs() < 1e-14, "{value} vs {det}");
    assert_close(&grad, &cofactors, 1e-14);
    let b: Vec<f64> = (0..16)
        .map(|k| ((k * 7 + 3) % 11) as f64 / 11.0 - 0.4)
        .collect();
    assert_close(
        &det_by_permutations_grad(&b, 4),
        &fd(&|v| det_by_permutations(v, 4), &b),
        1e-7,
    );
}

/// Regression, same cause: a branch on a buffer element that a later store in the iteration
/// flips. The reverse sweep re-evaluated the condition and took the other arm.
#[differentiate]
fn alternating(x: &[f64]) -> f64 {
    let mut flag = [0usize; 1];
    let mut total = 1.0;
    for i in 0..x.len() {
        if flag[0] == 0 {
            total = total * x[i];
        } else {
            total = total + x[i] * x[i];
        }
        flag[0] = 1 - flag[0];
    }
    total
}

#[test]
fn a_branch_on_a_buffer_that_changes_later() {
    let x = [0.7, -1.2, 0.4, 2.0, -0.3];
    // total: ((((1 * x0) + x1^2) * x2) + x3^2) * x4
    let t2 = (x[0] + x[1] * x[1]) * x[2];
    let t3 = t2 + x[3] * x[3];
    let want = [
        x[2] * x[4],
        2.0 * x[1] * x[2] * x[4],
        (x[0] + x[1] * x[1]) * x[4],
        2.0 * x[3] * x[4],
        t3,
    ];
    assert!((alternating(&x) - t3 * x[4]).abs() < 1e-14);
    assert_close(&alternating_grad(&x), &want, 1e-14);
}

/// `v.swap(i, j)` on a buffer of differentiated values: the adjoints move with the values.
#[differentiate]
fn rotated_by_swaps(x: &[f64]) -> f64 {
    let n = x.len();
    let mut v = vec![0.0; n];
    for i in 0..n {
        v[i] = x[i] * x[i];
    }
    for k in 0..n - 1 {
        v.swap(k, k + 1);
    }
    let mut s = 0.0;
    for i in 0..n {
        s += v[i] * (i as f64 + 1.0);
    }
    s
}

#[test]
fn swaps_in_a_buffer() {
    let x = [0.5, -1.5, 2.0, 0.25];
    let n = x.len();
    // After the swaps x_j^2 sits at position j - 1 (x_0^2 at the end), weighted by position + 1.
    let want: Vec<f64> = (0..n)
        .map(|j| 2.0 * x[j] * if j == 0 { n as f64 } else { j as f64 })
        .collect();
    assert_close(&rotated_by_swaps_grad(&x), &want, 1e-14);
}

/// `#[differentiate(checkpoint)]`: a time-stepping loop over buffers (an explicit midpoint
/// integrator), differentiated by keeping each step's buffers and running the step again in
/// the reverse sweep. The same function without the option records its inner loops' reads.
macro_rules! midpoint {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(k: &[f64], steps: usize) -> f64 {
            let n = k.len();
            let h = 0.1;
            let mut y = vec![0.0; n];
            let mut mid = vec![0.0; n];
            for i in 0..n {
                y[i] = 1.0 + 0.1 * i as f64;
            }
            for _ in 0..steps {
                mid[0] = y[0] - h * 0.5 * k[0] * y[0];
                for i in 1..n {
                    mid[i] = y[i] + h * 0.5 * (k[i] * y[i - 1] - y[i]);
                }
                y[0] = y[0] - h * k[0] * mid[0];
                for i in 1..n {
                    y[i] = y[i] + h * (k[i] * mid[i - 1] - mid[i]);
                }
            }
            let mut s = 0.0;
            for i in 0..n {
                s += y[i] * y[i];
            }
            s
        }
    };
}
midpoint!(
    #[differentiate(checkpoint)]
    midpoint_checkpointed
);
midpoint!(
    #[differentiate]
    midpoint_recorded
);
midpoint!(
    #[differentiate(wrt(k), checkpoint)]
    midpoint_both_options
);

#[test]
fn checkpointed_time_stepping() {
    let k = [0.7, -0.4, 1.3, 0.2, 0.9];
    let fd = fd(&|v| midpoint_checkpointed(v, 12), &k);
    let (value, grad) = midpoint_checkpointed_value_and_grad(&k, 12);
    assert_eq!(value, midpoint_recorded(&k, 12));
    assert_close(&grad, &fd, 1e-7);
    assert_close(&grad, &midpoint_recorded_grad(&k, 12), 1e-14);
    assert_close(&midpoint_both_options_grad(&k, 12), &grad, 0.0);
}

/// The same body with and without `checkpoint`, for the loop shapes checkpointing must handle.
macro_rules! with_and_without_checkpoint {
    ($plain:ident, $ck:ident, |$x:ident| $body:block) => {
        #[differentiate]
        fn $plain($x: &[f64]) -> f64 $body
        #[differentiate(checkpoint)]
        fn $ck($x: &[f64]) -> f64 $body
    };
}

// A `while` loop (the reverse counts its trips) over a buffer, with an inner loop.
with_and_without_checkpoint!(while_recorded, while_checkpointed, |x| {
    let n = x.len();
    let mut y = x.to_vec();
    let mut t = 0.0;
    let mut steps = 0;
    while t < 1.0 {
        for i in 1..n {
            y[i] = y[i] + 0.1 * (y[i - 1] * x[i]).sin();
        }
        t += 0.3;
        steps += 1;
    }
    let mut s = 0.0;
    for i in 0..n {
        s += y[i] * y[i];
    }
    s + steps as f64
});

// A `for` loop left by `break`, with carried state and an inner loop inside an `if` arm.
with_and_without_checkpoint!(break_recorded, break_checkpointed, |x| {
    let n = x.len();
    let mut y = x.to_vec();
    let mut acc = 0.0;
    for k in 0..10 {
        for i in 1..n {
            y[i] = y[i] * 0.9 + 0.1 * y[i - 1] * y[i - 1];
        }
        acc += y[n - 1];
        if acc > 2.5 {
            break;
        }
        if k % 2 == 0 {
            for i in 0..n {
                y[i] += 0.01 * x[i];
            }
        } else {
            acc *= 0.99;
        }
    }
    acc + y[0]
});

#[test]
fn checkpointed_while_break_and_arms() {
    let x = [0.5, 0.8, -0.3, 1.1];
    assert_eq!(while_checkpointed(&x), while_recorded(&x));
    assert_close(
        &while_checkpointed_grad(&x),
        &while_recorded_grad(&x),
        1e-14,
    );
    assert_close(&while_checkpointed_grad(&x), &fd(&while_recorded, &x), 1e-7);
    assert_eq!(break_checkpointed(&x), break_recorded(&x));
    assert_close(
        &break_checkpointed_grad(&x),
        &break_recorded_grad(&x),
        1e-14,
    );
    assert_close(&break_checkpointed_grad(&x), &fd(&break_recorded, &x), 1e-7);
}

/// Tapes with their room reserved: a time loop whose first inner loop reads each buffer
/// element once per iteration before overwriting it (the same number of reads every
/// iteration: reserved, found at the tape's end), a second whose reads sit in `if` arms (a
/// varying number: pushed, with each iteration's start recorded), and nested loops at the top
/// of a counted body (their exit records reserved by it).
#[differentiate]
fn reserved_tapes(x: &[f64], steps: usize) -> f64 {
    let n = x.len();
    let mut buf = vec![0.0; n];
    let mut total = 0.0;
    for step in 0..steps {
        for i in 0..n {
            let prev = buf[i];
            buf[i] = (prev + x[i]).sin() * (1.0 + 0.1 * step as f64);
        }
        let mut acc = 0.0;
        for i in 0..n {
            if x[i] > 0.0 {
                acc += buf[i] * buf[i];
            } else {
                acc -= buf[i];
            }
        }
        for i in 0..n {
            let mut s = 0.0;
            for j in 0..i {
                s += buf[j] * x[i];
            }
            buf[i] = buf[i] * acc.cos() + 0.1 * s;
        }
        total += acc;
    }
    total
}

#[test]
fn reserved_tapes_match_finite_differences() {
    let x = [0.4, -0.7, 1.2, 0.3, -0.2];
    let g = reserved_tapes_grad(&x, 4);
    let want = fd(&|v| reserved_tapes(v, 4), &x);
    assert_close(&g, &want, 1e-6);
    let (value, _) = reserved_tapes_value_and_grad(&x, 4);
    assert_eq!(value, reserved_tapes(&x, 4));
}

// Found by `scripts/differential.sh 500 250000` once the generator wrote `floor()` and its
// kin: a loop-invariant read (`x[0]`) whose adjoint dies in a piecewise-constant function
// still got a register and an index slot in the reverse loop, and the slot, never written,
// was an `Option` of no inferable type (the gradient did not compile).
#[differentiate]
fn dead_invariant_read(x: &[f64], a: f64) -> f64 {
    let mut w = a.tanh() + 3.0;
    let mut steps = 0;
    while w > 0.5 && steps < 20 {
        w = w * 0.6 + 0.05 * (x[0].tanh() * 3.0).trunc() * 0.25 + a.tanh() * x[1];
        steps += 1;
    }
    w
}

#[test]
fn invariant_reads_with_dead_adjoints_compile_and_match_finite_differences() {
    for (x, a) in [([0.4, 0.3], 0.2), ([0.9, -0.2], -0.4)] {
        let (g, ga) = dead_invariant_read_grad(&x, a);
        assert_close(&g, &fd(&|v: &[f64]| dead_invariant_read(v, a), &x), 1e-6);
        let h = 1e-6;
        let want = (dead_invariant_read(&x, a + h) - dead_invariant_read(&x, a - h)) / (2.0 * h);
        assert!((ga - want).abs() < 1e-6, "{ga} vs {want}");
        assert_eq!(g[0], 0.0);
    }
}

// Values of transcendental functions inside reversed loops are recorded and popped by the
// reverse sweep (`Rule::costly`), in branches, nested loops, `while` loops and loops with
// `break`, and computed again where the loop is checkpointed.
#[differentiate]
fn costly_records(x: &[f64], c: f64) -> f64 {
    let mut s = c;
    let mut k = 0;
    while k < x.len() && s < 8.0 {
        if x[k] > 0.0 {
            s = s + (x[k] * s).sin().exp() * 0.5;
        } else {
            s = s * (1.0 + x[k] * x[k]).ln() + x[k].tanh();
        }
        k += 1;
    }
    let mut acc = 0.0;
    for i in 0..x.len() {
        let mut row = s.cos();
        for j in 0..x.len() {
            row = row * 0.9 + (x[i] - x[j]).tanh() * x[j].exp();
        }
        acc = acc + row.atan() * c.powf(1.5);
        if acc > 50.0 {
            break;
        }
    }
    acc * (1.0 + s * s).sqrt()
}

#[differentiate(checkpoint)]
fn costly_checkpointed(x: &[f64], steps: usize) -> f64 {
    let mut u = x.to_vec();
    for _ in 0..steps {
        for i in 0..u.len() {
            u[i] = u[i] + 0.1 * (u[i] * 0.5).sin().exp() - 0.05 * u[i];
        }
    }
    let mut s = 0.0;
    for i in 0..u.len() {
        s += u[i].ln_1p().tanh();
    }
    s * 2.0
}

/// `f_grad(x, c)` against central differences in `x` and in `c`.
fn assert_slice_and_scalar_grad(
    f: impl Fn(&[f64], f64) -> f64,
    grad: impl Fn(&[f64], f64) -> (Vec<f64>, f64),
    x: &[f64],
    c: f64,
) {
    let (g, gc) = grad(x, c);
    assert_close(&g, &fd(&|v: &[f64]| f(v, c), x), 1e-6);
    let h = 1e-6;
    let want = (f(x, c + h) - f(x, c - h)) / (2.0 * h);
    assert!(
        (gc - want).abs() <= 1e-6 * want.abs().max(1.0),
        "{gc} vs {want}"
    );
}

#[test]
fn costly_values_recorded_in_reversed_loops_match_finite_differences() {
    for (x, c) in [
        (vec![0.4, -0.7, 1.2, 0.3, -0.2], 0.8),
        (vec![1.5, 2.0, 1.1, 0.9], 1.3),
        (vec![-0.5, -0.1, 0.6], 2.5),
    ] {
        assert_slice_and_scalar_grad(costly_records, costly_records_grad, &x, c);
        assert_eq!(
            costly_records_value_and_grad(&x, c).0,
            costly_records(&x, c)
        );
    }
    let x = [0.3, 0.8, 0.1, 0.5];
    let g = costly_checkpointed_grad(&x, 6);
    assert_close(&g, &fd(&|v: &[f64]| costly_checkpointed(v, 6), &x), 1e-6);
}

// `continue` and `break` between costly values: the reverse pops only what the iteration
// recorded before it left.
#[differentiate]
fn costly_continue(x: &[f64], c: f64) -> f64 {
    let mut s = c;
    for i in 0..x.len() {
        let e = (x[i] * s).exp();
        if e > 2.0 {
            s = s * 0.5 + e.ln();
            continue;
        }
        let t = (s + x[i]).tanh();
        s = s + t * e;
        if s > 6.0 {
            break;
        }
    }
    s * s.sin()
}

#[test]
fn costly_values_with_continue_and_break_match_finite_differences() {
    for (x, c) in [
        (vec![0.4, -0.7, 1.2, 0.3, -0.2, 0.9], 0.8),
        (vec![1.5, 2.0, 1.1, 0.9], 1.3),
        (vec![-0.5, -0.1, 0.6, 0.2], 2.5),
    ] {
        assert_slice_and_scalar_grad(costly_continue, costly_continue_grad, &x, c);
    }
}

/// Per-point code over parts of slices: `&x[a..b]` of a differentiated slice is a view whose
/// adjoint adds into that part (read only by index, its elements' adjoints go into the slice's
/// directly); of a constant slice it is plain code.
#[differentiate]
fn parts(p: &[f64], data: &[f64], v: &Vec<f64>, n: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..n {
        let pi = &p[2 * i..2 * i + 2];
        let di = &data[i * 2..=i * 2 + 1];
        let tail = &pi[1..];
        s += (pi[0] * di[1]).sin() + tail[0] * tail[0] * di[0];
    }
    let rest = &p[2 * n..];
    let head = &v[..2];
    let mut t = 0.0;
    for k in 0..rest.len() {
        t += rest[k].exp() * head[k % 2];
    }
    // A part carried from one iteration to the next keeps an adjoint of its own.
    let mut cur = &p[0..2];
    let mut u = 0.0;
    for k in 0..3 {
        u += cur[0] * cur[1].cos();
        cur = &p[k + 1..k + 3];
    }
    // A part sliced again inside a loop keeps its adjoint; the inner parts add into it.
    let head = &p[0..3];
    for k in 0..2 {
        let w = &head[k..k + 2];
        u += w[0] * w[1];
    }
    // A part copied inside a loop (`to_vec`) keeps its adjoint too.
    let q = &p[1..3];
    for k in 0..2 {
        let c = q.to_vec();
        u += c[k] * c[1 - k];
    }
    s * t + (&v[1..])[0] + u * cur[1]
}

#[test]
fn range_slices_match_finite_differences() {
    let p = [0.3, -0.7, 1.1, 0.4, -0.2, 0.9, 0.5];
    let data = [0.2, 1.5, -0.6, 0.8, 1.2, -0.3];
    let v = vec![0.7, -1.2, 0.4];
    let n = 3;
    let (value, (dp, ddata, dv)) = parts_value_and_grad(&p, &data, &v, n);
    assert_eq!(value, parts(&p, &data, &v, n));
    assert_close(&dp, &fd(&|q| parts(q, &data, &v, n), &p), 1e-6);
    assert_close(&ddata, &fd(&|q| parts(&p, q, &v, n), &data), 1e-6);
    assert_close(&dv, &fd(&|q| parts(&p, &data, &q.to_vec(), n), &v), 1e-6);
}

/// Only `p` differentiated: `data` and its parts are plain code, their elements known floats.
#[differentiate(wrt(p))]
fn parts_wrt(p: &[f64], data: &[f64], n: usize) -> f64 {
    let mut s = 0.0;
    for i in 0..n {
        let di = &data[i * 2..(i + 1) * 2];
        let mut inner = 0.0;
        for j in 0..2 {
            inner += p[j] * di[j];
        }
        s += inner.tanh();
    }
    s
}

#[test]
fn range_slices_of_constants_match_finite_differences() {
    let p = [0.3, -0.7];
    let data = [0.2, 1.5, -0.6, 0.8, 1.2, -0.3];
    let dp = parts_wrt_grad(&p, &data, 3);
    assert_close(&dp, &fd(&|q| parts_wrt(q, &data, 3), &p), 1e-6);
    // The pullback differentiates every float parameter, `data` too.
    let (gp, gdata, ()) = parts_wrt_pullback(&p, &data, 3, 2.0);
    assert_close(&gp, &dp.iter().map(|g| 2.0 * g).collect::<Vec<_>>(), 1e-12);
    let want: Vec<f64> = fd(&|q| parts_wrt(&p, q, 3), &data)
        .iter()
        .map(|g| 2.0 * g)
        .collect();
    assert_close(&gdata, &want, 1e-6);
}

#[test]
#[should_panic(expected = "autodiff: slice `[4..6]` of a slice of length 5: range out of bounds")]
fn range_slices_out_of_bounds_name_the_range() {
    let p = [0.3, -0.7, 1.1, 0.4, -0.2];
    let _ = parts_value_and_grad(&p, &[0.0; 6], &vec![0.0; 3], 3);
}

/// Heun's method with stage buffers, checkpointed and not: the stages are scratch buffers
/// (written in full before they are read in every step), and the reads whose values no
/// reverse needs (`y_tmp[i] = y[i] + h * k1[i]`, linear in both) are not taped.
macro_rules! heun {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(x: &[f64], steps: usize) -> f64 {
            let n = x.len();
            let h = 1.0 / steps as f64;
            let mut y = vec![0.0; n];
            let mut k1 = vec![0.0; n];
            let mut k2 = vec![0.0; n];
            let mut y_tmp = vec![0.0; n];
            for i in 0..n {
                y[i] = 0.5 + 0.1 * i as f64;
            }
            for _ in 0..steps {
                k1[0] = x[0] - y[0];
                for i in 1..n {
                    k1[i] = x[i] * y[i - 1] - y[i].sin();
                }
                for i in 0..n {
                    y_tmp[i] = y[i] + h * k1[i];
                }
                k2[0] = x[0] - y_tmp[0];
                for i in 1..n {
                    k2[i] = x[i] * y_tmp[i - 1] - y_tmp[i].sin();
                }
                for i in 0..n {
                    y[i] += 0.5 * h * (k1[i] + k2[i]);
                }
            }
            let mut s = 0.0;
            for i in 0..n {
                s += y[i] * y[i];
            }
            s
        }
    };
}
heun!(
    #[differentiate]
    heun_taped
);
heun!(
    #[differentiate(checkpoint)]
    heun_checkpointed
);

#[test]
fn integrators_with_stage_buffers_match_finite_differences() {
    let x = [0.7, -0.4, 1.3, 0.2, -0.9];
    for steps in [1, 3, 8] {
        let want = fd(&|v| heun_taped(v, steps), &x);
        assert_close(&heun_taped_grad(&x, steps), &want, 1e-6);
        assert_close(&heun_checkpointed_grad(&x, steps), &want, 1e-6);
        assert_eq!(heun_taped(&x, steps), heun_checkpointed(&x, steps));
    }
}

// A buffer read as a whole by an operation (an array product, a call) and written by index
// afterwards: the reverse sweep reads a copy taken where the operation stood, not the buffer
// as the forward sweep left it (`tbr::snapshot_overwritten_buffers`). Found by the random
// programs: `q` below gave `d/da` from the overwritten `q`, silently wrong.
fn weighted(v: &Vec<f64>, c: f64) -> f64 {
    v.iter()
        .enumerate()
        .map(|(i, x)| x * x * (i as f64 + c))
        .sum()
}

#[differentiate]
fn weighted_d(v: &Vec<f64>, c: f64) -> f64 {
    let mut s = 0.0;
    for i in 0..v.len() {
        s += v[i] * v[i] * (i as f64 + c);
    }
    s
}

#[differentiate]
fn overwritten_after_whole_reads(x: &[f64]) -> f64 {
    let mut q = autodiff::ndarray::Array1::<f64>::zeros(x.len());
    for i in 0..x.len() {
        q[i] = x[i] * x[3];
    }
    let t = &q * &q * x[0];
    q[1] = x[2] * 2.0;
    let mut buf = vec![0.0; x.len()];
    let mut s = t.mapv(f64::sin).sum() + q.sum();
    for k in 0..3 {
        for i in 0..x.len() {
            buf[i] = buf[i] * 0.5 + x[i] * (k as f64 + 1.0);
        }
        s += weighted_d(&buf, x[1]);
        buf[0] = s.tanh();
    }
    s
}

#[test]
fn buffers_written_after_whole_reads_match_finite_differences() {
    let x = [0.3, -0.7, 0.5, 1.1];
    assert!((weighted(&x.to_vec(), 0.5) - weighted_d(&x.to_vec(), 0.5)).abs() < 1e-12);
    let g = overwritten_after_whole_reads_grad(&x);
    assert_close(&g, &fd(&overwritten_after_whole_reads, &x), 1e-6);
}

/// Element updates of local buffers in every form `+=` takes and a few it must not be
/// mistaken for: the reverse of `buf[i] += e` leaves the element's adjoint where it stands
/// (the old value gets it unchanged), so these check that nothing is lost or counted twice.
#[differentiate]
fn element_updates(x: &[f64], dt: f64, steps: usize) -> f64 {
    let n = x.len();
    let mut p = x.to_vec();
    let mut v = vec![0.0; n];
    for _ in 0..steps {
        for i in 1..n - 1 {
            v[i] += dt * (p[i - 1] - 2.0 * p[i] + p[i + 1]);
        }
        for i in 0..n {
            // The three spellings of an update, and one with the old value read twice.
            p[i] += dt * v[i];
            p[i] = p[i] - 0.1 * dt * p[i] * p[i];
            p[i] = 0.5 * dt * v[i] + p[i];
            v[i] = v[i] + v[i] * dt;
        }
    }
    let mut w = vec![0.0; n];
    for i in 0..n {
        // Not updates: the old value with a minus sign, and read again after the store.
        w[i] = p[i].sin();
        w[i] = 1.0 - w[i];
        let old = w[i];
        w[i] = old + p[i];
        w[0] += old * 0.5;
        // A store into the buffer between the read and the update (the same element at
        // `i = 0`).
        let o = w[i];
        w[0] = w[0] * 1.5;
        w[i] = o + v[i];
    }
    // At the top level, twice on one element.
    w[1] += x[0] * x[1];
    w[1] += w[2];
    let mut e = 0.0;
    for i in 0..n {
        e += w[i] * w[i] + p[i] * v[i];
    }
    e
}

#[test]
fn element_updates_match_finite_differences() {
    let x = [0.3, -0.2, 0.5, 0.1, -0.4];
    let (v, g) = element_updates_value_and_grad(&x, 0.1, 4);
    assert_eq!(v, element_updates(&x, 0.1, 4));
    let want = fd(&|x| element_updates(x, 0.1, 4), &x);
    assert_close(&g.0, &want, 1e-6);
    let d_dt = (element_updates(&x, 0.1 + 1e-6, 4) - element_updates(&x, 0.1 - 1e-6, 4)) / 2e-6;
    assert_close(&[g.1], &[d_dt], 1e-6);
}

/// Stencils in time steps: each step reads the state at `i - 1`, `i`, `i + 1` (and a half
/// range from `n / 2`) and then overwrites it, so the reads come from a window copy of the
/// state taken before the stencil loop (one per step), not from taped reads. Written twice:
/// recorded, and checkpointed (no window copies: each step runs again).
macro_rules! stencil_steps {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        fn $name(x0: &[f64], k: f64, steps: usize) -> f64 {
            let n = x0.len();
            let mut x = x0.to_vec();
            let mut v = vec![0.0; n];
            for _ in 0..steps {
                for i in 1..n - 1 {
                    v[i] += k * (x[i - 1] - 2.0 * x[i] + x[i + 1]) * x[i].cos();
                }
                // Reads of two buffers, from the middle on.
                for i in n / 2..n - 1 {
                    v[i] += 0.1 * (x[i + 1] * x[i] - v[i - 1] * v[i]).tanh();
                }
                for i in 0..n {
                    x[i] += 0.1 * v[i];
                }
            }
            let mut e = 0.0;
            for i in 0..n {
                e += x[i] * x[i] + v[i];
            }
            e
        }
    };
}
stencil_steps!(
    #[differentiate]
    stencil_steps
);
stencil_steps!(
    #[differentiate(checkpoint)]
    stencil_steps_checkpointed
);

/// A stencil that reads one past the end on its last iteration.
#[differentiate]
fn stencil_past_the_end(x0: &[f64], steps: usize) -> f64 {
    let n = x0.len();
    let mut x = x0.to_vec();
    for _ in 0..steps {
        let mut y = vec![0.0; n];
        for i in 0..n {
            y[i] = x[i] * x[i + 1];
        }
        for i in 0..n {
            x[i] = y[i] + 0.5;
        }
    }
    x[0]
}

/// A stencil at the top level, its buffer overwritten after it: the window is an owned copy
/// (the reverse reads it after the overwrite).
#[differentiate]
fn stencil_then_overwrite(x0: &[f64]) -> f64 {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut s = 0.0;
    for i in 1..n - 1 {
        s += x[i - 1] * x[i + 1] * x[i].sin();
    }
    for i in 0..n {
        x[i] = x[i] * s;
    }
    x[0] + x[n - 1] * 2.0
}

/// A stencil in the last loop, which accumulates the value, its buffer rebuilt from the input
/// in every iteration.
#[differentiate]
fn stencil_in_the_last_loop(x0: &[f64], m: usize) -> f64 {
    let n = x0.len();
    let mut x = x0.to_vec();
    let mut total = 0.0;
    for _ in 0..m {
        let mut s = 0.0;
        for i in 1..n - 1 {
            s += x[i - 1] * x[i + 1] * x[i].sin();
        }
        for i in 0..n {
            x[i] = x0[i] * s.cos();
        }
        total += s;
    }
    total
}

#[test]
fn stencils_in_time_steps_match_finite_differences() {
    let x: Vec<f64> = (0..9).map(|i| 0.3 * ((i * 5) % 7) as f64 - 0.8).collect();
    let (v, g) = stencil_steps_value_and_grad(&x, 0.7, 5);
    assert_eq!(v, stencil_steps(&x, 0.7, 5));
    assert_close(&g.0, &fd(&|x| stencil_steps(x, 0.7, 5), &x), 1e-6);
    let d_k = (stencil_steps(&x, 0.7 + 1e-6, 5) - stencil_steps(&x, 0.7 - 1e-6, 5)) / 2e-6;
    assert_close(&[g.1], &[d_k], 1e-6);
    let (vc, gc) = stencil_steps_checkpointed_value_and_grad(&x, 0.7, 5);
    assert_eq!(vc, v);
    assert_close(&gc.0, &g.0, 1e-12);
    // No steps: no windows, and the gradient of `x . x`.
    let (_, g0) = stencil_steps_value_and_grad(&x, 0.7, 0);
    assert_close(&g0.0, &x.iter().map(|a| 2.0 * a).collect::<Vec<_>>(), 1e-12);
    let (_, g) = stencil_then_overwrite_value_and_grad(&x);
    assert_close(&g, &fd(&|x| stencil_then_overwrite(x), &x), 1e-6);
    let (_, g) = stencil_in_the_last_loop_value_and_grad(&x, 3);
    assert_close(&g, &fd(&|x| stencil_in_the_last_loop(x, 3), &x), 1e-6);
    // A read past the end panics through the window too.
    assert!(std::panic::catch_unwind(|| stencil_past_the_end(&x, 2)).is_err());
    assert!(std::panic::catch_unwind(|| stencil_past_the_end_grad(&x, 2)).is_err());
}

// Passive carried values the reverse reads, replayed: a forward-order reverse steps them again
// itself instead of taping each iteration's entry (How it works). The packed lower triangle's
// index stepped by its stride, as GradBench's GMM walks it.
#[differentiate(wrt(l))]
fn packed_rows(l: &[f64], x: &[f64], d: usize) -> f64 {
    let mut sq = 0.0;
    for j in 0..d {
        let mut s = x[j];
        let mut p = j;
        for i in 0..j {
            s += l[p - 1] * x[i];
            p += d - i - 2;
        }
        sq += s * s;
    }
    sq
}

/// The same value with the packed index computed from `i` and `j` (no carried index).
fn packed_rows_direct(l: &[f64], x: &[f64], d: usize) -> f64 {
    let mut sq = 0.0;
    for j in 0..d {
        let mut s = x[j];
        for i in 0..j {
            s += l[i * (2 * d - i - 1) / 2 + j - i - 1] * x[i];
        }
        sq += s * s;
    }
    sq
}

// Two passive values stepping each other (an index and its growing stride), and a passive
// float clock, all read by the reverse of a loop that is not the function's last statement.
#[differentiate(wrt(a))]
fn stepped_reads(a: &[f64], n: usize) -> f64 {
    let mut s = 0.0;
    let mut p = 0;
    let mut stride = 1;
    let mut t = 0.25;
    for i in 0..n {
        s += a[p % a.len()] * a[i % a.len()] * t;
        p += stride;
        stride += 1;
        t += 0.5;
    }
    s * s
}

// A stepped index in a loop whose reverse must run backwards (the carried product does not
// only accumulate): its entries are taped as before.
#[differentiate(wrt(a))]
fn stepped_product(a: &[f64], n: usize) -> f64 {
    let mut s = 1.0;
    let mut p = 1;
    for _ in 0..n {
        s = s * (1.0 + 0.1 * a[p % a.len()]);
        p += 3;
    }
    s
}

#[test]
fn replayed_carried_indices_match_finite_differences() {
    let d = 6;
    let l: Vec<f64> = (0..d * (d - 1) / 2)
        .map(|k| (k as f64 * 0.37).sin())
        .collect();
    let x: Vec<f64> = (0..d).map(|k| 0.2 * k as f64 - 0.4).collect();
    let (v, g) = packed_rows_value_and_grad(&l, &x, d);
    assert_eq!(v, packed_rows(&l, &x, d));
    assert!((v - packed_rows_direct(&l, &x, d)).abs() <= 1e-14 * v.abs().max(1.0));
    assert_close(&g, &fd(&|l| packed_rows_direct(l, &x, d), &l), 1e-7);

    let a: Vec<f64> = (0..7).map(|k| (k as f64 * 0.9).cos()).collect();
    let (v, g) = stepped_reads_value_and_grad(&a, 20);
    assert_eq!(v, stepped_reads(&a, 20));
    assert_close(&g, &fd(&|a| stepped_reads(a, 20), &a), 1e-7);

    let (v, g) = stepped_product_value_and_grad(&a, 9);
    assert_eq!(v, stepped_product(&a, 9));
    assert_close(&g, &fd(&|a| stepped_product(a, 9), &a), 1e-7);
}

// A stepped index whose start is carried by an enclosing loop that runs backwards (a carried
// product), and whose value after the inner loop is read again.
#[differentiate(wrt(a))]
fn stepped_nested(a: &[f64], m: usize, n: usize) -> f64 {
    let mut prod = 1.0;
    let mut q = 1;
    for _ in 0..m {
        let mut s = 0.0;
        let mut p = q;
        for i in 0..n {
            s += a[p % a.len()] * a[i % a.len()];
            p += 2;
        }
        prod = prod * (1.0 + 0.1 * s) + a[p % a.len()];
        q += 3;
    }
    prod
}

#[test]
fn replayed_indices_inside_a_reversed_loop_match_finite_differences() {
    let a: Vec<f64> = (0..5).map(|k| (k as f64 * 0.7).sin()).collect();
    let (v, g) = stepped_nested_value_and_grad(&a, 4, 6);
    assert_eq!(v, stepped_nested(&a, 4, 6));
    assert_close(&g, &fd(&|a| stepped_nested(a, 4, 6), &a), 1e-7);
}

/// Range loops whose reverse adds into a window of an adjoint: rows of a packed triangle read
/// as runs `l[row + i]` (the first row empty), a run `x[i + off]` from a start other than 0, a
/// run of a local buffer, and empty loops whose offset lies past the array's end.
#[differentiate]
fn windowed_runs(l: &[f64], x: &[f64], d: usize) -> f64 {
    let mut s = 0.0;
    for j in 0..d {
        let row = (j * j - j) / 2;
        let mut r = x[j];
        for i in 0..j {
            r += l[row + i] * x[i];
        }
        s += r * r;
    }
    let n = l.len();
    for i in d..d {
        s += l[n + i];
    }
    let none = n - l.len();
    for i in 0..none {
        s += l[n + i] * x[n + i];
    }
    let off = d - 3;
    for i in 1..3 {
        s += (x[i + off] * 0.5).sin();
    }
    let mut buf = vec![0.0; d];
    for i in 0..d {
        buf[i] = x[i] * x[i];
    }
    for i in 0..d {
        s += buf[i] * l[i].cos();
    }
    s
}

#[test]
fn range_loops_adding_into_adjoint_windows_match_finite_differences() {
    let d = 5;
    let l: Vec<f64> = (0..d * (d - 1) / 2)
        .map(|i| 0.3 * (i as f64).sin() - 0.1)
        .collect();
    let x: Vec<f64> = (0..d).map(|i| 0.4 * i as f64 - 0.7).collect();
    let (v, (gl, gx)) = windowed_runs_value_and_grad(&l, &x, d);
    assert_eq!(v, windowed_runs(&l, &x, d));
    assert_close(&gl, &fd(&|v: &[f64]| windowed_runs(v, &x, d), &l), 1e-6);
    assert_close(&gx, &fd(&|v: &[f64]| windowed_runs(&l, v, d), &x), 1e-6);
    // The same with `d = 3`: `off` is 0.
    let (l, x) = (&l[..3], &x[..3]);
    let (_, (gl, gx)) = windowed_runs_value_and_grad(l, x, 3);
    assert_close(&gl, &fd(&|v: &[f64]| windowed_runs(v, x, 3), l), 1e-6);
    assert_close(&gx, &fd(&|v: &[f64]| windowed_runs(l, v, 3), x), 1e-6);
}

/// Buffer reads taped in loops over ranges (`y` is overwritten later in each step), read back
/// in the reverse sweep through one window of the tape per loop: two reads per iteration from
/// a range that starts at 1 (`y[n - 1 - i]`, `y[i / 2]`), one read before the element is
/// overwritten (`y[i]` in the update), and a `while` loop, whose reads stay on the
/// per-iteration path; beside them, runs of `y` copied once per step (a range from 2, and
/// one whose start passes its end in the first steps).
#[differentiate]
fn taped_runs(x: &[f64], steps: usize) -> f64 {
    let n = x.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = 0.5 * x[i];
    }
    let mut s = 0.0;
    for step in 0..steps {
        for i in 2..n {
            s += (y[i - 1] * y[i - 2]).sin() * x[i];
        }
        for i in (n - 2 * step)..(n / 2 + 1) {
            s += y[i] * y[i] * x[i];
        }
        for i in 1..n - 1 {
            s += (y[n - 1 - i] * y[i / 2]).cos() * x[i];
        }
        let mut j = 0;
        while j < n {
            s += 0.1 * y[j].cos();
            j += 3;
        }
        for i in 0..n {
            y[i] = (y[i] * 0.7 + x[i] * 0.1).tanh();
        }
    }
    s
}

#[test]
fn taped_reads_in_range_loops_match_finite_differences() {
    let x: Vec<f64> = (0..8).map(|i| 0.3 * i as f64 - 0.9).collect();
    for steps in [0, 1, 4] {
        let (v, g) = taped_runs_value_and_grad(&x, steps);
        assert_eq!(v, taped_runs(&x, steps), "steps = {steps}");
        assert_close(&g, &fd(&|v: &[f64]| taped_runs(v, steps), &x), 1e-6);
    }
}

// Loops in the code after an early `return` (which runs inside the `if`'s other arm): a `while`
// loop, whose trip count the arm's reverse reads, and a checkpointed loop, which restores a
// buffer the arm declared. Both failed to compile before (found by the generator's
// `let .. else` programs): the count was declared inside the forward arm, and the buffer came
// back from the branch record read-only.
#[differentiate]
fn while_after_return(x: &[f64], a: f64, b: f64) -> f64 {
    let n = x.len();
    if b > 0.0 {
        return a * b;
    }
    let mut w = x[1] + 3.0;
    let mut steps = 0;
    while w > 0.5 && steps < 20 {
        w = w * 0.6 + 0.01 * a;
        steps += 1;
    }
    let mut r = x[3];
    for i in 0..n {
        r = r * 0.8 + x[i] * w;
    }
    r
}

#[differentiate(checkpoint)]
#[allow(clippy::useless_vec)]
fn checkpointed_after_return(x: &[f64], a: f64, b: f64) -> f64 {
    let n = x.len();
    if b > 0.0 {
        return a;
    }
    let mut acc = x[1] * a;
    let mut scratch = vec![0.0; 3];
    for i in 0..n {
        let prev = scratch[1] * 0.25;
        for q in 0..3 {
            scratch[q] = x[(i + q) % n] * b;
        }
        let mut se = 0.0;
        for q in 0..scratch.len() {
            se += scratch[q].exp();
        }
        acc = acc * 0.5 + se.ln() + prev;
    }
    acc
}

#[test]
fn loops_after_an_early_return_match_finite_differences() {
    let x = [0.3, 1.7, -0.4, 0.9, 0.2];
    for b in [0.4, -0.6] {
        let a = 0.7;
        let (gx, ga, gb) = while_after_return_grad(&x, a, b);
        let mut all = x.to_vec();
        all.extend([a, b]);
        let f = |v: &[f64]| while_after_return(&v[..5], v[5], v[6]);
        let mut got = gx.clone();
        got.extend([ga, gb]);
        assert_close(&got, &fd(&f, &all), 1e-6);
        let (gx, ga, gb) = checkpointed_after_return_grad(&x, a, b);
        let f = |v: &[f64]| checkpointed_after_return(&v[..5], v[5], v[6]);
        let mut got = gx.clone();
        got.extend([ga, gb]);
        assert_close(&got, &fd(&f, &all), 1e-6);
    }
}

// A loop that reads a slice's elements and a part of the same slice (`x[i] * xs[i]` with
// `xs = &x[1..]`): both add into `x`'s adjoint. It failed to compile before (found by the
// generator's folds over `x.iter().zip(x[1..].iter())`): the reads of `x` took a window of
// its adjoint for the whole reverse loop, a second borrow beside the part's additions.
#[differentiate]
fn slice_and_part_of_it(x: &[f64], a: f64) -> f64 {
    let n = x.len();
    let xs = &x[1..];
    let mut s = 0.0;
    for i in 0..n - 1 {
        s = s * 0.5 + x[i] * xs[i] * a;
    }
    s
}

#[test]
fn a_slice_and_a_part_of_it_in_one_loop_match_finite_differences() {
    let x = [0.3, 1.7, -0.4, 0.9, 0.2];
    let (gx, ga) = slice_and_part_of_it_grad(&x, 0.7);
    assert_close(&gx, &fd(&|v| slice_and_part_of_it(v, 0.7), &x), 1e-7);
    assert_close(
        &[ga],
        &fd(&|v| slice_and_part_of_it(&x, v[0]), &[0.7]),
        1e-7,
    );
}

// Early returns from loops (`desugar.rs` lifts them: the loop breaks with the value and a flag,
// and the function returns after it): a search that returns at the first element over a
// threshold, a Newton iteration that returns when it has converged, and a return from a
// nested loop.
#[differentiate]
fn first_above(x: &[f64], t: f64) -> f64 {
    for i in 0..x.len() {
        if x[i] * t > 1.0 {
            return x[i] * x[i] * t;
        }
    }
    t * 0.5
}

#[differentiate]
fn newton_root(a: f64) -> f64 {
    let mut y = a;
    let mut k = 0;
    while k < 60 {
        let next = 0.5 * (y + a / y);
        if (next - y).abs() < 1e-14 * a {
            return next;
        }
        y = next;
        k += 1;
    }
    y
}

#[differentiate]
fn nested_return(x: &[f64], a: f64) -> f64 {
    let n = x.len();
    let mut s = 0.0;
    for i in 0..n {
        for j in 0..n {
            s += x[i] * x[j] * a;
            if s > 3.0 {
                return s * 2.0;
            }
        }
        s *= 0.9;
    }
    s
}

#[test]
fn returns_from_loops_match_finite_differences_and_analytic_gradients() {
    let x = [0.3, 0.8, 1.7, 0.2];
    for t in [0.5, 0.9, 2.0] {
        let (gx, gt) = first_above_grad(&x, t);
        let mut got = gx.clone();
        got.push(gt);
        let f = |v: &[f64]| first_above(&v[..4], v[4]);
        let mut at = x.to_vec();
        at.push(t);
        assert_close(&got, &fd(&f, &at), 1e-6);
        assert_eq!(first_above_value_and_grad(&x, t).0, first_above(&x, t));
    }
    // Independent: d sqrt(a) / da = 1 / (2 sqrt(a)), through the iteration and its early exit.
    for a in [0.3, 2.0, 10.0] {
        let (value, g) = newton_root_value_and_grad(a);
        assert_eq!(value, newton_root(a));
        assert!((g - 0.5 / a.sqrt()).abs() < 1e-12, "{a}: {g}");
    }
    for a in [0.5, 1.5, 4.0] {
        let (gx, ga) = nested_return_grad(&x, a);
        let mut got = gx.clone();
        got.push(ga);
        let f = |v: &[f64]| nested_return(&v[..4], v[4]);
        let mut at = x.to_vec();
        at.push(a);
        assert_close(&got, &fd(&f, &at), 1e-6);
    }
}

/// `loop` with a value: Newton's square root returns `break next` once it has converged, and
/// a count of steps (an integer, typed on its `let`) is a second `loop` value.
#[differentiate]
fn newton_loop_value(a: f64) -> f64 {
    let mut g = a.max(1.0);
    let root = loop {
        let next = 0.5 * (g + a / g);
        if (next - g).abs() < 1e-13 {
            break next;
        }
        g = next;
    };
    let mut k = 0;
    let steps: usize = loop {
        k += 1;
        if k * k > 10 {
            break k;
        }
    };
    root * steps as f64
}

#[test]
fn loops_with_values_match_the_analytic_gradient() {
    // 4 steps (16 > 10): d/da 4 sqrt(a) = 2 / sqrt(a).
    for a in [0.5, 2.0, 9.0] {
        let (value, g) = newton_loop_value_value_and_grad(a);
        assert!((value - 4.0 * a.sqrt()).abs() < 1e-12, "{value}");
        assert!(
            (g - 2.0 / a.sqrt()).abs() < 1e-9,
            "{g} vs {}",
            2.0 / a.sqrt()
        );
    }
}

/// A buffer that starts as a parameter moved into it, one that starts as another buffer, and
/// one filled by `vec![..]` of differentiated values then written: each its own storage (the
/// reverse sweep reads the original after the buffer has changed; these had failed to compile,
/// the original moved into the buffer).
#[differentiate]
pub fn buffers_from_values(x: Vec<f64>, s: f64) -> f64 {
    let mut a = vec![x[0] * s, x[1], x[2] * x[0]];
    a[1] *= a[0];
    let mut b = a;
    b[2] += b[1] * s;
    let mut y = x;
    y[0] *= y[1];
    b[0] + b[1] * b[2] + y[0] * y[2]
}

#[test]
fn buffers_started_from_values_match_finite_differences() {
    let (x, s) = (vec![0.7, -1.2, 0.4], 1.3);
    let (gx, gs) = buffers_from_values_grad(x.clone(), s);
    let mut all = x.clone();
    all.push(s);
    let want = fd(&|w| buffers_from_values(w[..3].to_vec(), w[3]), &all);
    assert_close(&gx, &want[..3], 1e-7);
    assert_close(&[gs], &want[3..], 1e-7);
}

/// A double-buffered stencil: each step writes `next` from `u`, then `std::mem::swap`s them
/// (buffers exchanged element by element); a swap of two scalars; a walk that writes zipped
/// on the right; `for_each` with a closure (the loop it stands for).
#[differentiate]
pub fn double_buffered(x: &[f64], k: f64) -> f64 {
    let n = x.len();
    let mut u = x.to_vec();
    let mut next = vec![0.0; n];
    for _ in 0..5 {
        for i in 1..n - 1 {
            next[i] = u[i] + k * (u[i - 1] - 2.0 * u[i] + u[i + 1]);
        }
        next[0] = u[0];
        next[n - 1] = u[n - 1] * (1.0 - k);
        std::mem::swap(&mut u, &mut next);
    }
    let (mut p, mut q) = (k, x[0]);
    for _ in 0..3 {
        std::mem::swap(&mut p, &mut q);
        p = p * q + 0.1;
    }
    let mut y = vec![0.0; n];
    for (&ui, yi) in u.iter().zip(y.iter_mut()) {
        *yi = ui * p;
    }
    let mut s = 0.0;
    y.iter()
        .enumerate()
        .for_each(|(i, v)| s += v * v * (i + 1) as f64);
    s + q
}

#[test]
fn double_buffers_swapped_each_step_match_finite_differences() {
    let (x, k) = ([0.3, -0.5, 1.2, 0.7, -0.2], 0.2);
    let (gx, gk) = double_buffered_grad(&x, k);
    let mut all = x.to_vec();
    all.push(k);
    let want = fd(&|w| double_buffered(&w[..5], w[5]), &all);
    assert_close(&gx, &want[..5], 1e-7);
    assert_close(&[gk], &want[5..], 1e-7);
}

/// `Vec`s built by `push`: in a loop, behind a condition, reading what was pushed before
/// (`out[out.len() - 1]`), then walked; one returned (vector-valued, its Jacobian); a walk's
/// item dereferenced in a condition (`*v > 0.0`).
#[differentiate]
pub fn pushed(x: &[f64], a: f64) -> f64 {
    let mut out = Vec::new();
    for v in x {
        if *v > 0.0 {
            out.push(v.sin() * a);
        }
        if out.len() > 1 {
            let last = out[out.len() - 1];
            out.push(last * out[0]);
        }
    }
    let mut s = 0.0;
    for (i, o) in out.iter().enumerate() {
        s += o * (i + 1) as f64;
    }
    s
}

#[differentiate]
pub fn differences(x: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for w in x.windows(2) {
        out.push(w[1] - w[0]);
    }
    out
}

#[test]
fn vecs_built_by_push_match_finite_differences_and_analytic_jacobians() {
    let (x, a) = ([0.3, -0.5, 1.2, 0.7, 0.4], 0.8);
    let (gx, ga) = pushed_grad(&x, a);
    let mut all = x.to_vec();
    all.push(a);
    let want = fd(&|w| pushed(&w[..5], w[5]), &all);
    assert_close(&gx, &want[..5], 1e-7);
    assert_close(&[ga], &want[5..], 1e-7);
    // The pushes behind the condition left x[1] out.
    assert_eq!(gx[1], 0.0);

    let jac = differences_jacobian(&x);
    assert_eq!(jac.len(), 4);
    for (r, row) in jac.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let want = if c == r + 1 {
                1.0
            } else if c == r {
                -1.0
            } else {
                0.0
            };
            assert_eq!(*v, want, "({r}, {c})");
        }
    }
}

// ----- buffers replaced whole (`u = next;`) in loops and arms -----

/// A stencil whose new state replaces the old each step (`u = next;`), the old one a buffer
/// filled by index: the new state's elements are copied into it.
#[differentiate]
fn smoothed_by_replacement(x: &[f64], steps: usize) -> f64 {
    let n = x.len();
    let mut u = vec![0.0; n];
    for i in 0..n {
        u[i] = x[i];
    }
    for _ in 0..steps {
        let mut next = vec![0.0; n];
        for i in 0..n {
            let l = u[(i + n - 1) % n];
            let r = u[(i + 1) % n];
            next[i] = 0.5 * u[i] + 0.25 * (l + r);
        }
        u = next;
    }
    if n == 0 {
        return 0.0;
    }
    let mean = u.iter().sum::<f64>() / n as f64;
    u.iter().map(|v| (*v - mean).powi(2)).sum::<f64>() + x.iter().map(|v| v.sin()).sum::<f64>()
}

/// The same stencil by hand: linear, so its gradient is the transpose of the steps applied to
/// the output's gradient.
fn smoothed_by_hand(x: &[f64], steps: usize) -> Vec<f64> {
    let n = x.len();
    let mut u = x.to_vec();
    for _ in 0..steps {
        u = (0..n)
            .map(|i| 0.5 * u[i] + 0.25 * (u[(i + n - 1) % n] + u[(i + 1) % n]))
            .collect();
    }
    let mean = u.iter().sum::<f64>() / n as f64;
    let mut g: Vec<f64> = u.iter().map(|v| 2.0 * (v - mean)).collect();
    for _ in 0..steps {
        // The step's matrix is symmetric.
        g = (0..n)
            .map(|i| 0.5 * g[i] + 0.25 * (g[(i + n - 1) % n] + g[(i + 1) % n]))
            .collect();
    }
    g.iter().zip(x).map(|(gi, xi)| gi + xi.cos()).collect()
}

#[differentiate]
fn replaced_by_a_shorter_state(x: &[f64]) -> f64 {
    let mut u = vec![0.0; x.len()];
    for i in 0..x.len() {
        u[i] = x[i];
    }
    for _ in 0..2 {
        let next = vec![0.0; u.len() - 1];
        u = next;
    }
    u[0]
}

#[differentiate]
fn replaced_in_an_arm(x: &[f64], flag: u8) -> f64 {
    let n = x.len();
    let mut u = vec![0.0; n];
    for i in 0..n {
        u[i] = x[i] * 2.0;
    }
    let mut next = vec![0.0; n];
    for i in 0..n {
        next[i] = u[i] * u[i];
    }
    // Outside loops the buffer is rebound, to a value of any length.
    if flag == 1 {
        u = next;
    } else if flag == 2 {
        u = x[1..].to_vec();
    }
    u.iter().map(|v| v.sin()).sum()
}

#[differentiate]
fn replaced_every_other_step(x: &[f64], steps: usize) -> f64 {
    let n = x.len();
    let mut u = vec![0.0; n];
    for i in 0..n {
        u[i] = x[i];
    }
    for s in 0..steps {
        let mut next = vec![0.0; n];
        for i in 0..n {
            next[i] = u[i] * u[(i + 1) % n] + 0.1;
        }
        if s % 2 == 0 {
            u = next;
        } else {
            u[0] += next[1];
        }
    }
    u.iter().map(|v| v.sin()).sum()
}

#[differentiate]
fn reset_each_step(x: &[f64], steps: usize) -> f64 {
    let n = x.len();
    let mut acc = vec![0.0; n];
    let mut s = 0.0;
    for k in 0..steps {
        for i in 0..n {
            acc[i] += x[i] * (k as f64 + 1.0) * x[(i + k) % n];
        }
        s += acc[k % n] * acc[0];
        acc = vec![0.0; n];
        acc[1] = s;
    }
    s + acc[1]
}

#[differentiate]
fn points_replaced(x: &[[f64; 2]], steps: usize) -> f64 {
    let n = x.len();
    let mut p = x.to_vec();
    for _ in 0..steps {
        let mut q = vec![[0.0; 2]; n];
        for i in 0..n {
            q[i][0] = p[i][0] + 0.1 * p[i][1];
            q[i][1] = p[i][1] - 0.1 * p[i][0].sin();
        }
        p = q;
    }
    let mut e = 0.0;
    for i in 0..n {
        e += p[i][0] * p[i][0] + p[i][1];
    }
    e
}

#[test]
fn buffers_replaced_whole_in_loops_and_arms_match_finite_differences() {
    let x: Vec<f64> = (0..6).map(|i| (i as f64 * 0.7).cos()).collect();
    for flag in [0, 1, 2] {
        let g = replaced_in_an_arm_grad(&x, flag);
        assert_close(&g, &fd(&|v| replaced_in_an_arm(v, flag), &x), 1e-6);
    }
    for steps in [0, 1, 2, 5] {
        let g = replaced_every_other_step_grad(&x, steps);
        assert_close(&g, &fd(&|v| replaced_every_other_step(v, steps), &x), 1e-6);
        let g = reset_each_step_grad(&x, steps);
        assert_close(&g, &fd(&|v| reset_each_step(v, steps), &x), 1e-6);
        let p: Vec<[f64; 2]> = x.chunks(2).map(|c| [c[0], c[1]]).collect();
        let g: Vec<f64> = points_replaced_grad(&p, steps)
            .iter()
            .flatten()
            .copied()
            .collect();
        let f = |v: &[f64]| {
            points_replaced(
                &v.chunks(2).map(|c| [c[0], c[1]]).collect::<Vec<_>>(),
                steps,
            )
        };
        assert_close(&g, &fd(&f, &x), 1e-6);
    }
}

#[test]
fn a_stencil_replacing_its_state_matches_the_hand_written_gradient() {
    let x: Vec<f64> = (0..7).map(|i| (i as f64 * 0.9).sin()).collect();
    for steps in [0, 1, 3] {
        let g = smoothed_by_replacement_grad(&x, steps);
        assert_close(&g, &smoothed_by_hand(&x, steps), 1e-12);
        assert_close(&g, &fd(&|v| smoothed_by_replacement(v, steps), &x), 1e-6);
    }
}

#[test]
#[should_panic(
    expected = "`u = ..` in a loop copies the new value into the buffer `u` element by element"
)]
fn a_buffer_replaced_by_one_of_another_length_panics_naming_it() {
    replaced_by_a_shorter_state_grad(&[1.0, 2.0, 3.0]);
}

// ----- tuple locals -----

#[differentiate]
fn with_tuple_state(x: &[f64]) -> f64 {
    let mut state = (0.0, 1.0);
    for &v in x {
        state = (state.0 + v * state.1, state.1 * 0.9 + v.sin());
    }
    state.1 += state.0 * 0.5;
    state.0 * state.1
}

#[differentiate]
fn oscillator_in_a_tuple(x0: f64, v0: f64, k: f64) -> f64 {
    let dt = 0.01;
    let mut s = (x0, v0, 0.0);
    for _ in 0..100 {
        let a = -k * s.0;
        s = (s.0 + s.1 * dt, s.1 + a * dt, s.2 + s.0 * s.0 * dt);
    }
    s.2
}

/// Tuple locals read by element and replaced whole (`state = (a, b);`): a local per element.
#[test]
fn tuple_state_matches_finite_differences() {
    let x = [0.3, -1.2, 0.8, 1.5];
    assert_close(
        &with_tuple_state_grad(&x),
        &fd(&|v| with_tuple_state(v), &x),
        1e-6,
    );
    let (a, b, c) = oscillator_in_a_tuple_grad(1.0, 0.2, 2.0);
    let f = |v: &[f64]| oscillator_in_a_tuple(v[0], v[1], v[2]);
    assert_close(&[a, b, c], &fd(&f, &[1.0, 0.2, 2.0]), 1e-6);
}

#[differentiate]
fn returned_whole(x: f64, y: f64) -> (f64, f64) {
    let mut p = (x, y);
    for _ in 0..3 {
        p = (p.0 * p.1, p.0 + 0.5 * p.1);
    }
    let (a, b) = p;
    let mut q = (a.sin(), b);
    q.1 *= q.0;
    q
}

/// A tuple local read whole (`let (a, b) = p;`) and returned: the tuple of its elements.
#[test]
fn tuple_locals_read_whole_match_finite_differences() {
    let j = returned_whole_jacobian(0.7, 1.3);
    let h = 1e-6;
    let f = |x: f64, y: f64| returned_whole(x, y);
    let (p1, m1) = (f(0.7 + h, 1.3), f(0.7 - h, 1.3));
    // Row 0: the first output's derivatives (x, y).
    assert!(((p1.0 - m1.0) / (2.0 * h) - j[0].0).abs() < 1e-6, "{j:?}");
    let (p2, m2) = (f(0.7, 1.3 + h), f(0.7, 1.3 - h));
    assert!(((p2.1 - m2.1) / (2.0 * h) - j[1].1).abs() < 1e-6, "{j:?}");
}

/// A loop inside an `if` arm inside a loop, whose value a nonlinear rule reads: the reverse
/// iteration recomputes the arm, and the loop's value comes from its exit record (it had been
/// recomputed by nothing, and the generated code did not compile).
#[differentiate]
fn loop_in_arm_in_loop(x: &[f64], steps: usize) -> f64 {
    let n = x.len();
    let mut v = vec![1.0; n];
    for _ in 0..steps {
        for i in 0..n {
            if i > 0 {
                let mut r = 0.0;
                for k in 0..n {
                    r += v[k] * x[k];
                }
                v[i] += r.sin();
            } else {
                let mut p = 1.0;
                let mut q = 0.0;
                for k in 0..n {
                    p *= 0.5 + x[k] * x[k];
                    q += x[k];
                }
                v[0] = p.sqrt() * q.cos();
            }
        }
    }
    v[0] + v[n - 1]
}

#[test]
fn loops_in_arms_in_loops_match_finite_differences() {
    let x = [0.3, -0.2, 0.5, 0.1];
    let g = loop_in_arm_in_loop_grad(&x, 3);
    assert_close(&g, &fd(&|x: &[f64]| loop_in_arm_in_loop(x, 3), &x), 1e-6);
}
