//! The workloads and contenders of the benchmark report, shared by its two passes: the timing
//! pass (`benches/report.rs`, the system allocator) and the heap pass (`src/bin/report-heap.rs`,
//! a counting global allocator, whose atomic counters would otherwise slow every allocation of
//! the timed code). [`row`] does what [`MODE`] says.
// Each of the two binaries builds one of the modes.
#![allow(dead_code)]
use std::collections::HashMap;
use std::sync::OnceLock;

/// What [`row`] does.
pub enum Mode {
    /// Time every contender and print a table row; the heap figures of each `(workload,
    /// size)` come from the heap pass (generated, then hand-written).
    Time(HashMap<(String, String), Vec<usize>>),
    /// Print `workload`, `size` and the peak heap of one call of the generated and of the
    /// hand-written gradient, tab-separated, measured by the function given.
    Heap(fn(&mut dyn FnMut()) -> usize),
}

/// Set once by the binary before the rows run.
pub static MODE: OnceLock<Mode> = OnceLock::new();

/// The table's header.
pub const HEADER: &str = "| workload | size | primal | generated | generated / primal | generated / hand-written | generated's speed-up over peers | heap, generated | heap, hand-written |\n|---|---|---|---|---|---|---|---|---|";

/// Every row of the report, in order.
pub fn all_rows() {
    scalar_rows();
    rosenbrock_rows();
    lennard_jones_rows();
    gmm_rows();
    gmm_ndarray_rows();
    mlp_rows();
    mlp_struct_rows();
    row_loop_rows();
    trajectory_rows();
    stencil_rows();
    call_rows();
}
use autodiff::ndarray::{Array1, Array2};
use autodiff_bench::{mlp, seed, sim};
use gradbench_autodiff::evals::gmm;
use std::hint::black_box;
use std::time::Instant;

/// Median seconds per call of each function, measured in turns: each is calibrated to blocks
/// of about 5 ms, then 15 rounds run one block of each in turn, so that every contender of a
/// row sees the same phases of a machine whose speed changes from one second to the next.
fn median_times(fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let reps: Vec<usize> = fs
        .iter_mut()
        .map(|f| {
            let start = Instant::now();
            f();
            let once = start.elapsed().as_secs_f64().max(1e-9);
            ((5e-3 / once) as usize).clamp(1, 1_000_000)
        })
        .collect();
    let mut samples = vec![Vec::new(); fs.len()];
    for _ in 0..15 {
        for ((f, &reps), samples) in fs.iter_mut().zip(&reps).zip(&mut samples) {
            let start = Instant::now();
            for _ in 0..reps {
                f();
            }
            samples.push(start.elapsed().as_secs_f64() / reps as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn max_rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "gradient lengths differ");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1e-8))
        .fold(0.0, f64::max)
}

fn fmt_time(s: f64) -> String {
    if s < 1e-6 {
        format!("{:.1} ns", s * 1e9)
    } else if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

fn fmt_bytes(b: usize) -> String {
    if b < 10 * 1024 {
        format!("{b} B")
    } else {
        format!("{} KiB", b / 1024)
    }
}

/// One gradient contender: its name, a call, and its gradient (flattened) for the check.
struct Contender<'a> {
    name: &'static str,
    run: Box<dyn FnMut() + 'a>,
    gradient: Vec<f64>,
}

fn contender<'a, G: 'a>(
    name: &'static str,
    mut f: impl FnMut() -> G + 'a,
    flat: impl Fn(&G) -> Vec<f64>,
) -> Contender<'a> {
    let gradient = flat(&f());
    Contender {
        name,
        run: Box::new(move || {
            black_box(f());
        }),
        gradient,
    }
}

/// Measures and prints one table row: primal, generated, hand-written (if any), then peers.
fn row(
    workload: &str,
    size: &str,
    mut primal: impl FnMut(),
    reference: &[f64],
    mut contenders: Vec<Contender>,
) {
    // `cargo bench .. --bench report -- gmm` runs only the rows whose workload mentions "gmm".
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filter.is_empty()
        && !filter
            .iter()
            .any(|f| workload.to_lowercase().contains(&f.to_lowercase()))
    {
        return;
    }
    let mode = MODE
        .get()
        .expect("the report's mode is set before its rows run");
    let heaps = match mode {
        Mode::Heap(peak_bytes) => {
            // The heap pass: one call of the generated and the hand-written gradient each.
            let mut bytes = Vec::new();
            for c in contenders
                .iter_mut()
                .filter(|c| c.name == "generated" || c.name == "hand-written")
            {
                bytes.push(peak_bytes(&mut c.run).to_string());
            }
            println!("{workload}\t{size}\t{}", bytes.join("\t"));
            return;
        }
        Mode::Time(heaps) => heaps.get(&(workload.to_string(), size.to_string())),
    };
    let mut checked = Vec::new();
    for c in contenders.iter_mut() {
        let err = max_rel_err(&c.gradient, reference);
        checked.push((c.name, err));
    }
    let mut runs: Vec<&mut dyn FnMut()> = vec![&mut primal];
    runs.extend(
        contenders
            .iter_mut()
            .map(|c| &mut *c.run as &mut dyn FnMut()),
    );
    let medians = median_times(&mut runs);
    let t_primal = medians[0];
    let mut times = Vec::new();
    for ((name, err), &t) in checked.into_iter().zip(&medians[1..]) {
        eprintln!(
            "  {workload} {size} {name}: max relative error {err:.1e}, {}",
            fmt_time(t)
        );
        times.push((name, t, err));
    }
    let heap = |k: usize| {
        heaps
            .and_then(|h| h.get(k))
            .map_or("?".to_string(), |&b| fmt_bytes(b))
    };
    let generated = times[0].1;
    let hand = times.iter().find(|t| t.0 == "hand-written").map(|t| t.1);
    let hand_nd = times
        .iter()
        .find(|t| t.0 == "hand-written (ndarray)")
        .map(|t| t.1);
    let speedups: Vec<String> = times
        .iter()
        .filter(|t| !t.0.starts_with("generated") && !t.0.starts_with("hand-written"))
        .map(|t| {
            let wrong = if t.2 > 1e-6 {
                format!(" (**wrong gradient**: max relative error {:.0e})", t.2)
            } else {
                String::new()
            };
            format!("{} {:.1}x{wrong}", t.0, t.1 / generated)
        })
        .collect();
    println!(
        "| {workload} | {size} | {} | {} | {:.2} | {} | {} | {} | {} |",
        fmt_time(t_primal),
        fmt_time(generated),
        generated / t_primal,
        match (hand, hand_nd) {
            (Some(h), Some(hn)) => format!(
                "{:.2} (loops); {:.2} (same ndarray operations)",
                generated / h,
                generated / hn
            ),
            (Some(h), None) => format!("{:.2}", generated / h),
            _ => "—".to_string(),
        },
        if speedups.is_empty() {
            "—".to_string()
        } else {
            speedups.join(", ")
        },
        heap(0),
        hand.map_or("—".to_string(), |_| heap(1)),
    );
}

pub fn scalar_rows() {
    let x = 2.0;
    let reference = [seed::square_plus_hand(x)];
    row(
        "seed: (x+2)^2+3",
        "scalar",
        || {
            black_box(seed::square_plus(black_box(x)));
        },
        &reference,
        vec![
            contender(
                "generated",
                || seed::square_plus_grad(black_box(x)),
                |g| vec![*g],
            ),
            contender(
                "hand-written",
                || seed::square_plus_hand(black_box(x)),
                |g| vec![*g],
            ),
        ],
    );
    let xs = autodiff::ndarray::Array2::<f64>::ones((2, 4));
    let ys = autodiff::ndarray::Array2::<f64>::ones((2, 1));
    let ws = autodiff::ndarray::Array2::<f64>::ones((4, 1));
    let flat3 = |g: &(
        autodiff::ndarray::Array2<f64>,
        autodiff::ndarray::Array2<f64>,
        autodiff::ndarray::Array2<f64>,
    )| {
        g.0.iter()
            .chain(g.1.iter())
            .chain(g.2.iter())
            .copied()
            .collect::<Vec<f64>>()
    };
    let reference = flat3(&seed::j_hand(&xs, &ys, &ws));
    row(
        "seed: sum(y - x@W)",
        "2x4, 4x1",
        || {
            black_box(seed::j(&xs, &ys, &ws));
        },
        &reference,
        vec![
            contender("generated", || seed::j_grad(&xs, &ys, &ws), flat3),
            contender("hand-written", || seed::j_hand(&xs, &ys, &ws), flat3),
        ],
    );
}

#[allow(unused_mut)]
pub fn rosenbrock_rows() {
    for n in [10, 1000, 100_000] {
        let x = sim::rosenbrock_point(n);
        let reference = sim::rosenbrock_hand(&x);
        let id = |g: &Vec<f64>| g.clone();
        let mut cs = vec![
            contender("generated", || sim::rosenbrock_grad(black_box(&x)), id),
            contender("hand-written", || sim::rosenbrock_hand(black_box(&x)), id),
        ];
        #[cfg(feature = "peers")]
        {
            use autodiff_bench::peers;
            if n <= 1000 {
                cs.push(contender(
                    "num-dual",
                    || peers::rosenbrock_num_dual(black_box(&x)),
                    id,
                ));
            }
            cs.push(contender(
                "reverse",
                || peers::rosenbrock_reverse(black_box(&x)),
                id,
            ));
            cs.push(contender(
                "ad_trait",
                || peers::rosenbrock_ad_trait(black_box(&x)),
                id,
            ));
        }
        row(
            "Rosenbrock",
            &format!("n = {n}"),
            || {
                black_box(sim::rosenbrock(black_box(&x)));
            },
            &reference,
            cs,
        );
    }
}

#[allow(unused_mut)]
pub fn lennard_jones_rows() {
    for n in [64, 256, 1024] {
        let x = sim::lattice(n);
        let reference = sim::lennard_jones_hand(&x);
        let id = |g: &Vec<f64>| g.clone();
        let mut cs = vec![
            contender("generated", || sim::lennard_jones_grad(black_box(&x)), id),
            contender(
                "hand-written",
                || sim::lennard_jones_hand(black_box(&x)),
                id,
            ),
        ];
        #[cfg(feature = "peers")]
        {
            use autodiff_bench::peers;
            if n <= 256 {
                cs.push(contender(
                    "num-dual",
                    || peers::lennard_jones_num_dual(black_box(&x)),
                    id,
                ));
            }
            cs.push(contender(
                "reverse",
                || peers::lennard_jones_reverse(black_box(&x)),
                id,
            ));
            cs.push(contender(
                "ad_trait",
                || peers::lennard_jones_ad_trait(black_box(&x)),
                id,
            ));
        }
        row(
            "Lennard-Jones",
            &format!("N = {n}"),
            || {
                black_box(sim::lennard_jones(black_box(&x)));
            },
            &reference,
            cs,
        );
    }
    // The same energy over points `&[[f64; 3]]`, against the same hand-written gradient.
    for n in [64, 1024] {
        let x = sim::lattice(n);
        let points = sim::as_points(&x);
        let reference = sim::lennard_jones_hand(&x);
        let flat = |g: &Vec<[f64; 3]>| g.iter().flatten().copied().collect::<Vec<f64>>();
        row(
            "Lennard-Jones over points `&[[f64; 3]]`",
            &format!("N = {n}"),
            || {
                black_box(sim::lennard_jones_points(black_box(&points)));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || sim::lennard_jones_points_grad(black_box(&points)),
                    flat,
                ),
                contender(
                    "hand-written",
                    || sim::lennard_jones_hand(black_box(&x)),
                    |g: &Vec<f64>| g.clone(),
                ),
            ],
        );
    }
    // Over particles as structs `&[Atom]`, differentiated field by field.
    for n in [64, 1024] {
        let x = sim::lattice(n);
        let atoms = sim::as_atoms(&x);
        let reference = sim::lennard_jones_hand(&x);
        let flat = |g: &Vec<sim::Atom>| g.iter().flat_map(|a| a.pos).collect::<Vec<f64>>();
        row(
            "Lennard-Jones over structs `&[Atom]`",
            &format!("N = {n}"),
            || {
                black_box(sim::lennard_jones_atoms(black_box(&atoms)));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || sim::lennard_jones_atoms_grad(black_box(&atoms)),
                    flat,
                ),
                contender(
                    "hand-written",
                    || sim::lennard_jones_hand(black_box(&x)),
                    |g: &Vec<f64>| g.clone(),
                ),
            ],
        );
    }
    // A struct holding the atoms, per pair by a differentiated function of two atoms.
    for n in [64, 1024] {
        let x = sim::lattice(n);
        let cluster = sim::Cluster {
            atoms: sim::as_atoms(&x),
            epsilon: 1.0,
        };
        // The whole struct's gradient: positions, and `epsilon`'s (the energy), by hand too.
        let flat = |g: &sim::Cluster| {
            let mut v: Vec<f64> = g.atoms.iter().flat_map(|a| a.pos).collect();
            v.push(g.epsilon);
            v
        };
        let reference = flat(&cluster.energy_grad_hand());
        row(
            "Lennard-Jones over `self.atoms`, per pair by `lj_pair(a, b)`",
            &format!("N = {n}"),
            || {
                black_box(black_box(&cluster).energy());
            },
            &reference,
            vec![
                contender("generated", || black_box(&cluster).energy_grad(), flat),
                contender(
                    "hand-written",
                    || black_box(&cluster).energy_grad_hand(),
                    flat,
                ),
            ],
        );
    }
}

pub fn gmm_rows() {
    for (d, k, n) in [(2, 5, 1000), (10, 25, 1000)] {
        let p = autodiff_bench::gmm::Problem::new(d, k, n, 0.5);
        let (alpha, mu, q, l, x) = (&p.alpha, &p.mu, &p.q, &p.l, &p.x);
        let w = gmm::Wishart { gamma: 1.0, m: 0 };
        let flat = |g: &(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)| {
            [g.0.clone(), g.1.clone(), g.2.clone(), g.3.clone()].concat()
        };
        let reference = flat(&autodiff_bench::gmm::gradient_hand(
            alpha, mu, q, l, x, d, k, n, w,
        ));
        #[allow(unused_mut)]
        let mut cs = vec![
            contender(
                "generated",
                || gmm::objective_grad(alpha, mu, q, l, x, d, k, n, w),
                flat,
            ),
            contender(
                "hand-written",
                || autodiff_bench::gmm::gradient_hand(alpha, mu, q, l, x, d, k, n, w),
                flat,
            ),
        ];
        #[cfg(feature = "peers")]
        {
            use autodiff_bench::peers;
            let id = |g: &Vec<f64>| g.clone();
            cs.push(contender(
                "reverse",
                || peers::gmm_reverse(alpha, mu, q, l, x, d, k, n, w),
                id,
            ));
            cs.push(contender(
                "ad_trait",
                || peers::gmm_ad_trait(alpha, mu, q, l, x, d, k, n, w),
                id,
            ));
            let candle =
                peers::CandleGmm::new(alpha, mu, q, l, x, (d, k, n), w).expect("candle tensors");
            cs.push(contender(
                "candle",
                move || candle.gradient().expect("candle's gradient"),
                |g: &Vec<_>| peers::flatten_candle(g),
            ));
        }
        row(
            "GMM (loops)",
            &format!("d = {d}, K = {k}, n = {n}"),
            || {
                black_box(gmm::objective(alpha, mu, q, l, x, d, k, n, w));
            },
            &reference,
            cs,
        );
    }
}

/// The GMM written with ndarray operations, against the same hand-written gradient.
pub fn gmm_ndarray_rows() {
    use autodiff::ndarray::{Array1, Array2};
    use autodiff_bench::gmm::{ndarray_constants, objective_ndarray, objective_ndarray_grad};
    // Two floors: the hand-written gradient of the loops (the fastest way to write it), and one
    // written by hand in the same ndarray operations as the objective.
    for (d, k, n) in [(2, 5, 1000), (10, 25, 1000)] {
        let p = autodiff_bench::gmm::Problem::new(d, k, n, 0.5);
        let (alpha, mu, q, l, x) = (&p.alpha, &p.mu, &p.q, &p.l, &p.x);
        let w = gmm::Wishart { gamma: 1.0, m: 0 };
        let (aa, am, aq, al, ax) = p.arrays();
        let (tri, constant) = ndarray_constants(d, k, n, w);
        let flat = |g: &(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>)| {
            [g.0.clone(), g.1.clone(), g.2.clone(), g.3.clone()].concat()
        };
        let flat_nd = |g: &(Array1<f64>, Array2<f64>, Array2<f64>, Array2<f64>)| {
            g.0.iter()
                .chain(g.1.iter())
                .chain(g.2.iter())
                .chain(g.3.iter())
                .copied()
                .collect::<Vec<f64>>()
        };
        let hand = || autodiff_bench::gmm::gradient_hand(alpha, mu, q, l, x, d, k, n, w);
        let reference = flat(&hand());
        row(
            "GMM (ndarray)",
            &format!("d = {d}, K = {k}, n = {n}"),
            || {
                black_box(objective_ndarray(
                    &aa, &am, &aq, &al, &ax, &tri, w, constant,
                ));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || objective_ndarray_grad(&aa, &am, &aq, &al, &ax, &tri, w, constant),
                    flat_nd,
                ),
                contender("hand-written", hand, flat),
                contender(
                    "hand-written (ndarray)",
                    || autodiff_bench::gmm::gradient_hand_ndarray(&aa, &am, &aq, &al, &ax, &tri, w),
                    flat_nd,
                ),
            ],
        );
    }
}

fn mlp_flat(g: &mlp::Grads) -> Vec<f64> {
    g.0.iter()
        .chain(g.1.iter())
        .chain(g.2.iter())
        .chain(g.3.iter())
        .copied()
        .collect()
}

pub fn mlp_rows() {
    let problem = mlp::problem(128, 256, 256, 10);
    let (x, y, w1, b1, w2, b2) = &problem;
    let reference = mlp_flat(&mlp::hand_value_and_grad(x, y, w1, b1, w2, b2).1);
    #[allow(unused_mut)]
    let mut cs = vec![
        contender(
            "generated",
            || mlp::loss_grad(x, y, w1, b1, w2, b2),
            mlp_flat,
        ),
        contender(
            "hand-written",
            || mlp::hand_value_and_grad(x, y, w1, b1, w2, b2).1,
            mlp_flat,
        ),
    ];
    #[cfg(feature = "peers")]
    {
        use autodiff_bench::peers::{flatten_candle, CandleMlp};
        let candle = CandleMlp::new(&problem).expect("candle tensors");
        cs.push(contender(
            "candle",
            move || candle.gradient().expect("candle's gradient"),
            |g: &Vec<_>| flatten_candle(g),
        ));
    }
    row(
        "MLP loss",
        "batch 128, 256-256-10",
        || {
            black_box(mlp::loss(x, y, w1, b1, w2, b2));
        },
        &reference,
        cs,
    );
}

/// The MLP as a struct whose `loss` method is differentiated with respect to `self`.
pub fn mlp_struct_rows() {
    let (x, y, w1, b1, w2, b2) = mlp::problem(128, 256, 256, 10);
    let reference = mlp_flat(&mlp::hand_value_and_grad(&x, &y, &w1, &b1, &w2, &b2).1);
    let model = mlp::Mlp { w1, b1, w2, b2 };
    let flat = |g: &mlp::Mlp| mlp_flat(&(g.w1.clone(), g.b1.clone(), g.w2.clone(), g.b2.clone()));
    row(
        "MLP loss (a struct, `wrt(self)`)",
        "batch 128, 256-256-10",
        || {
            black_box(model.loss(&x, &y));
        },
        &reference,
        vec![
            contender("generated", || model.loss_grad(&x, &y), flat),
            contender(
                "hand-written",
                || {
                    let (w1, b1, w2, b2) = (&model.w1, &model.b1, &model.w2, &model.b2);
                    mlp::hand_value_and_grad(&x, &y, w1, b1, w2, b2).1
                },
                mlp_flat,
            ),
        ],
    );
}

/// A loop over a matrix's rows: the reverse of `x.row(i)` touches one row per iteration.
pub fn row_loop_rows() {
    use autodiff_bench::rows::{per_row, per_row_grad, per_row_hand, problem};
    let flat = |g: &(Array2<f64>, Array1<f64>)| {
        g.0.iter().chain(g.1.iter()).copied().collect::<Vec<f64>>()
    };
    for n in [100, 1000, 10000] {
        let (x, w) = problem(n, 10);
        let reference = flat(&per_row_hand(&x, &w));
        row(
            "loop over rows",
            &format!("n = {n}, d = 10"),
            || {
                black_box(per_row(black_box(&x), black_box(&w)));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || per_row_grad(black_box(&x), black_box(&w)),
                    flat,
                ),
                contender(
                    "hand-written",
                    || per_row_hand(black_box(&x), black_box(&w)),
                    flat,
                ),
            ],
        );
    }
}

/// A time-stepping loop keeping its trajectory and reading its last state back: the reverse of
/// `states.row(t - 1)` copies one row per step, not the trajectory.
pub fn trajectory_rows() {
    use autodiff_bench::trajectory::{problem, trajectory, trajectory_grad, trajectory_hand};
    let flat = |g: &(Array1<f64>, Array2<f64>)| {
        g.0.iter().chain(g.1.iter()).copied().collect::<Vec<f64>>()
    };
    for (n, steps) in [(10, 100), (100, 1000)] {
        let (x, w) = problem(n);
        let reference = flat(&trajectory_hand(&x, &w, steps));
        row(
            "trajectory (rows stored and read back)",
            &format!("n = {n}, {steps} steps"),
            || {
                black_box(trajectory(black_box(&x), black_box(&w), steps));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || trajectory_grad(black_box(&x), black_box(&w), steps),
                    flat,
                ),
                contender(
                    "hand-written",
                    || trajectory_hand(black_box(&x), black_box(&w), steps),
                    flat,
                ),
            ],
        );
    }
}

/// Explicit time steps of masses and springs on slices: a stencil reads the positions at
/// `i - 1`, `i`, `i + 1`, then the positions are updated in place (a window copy per step).
pub fn stencil_rows() {
    use autodiff_bench::stencil::{chain, springs, springs_grad, springs_hand};
    let flat = |g: &(Vec<f64>, f64, f64)| {
        let mut v = g.0.clone();
        v.extend([g.1, g.2]);
        v
    };
    for (n, steps) in [(100, 100), (1000, 100), (10_000, 10)] {
        let x = chain(n);
        let reference = flat(&springs_hand(&x, 0.5, 0.1, steps));
        row(
            "stencil time steps (slices)",
            &format!("n = {n}, {steps} steps"),
            || {
                black_box(springs(black_box(&x), 0.5, 0.1, steps));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || springs_grad(black_box(&x), 0.5, 0.1, steps),
                    flat,
                ),
                contender(
                    "hand-written",
                    || springs_hand(black_box(&x), 0.5, 0.1, steps),
                    flat,
                ),
            ],
        );
    }
}

/// A call to a differentiated function whose body is a loop: one run of the callee per call.
pub fn call_rows() {
    use autodiff_bench::calls::{problem, wave_energy, wave_energy_grad, wave_energy_hand};
    for n in [1000, 100_000] {
        let x = problem(n);
        let reference = wave_energy_hand(&x);
        row(
            "a call to a function with a loop (`s = wave_sum(x); s.sqrt() + s`)",
            &format!("n = {n}"),
            || {
                black_box(wave_energy(black_box(&x)));
            },
            &reference,
            vec![
                contender(
                    "generated",
                    || wave_energy_grad(black_box(&x)),
                    |g: &Vec<f64>| g.clone(),
                ),
                contender(
                    "hand-written",
                    || wave_energy_hand(black_box(&x)),
                    |g: &Vec<f64>| g.clone(),
                ),
            ],
        );
    }
}
