//! Fixed-size arrays: parameters `[f64; N]` and `&[f64; N]` (gradients `[f64; N]`, on the
//! stack), array literals and `[0.0; N]` buffers in the body, functions returning `[f64; N]`
//! (their Jacobians), and containers of points, `&[[f64; 3]]` and `Vec<[f64; 3]>` (gradients
//! `Vec<[f64; 3]>`), read `x[i][k]` or taken apart with `let [a, b, c] = x[i];`, and rows,
//! matrices as nested `Vec`s (`&[Vec<f64>]`, gradient `Vec<Vec<f64>>`). Each gradient against
//! central finite differences and an analytic value.
#![allow(clippy::needless_range_loop)]
use autodiff::differentiate;

mod common;
use common::{assert_close, fd};

/// The length of a 3-vector.
#[differentiate]
pub fn norm(v: &[f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// Arrays by value, an array literal, and a call taking one.
#[differentiate]
pub fn torque_z(r: [f64; 3], f: [f64; 3]) -> f64 {
    let cross = [
        r[1] * f[2] - r[2] * f[1],
        r[2] * f[0] - r[0] * f[2],
        r[0] * f[1] - r[1] * f[0],
    ];
    cross[2] + 0.5 * norm(&cross)
}

/// A `[0.0; N]` buffer filled in a loop, with the dimension a const parameter.
#[differentiate]
pub fn smoothed<const N: usize>(x: &[f64; N], k: f64) -> f64 {
    let mut s = [0.0; N];
    for i in 0..N {
        s[i] = (k * x[i]).tanh();
    }
    let mut total = 0.0;
    for i in 1..N {
        total += s[i] * s[i - 1];
    }
    total
}

/// A rotation of the plane: a function returning `[f64; 2]`.
#[differentiate]
pub fn rotate(p: [f64; 2], angle: f64) -> [f64; 2] {
    let (c, s) = (angle.cos(), angle.sin());
    [c * p[0] - s * p[1], s * p[0] + c * p[1]]
}

/// Composes the rotation with a scalar: a call of a function returning an array.
#[differentiate]
pub fn rotated_product(p: &[f64; 2], angle: f64) -> f64 {
    let q = rotate(*p, angle);
    let r = rotate(q, angle);
    r[0] * q[1]
}

/// A Lennard-Jones energy over points `&[[f64; 3]]`, read `x[i][k]`.
#[differentiate]
pub fn lennard_jones(x: &[[f64; 3]]) -> f64 {
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

/// Springs between consecutive points of a `Vec<[f64; 3]>`: points taken apart, walked with
/// `iter()`, difference vectors as array literals passed to `norm`.
#[allow(clippy::ptr_arg)]
#[differentiate(wrt(x))]
pub fn chain(x: &Vec<[f64; 3]>, rest: f64) -> f64 {
    let mut e = 0.0;
    for i in 1..x.len() {
        let [a, b, c] = x[i];
        let [p, q, r] = x[i - 1];
        let stretch = norm(&[a - p, b - q, c - r]) - rest;
        e += 0.5 * stretch * stretch;
    }
    for point in x.iter() {
        e += 0.01 * point[2];
    }
    e
}

fn flat(points: &[[f64; 3]]) -> Vec<f64> {
    points.iter().flatten().copied().collect()
}

fn unflat(v: &[f64]) -> Vec<[f64; 3]> {
    v.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

#[test]
fn fixed_size_array_parameters_match_analytic_gradients() {
    let v = [1.0, -2.0, 2.0];
    let g: [f64; 3] = norm_grad(&v);
    assert_close(&g, &[1.0 / 3.0, -2.0 / 3.0, 2.0 / 3.0], 1e-12);

    let (r, f) = ([0.5, -1.0, 2.0], [1.5, 0.25, -0.75]);
    let (gr, gf) = torque_z_grad(r, f);
    let at = |w: &[f64]| torque_z([w[0], w[1], w[2]], [w[3], w[4], w[5]]);
    let all: Vec<f64> = r.iter().chain(&f).copied().collect();
    let want = fd(&at, &all);
    assert_close(&gr, &want[..3], 1e-7);
    assert_close(&gf, &want[3..], 1e-7);
    // The pullback scales both.
    let (pr, pf) = torque_z_pullback(r, f, -2.0);
    assert_close(&pr, &gr.map(|g| -2.0 * g), 1e-12);
    assert_close(&pf, &gf.map(|g| -2.0 * g), 1e-12);

    let x = [0.3, -0.7, 1.1, 0.2, -0.4];
    let (gx, gk) = smoothed_grad(&x, 0.8);
    let mut all = x.to_vec();
    all.push(0.8);
    let want = fd(&|w| smoothed(&[w[0], w[1], w[2], w[3], w[4]], w[5]), &all);
    assert_close(&gx, &want[..5], 1e-7);
    assert_close(&[gk], &want[5..], 1e-7);
}

#[test]
fn functions_returning_arrays_have_jacobians() {
    let (p, t): ([f64; 2], f64) = ([2.0, 3.0], 0.5);
    let (c, s) = (t.cos(), t.sin());
    let rows = rotate_jacobian(p, t);
    // d(rotation)/dp is the rotation; d/dangle is the rotation by 90 degrees more.
    assert_close(&rows[0].0, &[c, -s], 1e-12);
    assert_close(&rows[1].0, &[s, c], 1e-12);
    assert_close(
        &[rows[0].1, rows[1].1],
        &[-s * p[0] - c * p[1], c * p[0] - s * p[1]],
        1e-12,
    );
    let (gp, gt) = rotated_product_grad(&p, t);
    let want = fd(&|w| rotated_product(&[w[0], w[1]], w[2]), &[p[0], p[1], t]);
    assert_close(&[gp[0], gp[1], gt], &want, 1e-7);
}

#[test]
fn points_match_finite_differences() {
    let x = vec![
        [0.0, 0.0, 0.0],
        [1.1, 0.1, 0.0],
        [0.2, 1.0, 0.3],
        [1.0, 1.2, -0.4],
    ];
    let g: Vec<[f64; 3]> = lennard_jones_grad(&x);
    let want = fd(&|v| lennard_jones(&unflat(v)), &flat(&x));
    assert_close(&flat(&g), &want, 1e-6);
    // One pair: the gradient of 4 (s^12 - s^6) at r is along the pair's axis.
    let pair = [[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]];
    let r: f64 = 1.2;
    let de = 4.0 * (-12.0 * r.powi(-13) + 6.0 * r.powi(-7));
    let g = lennard_jones_grad(&pair);
    assert_close(&flat(&g), &[-de, 0.0, 0.0, de, 0.0, 0.0], 1e-12);

    let g = chain_value_and_grad(&x, 0.9).1;
    let want = fd(&|v| chain(&unflat(v), 0.9), &flat(&x));
    assert_close(&flat(&g), &want, 1e-7);
    // The pullback covers `rest` too: d/d rest = -sum(stretch).
    let (pb, d_rest) = chain_pullback(&x, 0.9, 3.0);
    let d = fd(&|r| chain(&x, r[0]), &[0.9]);
    assert_close(&[d_rest], &[3.0 * d[0]], 1e-6);
    assert_close(
        &flat(&pb),
        &want.iter().map(|v| 3.0 * v).collect::<Vec<_>>(),
        1e-6,
    );
}

/// Particles as a struct: positions as points and a velocity as a fixed-size array, beside
/// integer and array-of-integer constants.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct System {
    positions: Vec<[f64; 3]>,
    drift: [f64; 3],
    ids: [usize; 2],
    k: f64,
}

#[differentiate(wrt(s))]
pub fn system_energy(s: &System) -> f64 {
    let mut e = 0.0;
    for (i, &[x, y, z]) in s.positions.iter().enumerate() {
        let w = (s.ids[i % 2] + 1) as f64;
        e += 0.5 * s.k * w * (x * x + y * y + z * z);
        e += s.drift[0] * x + s.drift[1] * y + s.drift[2] * z;
    }
    e
}

#[test]
fn structs_of_points_and_fixed_size_arrays_match_analytic_gradients() {
    let s = System {
        positions: vec![[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [0.1, 0.2, 0.3]],
        drift: [0.3, -0.2, 0.1],
        ids: [0, 2],
        k: 1.5,
    };
    let g = system_energy_grad(&s);
    for (i, p) in s.positions.iter().enumerate() {
        let w = (s.ids[i % 2] + 1) as f64;
        let want: Vec<f64> = (0..3).map(|k| s.k * w * p[k] + s.drift[k]).collect();
        assert_close(&g.positions[i], &want, 1e-12);
    }
    let sums: Vec<f64> = (0..3)
        .map(|k| s.positions.iter().map(|p| p[k]).sum())
        .collect();
    assert_close(&g.drift, &sums, 1e-12);
    let dk: f64 = s
        .positions
        .iter()
        .enumerate()
        .map(|(i, p)| 0.5 * (s.ids[i % 2] + 1) as f64 * p.iter().map(|v| v * v).sum::<f64>())
        .sum();
    assert_close(&[g.k], &[dk], 1e-12);
    // Constants are copied into the gradient.
    assert_eq!(g.ids, s.ids);
}

/// A layer whose width is a const parameter of the struct.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Layer<const N: usize> {
    w: [f64; N],
    b: f64,
}

#[differentiate(wrt(layer, x))]
pub fn layer_output<const N: usize>(layer: &Layer<N>, x: &[f64; N]) -> f64 {
    let mut s = layer.b;
    for i in 0..N {
        s += layer.w[i] * x[i];
    }
    s.tanh()
}

#[test]
fn structs_with_const_parameters_match_the_analytic_gradient() {
    let layer = Layer {
        w: [0.5, -0.25, 1.0, 0.1],
        b: 0.2,
    };
    let x = [1.0, 2.0, -0.5, 0.3];
    let (g, gx) = layer_output_grad(&layer, &x);
    let s = layer.b + (0..4).map(|i| layer.w[i] * x[i]).sum::<f64>();
    let d = 1.0 - s.tanh() * s.tanh();
    assert_close(&g.w, &x.map(|v| d * v), 1e-12);
    assert_close(&[g.b], &[d], 1e-12);
    assert_close(&gx, &layer.w.map(|v| d * v), 1e-12);
}

/// A force field's parameters.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct ForceField {
    k_bond: f64,
    r0: f64,
    k_angle: f64,
    theta0: f64,
}

/// `a - b` of two points (a vector-valued helper).
#[differentiate]
pub fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[differentiate]
pub fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Harmonic bonds and angles over lists of index tuples walked with patterns
/// (`for &(i, j) in bonds`, `for &(i, j, k) in angles.iter()`).
#[differentiate(wrt(ff, x))]
pub fn bonded_energy(
    ff: &ForceField,
    x: &[[f64; 3]],
    bonds: &[(usize, usize)],
    angles: &[(usize, usize, usize)],
) -> f64 {
    let mut e = 0.0;
    for &(i, j) in bonds {
        let d = sub(x[i], x[j]);
        let r = dot(&d, &d).sqrt();
        e += 0.5 * ff.k_bond * (r - ff.r0).powi(2);
    }
    for &(i, j, k) in angles.iter() {
        let a = sub(x[i], x[j]);
        let b = sub(x[k], x[j]);
        let cos = dot(&a, &b) / (dot(&a, &a) * dot(&b, &b)).sqrt();
        let theta = cos.clamp(-1.0, 1.0).acos();
        e += 0.5 * ff.k_angle * (theta - ff.theta0).powi(2);
    }
    e
}

#[test]
fn a_bonded_force_field_matches_finite_differences() {
    let ff = ForceField {
        k_bond: 100.0,
        r0: 1.0,
        k_angle: 10.0,
        theta0: 1.9,
    };
    let x = vec![
        [0.0, 0.0, 0.0],
        [1.1, 0.1, 0.0],
        [1.5, 1.0, 0.2],
        [2.5, 1.1, -0.3],
    ];
    let bonds = [(0, 1), (1, 2), (2, 3)];
    let angles = [(0, 1, 2), (1, 2, 3)];
    let (g, gx) = bonded_energy_grad(&ff, &x, &bonds, &angles);
    let want = fd(
        &|v| bonded_energy(&ff, &unflat(v), &bonds, &angles),
        &flat(&x),
    );
    assert_close(&flat(&gx), &want, 1e-6);
    let at = |p: &[f64]| {
        let ff = ForceField {
            k_bond: p[0],
            r0: p[1],
            k_angle: p[2],
            theta0: p[3],
        };
        bonded_energy(&ff, &x, &bonds, &angles)
    };
    let want = fd(&at, &[ff.k_bond, ff.r0, ff.k_angle, ff.theta0]);
    assert_close(&[g.k_bond, g.r0, g.k_angle, g.theta0], &want, 1e-6);
    // One bond alone: d/dk = (r - r0)^2 / 2, d/dr0 = -k (r - r0).
    let (g, _) = bonded_energy_grad(&ff, &x[..2], &bonds[..1], &[]);
    let r = (1.1f64 * 1.1 + 0.1 * 0.1).sqrt();
    assert_close(
        &[g.k_bond, g.r0],
        &[0.5 * (r - 1.0).powi(2), -100.0 * (r - 1.0)],
        1e-12,
    );
}

/// Settings that are not differentiated, taken apart by a `let` pattern.
pub struct Settings {
    scale: f64,
    skip: usize,
}

#[differentiate(wrt(x))]
pub fn settled(x: &[[f64; 3]], bonds: &[(usize, usize)], s: &Settings) -> f64 {
    let Settings { scale, skip } = s;
    let mut e = 0.0;
    for k in *skip..bonds.len() {
        let (i, j) = bonds[k];
        e += scale * x[i][0] * x[j][2];
    }
    e
}

#[test]
fn constants_taken_apart_by_let_patterns() {
    let x = vec![[0.5, 1.0, -2.0], [1.5, 0.25, 0.75], [-1.0, 2.0, 3.0]];
    let bonds = [(0, 1), (1, 2), (2, 0)];
    let s = Settings {
        scale: 2.0,
        skip: 1,
    };
    // Bonds (1, 2) and (2, 0): e = 2 (x1_0 x2_2 + x2_0 x0_2).
    let g = settled_grad(&x, &bonds, &s);
    let want = [
        [0.0, 0.0, 2.0 * x[2][0]],
        [2.0 * x[2][2], 0.0, 0.0],
        [2.0 * x[0][2], 0.0, 2.0 * x[1][0]],
    ];
    assert_close(&flat(&g), &flat(&want), 1e-12);
}

/// A cloud of points whose energy is a method differentiated with respect to `self`, walking
/// its points by reference (`for p in &self.positions`) and taken apart.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Cloud {
    positions: Vec<[f64; 3]>,
    k: f64,
}

impl Cloud {
    #[differentiate(wrt(self))]
    pub fn energy(&self) -> f64 {
        let mut e = 0.0;
        for p in &self.positions {
            e += self.k * (p[0] * p[0] + p[1] * p[1]);
        }
        for &[x, _, z] in self.positions.iter() {
            e += x * z;
        }
        e
    }
}

#[test]
fn walks_by_reference_of_a_struct_field_match_the_analytic_gradient() {
    let c = Cloud {
        positions: vec![[1.0, 2.0, 3.0], [0.5, -1.0, 0.2]],
        k: 0.5,
    };
    let g = c.energy_grad();
    // d/dx = 2 k x + z, d/dy = 2 k y, d/dz = x; d/dk = sum x^2 + y^2.
    for (p, gp) in c.positions.iter().zip(&g.positions) {
        assert_close(
            gp,
            &[2.0 * c.k * p[0] + p[2], 2.0 * c.k * p[1], p[0]],
            1e-12,
        );
    }
    assert_close(&[g.k], &[1.0 + 4.0 + 0.25 + 1.0], 1e-12);
}

/// The same constructs in `f32`: a fixed-size array, an array literal, points taken apart.
#[differentiate]
pub fn single_precision(v: &[f32; 3], p: &[[f32; 2]]) -> f32 {
    let d = [v[0] - v[1], v[2] * 2.0];
    let mut s = d[0] * d[1];
    for &[a, b] in p.iter() {
        s += a * b;
    }
    s + p.iter().map(|q| q[0]).sum::<f32>()
}

#[test]
fn fixed_size_arrays_and_points_in_f32() {
    let (g, gp) = single_precision_grad(&[1.0, 2.0, 3.0], &[[1.0, 2.0], [3.0, 4.0]]);
    // d = [v0 - v1, 2 v2] = [-1, 6]: d0 d1 gives [d1, -d1, 2 d0]; the points b + 1 and a.
    assert_eq!(g, [6.0, -6.0, -2.0]);
    assert_eq!(gp, vec![[3.0, 1.0], [5.0, 3.0]]);
}

/// Rows: a matrix as nested `Vec`s (`&[Vec<f64>]`, gradient `Vec<Vec<f64>>`), read `w[i][j]`,
/// a row passed whole (`dot(&w[i], &w[i])`) and walked (`for row in w`).
#[differentiate]
pub fn dot_rows(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[differentiate]
pub fn nested_layer_loss(w: &[Vec<f64>], x: &[f64], target: &[f64]) -> f64 {
    let mut loss = 0.0;
    for i in 0..w.len() {
        let mut z = 0.0;
        for j in 0..x.len() {
            z += w[i][j] * x[j];
        }
        let r = z.tanh() - target[i];
        loss += r * r + 0.1 * dot_rows(&w[i], &w[i]);
    }
    for row in w {
        loss += row[0] * 0.5;
    }
    loss
}

/// A struct field of nested `Vec`s, read `net.w[i][j]`.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct NestedNet {
    w: Vec<Vec<f64>>,
    b: f64,
}

#[differentiate(wrt(net))]
pub fn nested_net_out(net: &NestedNet, x: &[f64]) -> f64 {
    let mut s = net.b;
    for i in 0..net.w.len() {
        for j in 0..x.len() {
            s += (net.w[i][j] * x[j]).sin();
        }
    }
    s
}

#[test]
fn rows_of_nested_vecs_match_finite_differences_and_analytic_gradients() {
    let w = vec![vec![0.3, -0.2, 0.5], vec![0.1, 0.7, -0.4]];
    let (x, t) = ([0.5, -1.0, 2.0], [0.2, -0.3]);
    let (gw, gx, _) = nested_layer_loss_grad(&w, &x, &t);
    let flat: Vec<f64> = w.iter().flatten().copied().collect();
    let at = |v: &[f64]| nested_layer_loss(&[v[..3].to_vec(), v[3..].to_vec()], &x, &t);
    let want = fd(&at, &flat);
    assert_close(&gw.concat(), &want, 1e-7);
    let want_x = fd(&|v| nested_layer_loss(&w, v, &t), &x);
    assert_close(&gx, &want_x, 1e-7);

    // d/dw_ij sin(w_ij x_j) = cos(w_ij x_j) x_j; d/db = 1.
    let net = NestedNet { w, b: 0.3 };
    let g = nested_net_out_grad(&net, &x);
    for (gi, wi) in g.w.iter().zip(&net.w) {
        let want: Vec<f64> = wi.iter().zip(&x).map(|(w, x)| (w * x).cos() * x).collect();
        assert_close(gi, &want, 1e-12);
    }
    assert_close(&[g.b], &[1.0], 1e-12);
}

/// Buffers of rows of a width known at run time: gradient accumulators
/// `vec![vec![0.0; m]; n]` written `g[i][j] += ..`, and an SGD step on a copy of `&[Vec<f64>]`
/// weights (`w.to_vec()`, written `w2[i][j] -= ..`), both passed whole to a function taking
/// rows.
#[differentiate]
pub fn sum_of_squares(g: &[Vec<f64>]) -> f64 {
    let mut s = 0.0;
    for row in g {
        for v in row {
            s += v * v;
        }
    }
    s
}

#[differentiate]
pub fn sgd_step(w: &[Vec<f64>], x: &[f64], lr: f64) -> f64 {
    let (n, m) = (w.len(), x.len());
    let mut g = vec![vec![0.0; m]; n];
    for i in 0..n {
        for j in 0..m {
            g[i][j] += (w[i][j] * x[j]).sin();
        }
    }
    let mut w2 = w.to_vec();
    for i in 0..g.len() {
        for j in 0..m {
            w2[i][j] -= lr * g[i][j];
        }
    }
    let mut e = 0.0;
    for i in 0..n {
        let [a, b] = [w2[i][0], w2[i][1]];
        e += a * b;
    }
    e + sum_of_squares(&w2) + sum_of_squares(&g)
}

#[test]
fn buffers_of_rows_match_finite_differences() {
    let w = vec![vec![0.3, -0.2, 0.5], vec![0.1, 0.7, -0.4]];
    let (x, lr) = ([0.5, -1.0, 2.0], 0.1);
    let (gw, gx, glr) = sgd_step_grad(&w, &x, lr);
    let mut all: Vec<f64> = w.iter().flatten().copied().collect();
    all.extend(x);
    all.push(lr);
    let at = |v: &[f64]| sgd_step(&[v[..3].to_vec(), v[3..6].to_vec()], &v[6..9], v[9]);
    let want = fd(&at, &all);
    assert_close(&gw.concat(), &want[..6], 1e-7);
    assert_close(&gx, &want[6..9], 1e-7);
    assert_close(&[glr], &want[9..], 1e-7);
}

// ----- grids of rows replaced each step -----

#[differentiate]
fn heat_on_rows(u0: &[Vec<f64>], steps: usize, k: f64) -> f64 {
    let n = u0.len();
    let m = u0[0].len();
    let mut u = vec![vec![0.0; m]; n];
    for i in 0..n {
        for j in 0..m {
            u[i][j] = u0[i][j];
        }
    }
    for _ in 0..steps {
        let mut next = vec![vec![0.0; m]; n];
        for i in 1..n - 1 {
            for j in 1..m - 1 {
                next[i][j] = u[i][j]
                    + k * (u[i - 1][j] + u[i + 1][j] + u[i][j - 1] + u[i][j + 1] - 4.0 * u[i][j]);
            }
        }
        u = next;
    }
    let mut s = 0.0;
    for i in 0..n {
        for j in 0..m {
            s += u[i][j] * u[i][j];
        }
    }
    s
}

/// The heat equation on a grid of nested `Vec`s, each step's new grid replacing the old
/// (`u = next;`): the rows copied element by element into the buffer.
#[test]
fn a_grid_of_rows_replaced_each_step_matches_finite_differences() {
    let u0 = vec![
        vec![0.1, 0.2, 0.3, 0.35],
        vec![0.4, 0.5, 0.6, 0.1],
        vec![0.7, 0.8, 0.9, 0.2],
        vec![0.3, 0.1, 0.5, 0.6],
    ];
    let (g, gk) = heat_on_rows_grad(&u0, 3, 0.1);
    let flat: Vec<f64> = u0.iter().flatten().copied().collect();
    let f = |v: &[f64]| heat_on_rows(&v.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>(), 3, 0.1);
    let got: Vec<f64> = g.iter().flatten().copied().collect();
    assert_close(&got, &fd(&f, &flat), 1e-6);
    let fk = |v: &[f64]| heat_on_rows(&u0, 3, v[0]);
    assert_close(&[gk], &fd(&fk, &[0.1]), 1e-6);
}

#[differentiate]
fn heat_on_copied_rows(u0: &[Vec<f64>], steps: usize, k: f64) -> f64 {
    let n = u0.len();
    let mut u = u0.to_vec();
    for _ in 0..steps {
        let mut next = u.clone();
        for i in 1..n - 1 {
            for j in 1..u[i].len() - 1 {
                next[i][j] = u[i][j]
                    + k * (u[i - 1][j] + u[i + 1][j] + u[i][j - 1] + u[i][j + 1] - 4.0 * u[i][j]);
            }
        }
        u = next;
    }
    let mut s = 0.0;
    for i in 0..n {
        for j in 0..u[i].len() {
            s += u[i][j] * u[i][j] * (j + 1) as f64;
        }
    }
    s
}

/// The same with the grid copied from the parameter (`u0.to_vec()`) and the new one from it
/// (`u.clone()`).
#[test]
fn a_copied_grid_of_rows_replaced_each_step_matches_finite_differences() {
    let u0 = vec![
        vec![0.1, 0.2, 0.3, 0.35],
        vec![0.4, 0.5, 0.6, 0.1],
        vec![0.7, 0.8, 0.9, 0.2],
        vec![0.3, 0.1, 0.5, 0.6],
    ];
    let (g, gk) = heat_on_copied_rows_grad(&u0, 3, 0.1);
    let flat: Vec<f64> = u0.iter().flatten().copied().collect();
    let f = |v: &[f64]| {
        heat_on_copied_rows(&v.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>(), 3, 0.1)
    };
    let got: Vec<f64> = g.iter().flatten().copied().collect();
    assert_close(&got, &fd(&f, &flat), 1e-6);
    let fk = |v: &[f64]| heat_on_copied_rows(&u0, 3, v[0]);
    assert_close(&[gk], &fd(&fk, &[0.1]), 1e-6);
}

/// Periodic wrapping of an array and of a scalar by `%` (slope one between the jumps; the
/// divisor's derivative minus the truncated quotient).
#[differentiate]
fn wrapped(a: &autodiff::ndarray::Array1<f64>, l: f64) -> f64 {
    let w = a % l;
    (&w * &w).sum() + (a.sum() % 2.5) * l
}

#[test]
fn remainders_of_arrays_match_finite_differences() {
    let a = autodiff::ndarray::array![0.7, 3.1, -2.3, 5.2];
    let l = 1.9;
    let (da, dl) = wrapped_grad(&a, l);
    let x = [a[0], a[1], a[2], a[3], l];
    let want = fd(
        &|v: &[f64]| wrapped(&autodiff::ndarray::array![v[0], v[1], v[2], v[3]], v[4]),
        &x,
    );
    assert_close(&[da[0], da[1], da[2], da[3], dl], &want, 1e-6);
}
