//! The simulation workloads of the benchmarks: extended Rosenbrock and a Lennard-Jones
//! energy, each annotated, and each with the gradient written by hand.
use autodiff::differentiate;

/// Extended Rosenbrock.
#[differentiate]
pub fn rosenbrock(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        s += 100.0 * a * a + b * b;
    }
    s
}

/// Its gradient by hand, written the fast way: the running contribution in a local.
pub fn rosenbrock_hand(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut carry = 0.0;
    for i in 0..n - 1 {
        let a = x[i + 1] - x[i] * x[i];
        g[i] = carry - 400.0 * a * x[i] - 2.0 * (1.0 - x[i]);
        carry = 200.0 * a;
    }
    g[n - 1] = carry;
    g
}

/// Lennard-Jones energy of particles at `x` (flat, 3 coordinates each), in reduced units.
#[differentiate]
pub fn lennard_jones(x: &[f64]) -> f64 {
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

/// The same energy over points, `&[[f64; 3]]`, each taken apart (written as clippy would
/// have it, with `enumerate` and `skip`): the gradient is a `Vec<[f64; 3]>`.
#[differentiate]
pub fn lennard_jones_points(x: &[[f64; 3]]) -> f64 {
    let mut e = 0.0;
    for (i, &[xi, yi, zi]) in x.iter().enumerate() {
        for &[xj, yj, zj] in x.iter().skip(i + 1) {
            let (dx, dy, dz) = (xi - xj, yi - yj, zi - zj);
            let r2 = dx * dx + dy * dy + dz * dz;
            let s6 = 1.0 / (r2 * r2 * r2);
            e += 4.0 * (s6 * s6 - s6);
        }
    }
    e
}

/// A particle as a struct: its position, and fields the energy does not differentiate.
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Atom {
    pub pos: [f64; 3],
    pub charge: f64,
    pub id: usize,
}

/// The same energy over particles as structs, `&[Atom]` (`wrt(atoms)`): the gradient is a
/// `Vec<Atom>` whose `pos` fields are minus the forces.
#[differentiate(wrt(atoms))]
pub fn lennard_jones_atoms(atoms: &[Atom]) -> f64 {
    let mut e = 0.0;
    for i in 0..atoms.len() {
        for j in (i + 1)..atoms.len() {
            let dx = atoms[i].pos[0] - atoms[j].pos[0];
            let dy = atoms[i].pos[1] - atoms[j].pos[1];
            let dz = atoms[i].pos[2] - atoms[j].pos[2];
            let r2 = dx * dx + dy * dy + dz * dz;
            let s6 = 1.0 / (r2 * r2 * r2);
            e += 4.0 * (s6 * s6 - s6);
        }
    }
    e
}

/// Atoms held in a struct, read through its field (`self.atoms`, `columns::field_slices`).
#[derive(Clone, Debug, autodiff::Differentiable)]
pub struct Cluster {
    pub atoms: Vec<Atom>,
    pub epsilon: f64,
}

/// The Lennard-Jones energy of one pair of atoms.
#[differentiate(wrt(a, b))]
pub fn lj_pair(a: &Atom, b: &Atom) -> f64 {
    let dx = a.pos[0] - b.pos[0];
    let dy = a.pos[1] - b.pos[1];
    let dz = a.pos[2] - b.pos[2];
    let r2 = dx * dx + dy * dy + dz * dz;
    let s6 = 1.0 / (r2 * r2 * r2);
    4.0 * (s6 * s6 - s6)
}

impl Cluster {
    /// The same energy, its atoms passed per pair to a differentiated function of two atoms
    /// (the pair-loop idiom): each pair's gradient comes from `lj_pair`'s pullback.
    #[differentiate(wrt(self))]
    pub fn energy(&self) -> f64 {
        let mut e = 0.0;
        for (i, a) in self.atoms.iter().enumerate() {
            for b in self.atoms.iter().skip(i + 1) {
                e += lj_pair(a, b);
            }
        }
        self.epsilon * e
    }

    /// Its gradient by hand: the same struct, every atom's position gradient and the
    /// gradient with respect to `epsilon` (the unscaled energy, summed in the same pass).
    pub fn energy_grad_hand(&self) -> Cluster {
        let atoms = &self.atoms;
        let n = atoms.len();
        let mut g: Vec<Atom> = atoms
            .iter()
            .map(|a| Atom {
                pos: [0.0; 3],
                charge: 0.0,
                id: a.id,
            })
            .collect();
        let eps = self.epsilon;
        let mut e = 0.0;
        for i in 0..n {
            let [xi, yi, zi] = atoms[i].pos;
            let (mut gx, mut gy, mut gz) = (0.0, 0.0, 0.0);
            for j in (i + 1)..n {
                let [xj, yj, zj] = atoms[j].pos;
                let (dx, dy, dz) = (xi - xj, yi - yj, zi - zj);
                let r2 = dx * dx + dy * dy + dz * dz;
                let s6 = 1.0 / (r2 * r2 * r2);
                e += 4.0 * (s6 * s6 - s6);
                let de = eps * 8.0 * (-6.0 * s6 * s6 + 3.0 * s6) / r2;
                gx += de * dx;
                gy += de * dy;
                gz += de * dz;
                g[j].pos[0] -= de * dx;
                g[j].pos[1] -= de * dy;
                g[j].pos[2] -= de * dz;
            }
            g[i].pos[0] += gx;
            g[i].pos[1] += gy;
            g[i].pos[2] += gz;
        }
        Cluster {
            atoms: g,
            epsilon: e,
        }
    }
}

/// Positions as atoms.
pub fn as_atoms(x: &[f64]) -> Vec<Atom> {
    x.chunks_exact(3)
        .enumerate()
        .map(|(id, p)| Atom {
            pos: [p[0], p[1], p[2]],
            charge: 1.0,
            id,
        })
        .collect()
}

/// Positions as points.
pub fn as_points(x: &[f64]) -> Vec<[f64; 3]> {
    x.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect()
}

/// Its gradient (minus the forces) by hand.
pub fn lennard_jones_hand(x: &[f64]) -> Vec<f64> {
    let n = x.len() / 3;
    let mut g = vec![0.0; x.len()];
    for i in 0..n {
        let (xi, yi, zi) = (x[3 * i], x[3 * i + 1], x[3 * i + 2]);
        let (mut gx, mut gy, mut gz) = (0.0, 0.0, 0.0);
        for j in (i + 1)..n {
            let (dx, dy, dz) = (xi - x[3 * j], yi - x[3 * j + 1], zi - x[3 * j + 2]);
            let r2 = dx * dx + dy * dy + dz * dz;
            let s6 = 1.0 / (r2 * r2 * r2);
            let de = 8.0 * (-6.0 * s6 * s6 + 3.0 * s6) / r2;
            gx += de * dx;
            gy += de * dy;
            gz += de * dz;
            g[3 * j] -= de * dx;
            g[3 * j + 1] -= de * dy;
            g[3 * j + 2] -= de * dz;
        }
        g[3 * i] += gx;
        g[3 * i + 1] += gy;
        g[3 * i + 2] += gz;
    }
    g
}

/// `n` particles on a jittered cubic lattice with spacing 1.1.
pub fn lattice(n: usize) -> Vec<f64> {
    let side = (n as f64).cbrt().ceil() as usize;
    let mut x = Vec::with_capacity(3 * n);
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

/// A point for Rosenbrock.
pub fn rosenbrock_point(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 + 0.4 * ((i * 37 % 101) as f64 / 101.0 - 0.5))
        .collect()
}
