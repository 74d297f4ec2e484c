//! Parameter estimation through a simulation: a damped oscillator's stiffness and damping
//! recovered from an observed trajectory, by gradient descent on the misfit of a simulated
//! one. The model is a struct deriving `Differentiable`, the misfit a method differentiated
//! with respect to `self` (its gradient is an `Oscillator`), the force a local closure, and the
//! time-stepping loop is differentiated like any other loop.
use autodiff::check::central_difference;
use autodiff::{differentiate, Differentiable};

#[derive(Clone, Copy, Debug, Differentiable)]
struct Oscillator {
    stiffness: f64,
    damping: f64,
}

impl Oscillator {
    /// Squared distance between the trajectory from `x = 1, v = 0` (semi-implicit Euler,
    /// step `dt`) and the observed positions.
    #[differentiate(wrt(self))]
    fn misfit(&self, observed: &[f64], dt: f64) -> f64 {
        let force = |x: f64, v: f64| -self.stiffness * x - self.damping * v;
        let mut x = 1.0;
        let mut v = 0.0;
        let mut e = 0.0;
        for &seen in observed.iter() {
            v += dt * force(x, v);
            x += dt * v;
            let d = x - seen;
            e += d * d;
        }
        e
    }

    /// The positions themselves, to make the observations.
    fn trajectory(&self, steps: usize, dt: f64) -> Vec<f64> {
        let (mut x, mut v) = (1.0, 0.0);
        (0..steps)
            .map(|_| {
                v += dt * (-self.stiffness * x - self.damping * v);
                x += dt * v;
                x
            })
            .collect()
    }
}

fn main() {
    let truth = Oscillator {
        stiffness: 4.0,
        damping: 0.3,
    };
    let dt = 0.01;
    let observed = truth.trajectory(500, dt);
    let mut model = Oscillator {
        stiffness: 3.0,
        damping: 0.1,
    };

    // The generated gradient against central finite differences, before fitting.
    let g = model.misfit_grad(&observed, dt);
    let fd = central_difference(
        |p| {
            Oscillator {
                stiffness: p[0],
                damping: p[1],
            }
            .misfit(&observed, dt)
        },
        &[model.stiffness, model.damping],
        1e-6,
    );
    println!(
        "gradient at the start: ({:.6}, {:.6}), finite differences ({:.6}, {:.6})",
        g.stiffness, g.damping, fd[0], fd[1]
    );

    // Gradient descent with a step that backs off when the misfit would grow.
    let mut step = 1e-3;
    let mut misfit = model.misfit(&observed, dt);
    for iteration in 0..=400 {
        let (value, g) = model.misfit_value_and_grad(&observed, dt);
        if [0, 10, 25, 50, 100, 200, 400].contains(&iteration) {
            println!(
                "iteration {iteration:4}: misfit {value:.3e}, stiffness {:.4}, damping {:.4}",
                model.stiffness, model.damping
            );
        }
        let trial = Oscillator {
            stiffness: model.stiffness - step * g.stiffness,
            damping: model.damping - step * g.damping,
        };
        let next = trial.misfit(&observed, dt);
        if next < misfit {
            (model, misfit) = (trial, next);
            step *= 1.2;
        } else {
            step *= 0.5;
        }
    }
    println!(
        "recovered stiffness {:.4} (true 4.0), damping {:.4} (true 0.3)",
        model.stiffness, model.damping
    );
    assert!((model.stiffness - 4.0).abs() < 1e-3 && (model.damping - 0.3).abs() < 1e-3);
}
