//! Gradients through a simulation: a velocity-Verlet run of a small Lennard-Jones cluster,
//! written over points (`Vec<[f64; 3]>` buffers stepped `x[i][k] += ..`, forces accumulated
//! pair by pair into a buffer of points and returned), differentiated with respect to the
//! starting velocities. A shooting problem: choose the velocities so that after the run one
//! atom sits at a target; the gradient of that miss flows back through every step (checked
//! once against finite differences), and gradient descent on it closes the miss.
use autodiff::differentiate;

/// Lennard-Jones forces (reduced units), accumulated pair by pair into a buffer of points.
#[differentiate]
fn forces(x: &[[f64; 3]]) -> Vec<[f64; 3]> {
    let n = x.len();
    let mut f = vec![[0.0; 3]; n];
    for i in 0..n {
        for j in i + 1..n {
            let d = [x[i][0] - x[j][0], x[i][1] - x[j][1], x[i][2] - x[j][2]];
            let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            let s6 = 1.0 / (r2 * r2 * r2);
            let scale = 24.0 * (2.0 * s6 * s6 - s6) / r2;
            for k in 0..3 {
                f[i][k] += scale * d[k];
                f[j][k] -= scale * d[k];
            }
        }
    }
    f
}

/// The squared distance of atom 0 from `target` after `steps` velocity-Verlet steps.
#[differentiate(wrt(v0))]
fn miss(x0: &[[f64; 3]], v0: &[[f64; 3]], target: [f64; 3], dt: f64, steps: usize) -> f64 {
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
    let mut d2 = 0.0;
    for k in 0..3 {
        d2 += (x[0][k] - target[k]) * (x[0][k] - target[k]);
    }
    d2
}

fn main() {
    // Four atoms near a tetrahedron at the potential's minimum, at rest.
    let x0 = vec![
        [0.0, 0.0, 0.0],
        [1.12, 0.0, 0.0],
        [0.56, 0.97, 0.0],
        [0.56, 0.32, 0.91],
    ];
    let mut v0 = vec![[0.0; 3]; 4];
    let target = [-0.3, -0.2, 0.1];
    let (dt, steps) = (0.005, 100);

    // The gradient through 100 steps, against central finite differences.
    let g = miss_grad(&x0, &v0, target, dt, steps);
    let h = 1e-6;
    let mut worst: f64 = 0.0;
    for i in 0..4 {
        for k in 0..3 {
            let (mut up, mut down) = (v0.clone(), v0.clone());
            up[i][k] += h;
            down[i][k] -= h;
            let fd = (miss(&x0, &up, target, dt, steps) - miss(&x0, &down, target, dt, steps))
                / (2.0 * h);
            worst = worst.max((g[i][k] - fd).abs() / fd.abs().max(1.0));
        }
    }
    println!("gradient through {steps} steps against finite differences: worst relative difference {worst:.1e}");
    assert!(worst < 1e-6);

    // Gradient descent on the starting velocities.
    println!("iteration        miss");
    let rate = 0.5;
    for it in 0..=60 {
        let (m, g) = miss_value_and_grad(&x0, &v0, target, dt, steps);
        if it % 10 == 0 {
            println!("{it:9}  {m:10.3e}");
        }
        for (v, g) in v0.iter_mut().zip(&g) {
            for k in 0..3 {
                v[k] -= rate * g[k];
            }
        }
    }
    let final_miss = miss(&x0, &v0, target, dt, steps);
    println!("atom 0 starts at {:.3?} with velocity {:.3?}", x0[0], v0[0]);
    assert!(
        final_miss < 1e-4,
        "the descent did not close the miss: {final_miss}"
    );
}
