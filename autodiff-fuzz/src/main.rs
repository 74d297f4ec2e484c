//! `gen-programs`: a seeded, deterministic generator of random differentiable Rust functions
//! over the surface `#[differentiate]` supports (straight-line code and every rule of the
//! table, `if`/`else` on comparisons, loops with carried state, `while` with a data-dependent
//! trip count, indexing, buffer writes, integer state in buffers read as indices and in
//! branches, calls to annotated and hand-derived functions, and array code with broadcasting),
//! with a harness that checks each generated gradient against forward-mode dual numbers (a
//! twin of each program over `num_dual::Dual64`) and central finite differences.
//!
//! ```sh
//! cargo run -p autodiff-fuzz -- --seed 1 --count 300 > tests/corpus.rs   # the fixed corpus
//! scripts/differential.sh 10000                                           # a release run
//! ```
#![forbid(unsafe_code)]

use std::fmt::Write;

/// xorshift64*: small, seeded, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn literal(&mut self) -> String {
        format!("{:.2}f64", (self.below(400) as f64 - 200.0) / 100.0)
    }
}

/// One function being generated: the scalar names in scope.
struct Gen<'r> {
    rng: &'r mut Rng,
    scalars: Vec<String>,
    fresh: usize,
    /// The loop variable in scope, if any.
    index: Option<String>,
}

impl Gen<'_> {
    fn name(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    fn leaf(&mut self) -> String {
        match self.rng.below(10) {
            0 | 1 => self.rng.literal(),
            2 | 3 => {
                let k = match &self.index {
                    Some(i) if self.rng.chance(60) => {
                        if self.rng.chance(50) {
                            i.clone()
                        } else {
                            format!("({i} + {}) % n", 1 + self.rng.below(3))
                        }
                    }
                    _ => self.rng.below(4).to_string(),
                };
                format!("x[{k}]")
            }
            _ => self.scalars[self.rng.below(self.scalars.len())].clone(),
        }
    }

    /// A float expression of the given depth, every rule kept inside its domain.
    fn expr(&mut self, depth: usize) -> String {
        if depth == 0 || self.rng.chance(20) {
            return self.leaf();
        }
        let d = depth - 1;
        let e = self.expr(d);
        match self.rng.below(47) {
            0 => format!("({e} + {})", self.expr(d)),
            1 => format!("({e} - {})", self.expr(d)),
            2 | 3 => format!("({e} * {})", self.expr(d)),
            4 => {
                let q = self.expr(d);
                format!("({e} / ({q} * {q} + 1.0))")
            }
            5 => format!("(-({e}))"),
            6 => format!("{e}.sin()"),
            7 => format!("{e}.cos()"),
            8 => format!("{e}.tanh()"),
            9 => format!("{e}.atan()"),
            10 => format!("{e}.asinh()"),
            11 => format!("{e}.tanh().exp()"),
            12 => format!("({e}.tanh() * 0.5).tan()"),
            13 => format!("({e}.tanh() * 0.9).asin()"),
            14 => format!("({e}.tanh() * 0.9).acos()"),
            15 => format!("({e}.tanh() * 0.9).atanh()"),
            16 => format!("({e} * {e} + 1.0).ln()"),
            17 => format!("({e} * {e} + 0.5).sqrt()"),
            18 => format!("({e} * {e} + 1.0).cbrt()"),
            19 => format!("({e} * {e} + 1.0).log2()"),
            20 => format!("({e} * {e} + 1.0).log10()"),
            21 => format!("({e} * {e} + 1.0).log(3.0)"),
            22 => format!("({e} * {e}).ln_1p()"),
            23 => format!("{e}.tanh().exp2()"),
            24 => format!("{e}.tanh().exp_m1()"),
            25 => format!("({e} * {e} + 1.5).acosh()"),
            26 => format!("({e} * {e} + 1.0).recip()"),
            27 => format!("{e}.powi({})", 2 + self.rng.below(2)),
            28 => format!("({e} * {e} + 1.0).powf({}.tanh())", self.expr(d)),
            29 => format!("{e}.hypot({})", self.expr(d)),
            30 => {
                let q = self.expr(d);
                format!("{e}.atan2({q} * {q} + 0.5)")
            }
            31 => format!("{e}.mul_add({}, {})", self.expr(d), self.expr(d)),
            32 => format!("{e}.max({})", self.expr(d)),
            33 => format!("{e}.min({})", self.expr(d)),
            34 => format!("{e}.clamp(-1.0, 1.0)"),
            35 => format!("{e}.abs()"),
            36 => format!("({e}.tanh() * 0.5).sinh()"),
            37 => format!("({e}.tanh() * 0.5).cosh()"),
            38 => format!("f64::sin({e})"),
            39 => format!("smooth({e})"),
            40 => format!("helpers::soft({e}, 0.3)"),
            41 => format!("autodiff::ops::softplus({e})"),
            42 => format!("autodiff::ops::sigmoid({e})"),
            // Piecewise constant (zero derivative), plus a smooth term: a jump within the
            // finite differences' step is as unlikely as hitting a point exactly. Parenthesized
            // like every form, so that `e * e + 1.5` stays a square plus 1.5 when `e` is one
            // (without, `acosh` got arguments below 1, found by `differential.sh 10000 300000`).
            43 => {
                let f = ["floor", "ceil", "round", "trunc", "signum", "fract"][self.rng.below(6)];
                format!("((({e}).tanh() * 3.0).{f}() * 0.25 + {})", self.expr(d))
            }
            // A shift held constant, as a log-sum-exp's maximum: the value is `tanh(e)` (to
            // rounding), so finite differences still apply, and the shift's own expression is
            // differentiated nowhere (`useful.rs` demotes it).
            44 => {
                let g = self.expr(d);
                format!("((({e}).tanh() - ({g}).tanh().stop_gradient()).exp().ln() + ({g}).tanh().stop_gradient())")
            }
            // Periodic and sign-copying methods: slope one (or minus one) between jumps.
            45 => match self.rng.below(2) {
                0 => format!("(({e}).rem_euclid(1.3) + {})", self.expr(d)),
                _ => format!("({e}).copysign({})", self.expr(d)),
            },
            _ => format!("({e} * 0.5)"),
        }
    }

    fn cond(&mut self) -> String {
        let ops = ["<", ">", "<=", ">="];
        format!(
            "{} {} {}",
            self.expr(1),
            ops[self.rng.below(4)],
            self.rng.literal()
        )
    }

    /// One statement; may bind a new scalar.
    fn stmt(&mut self, out: &mut String) {
        match self.rng.below(12) {
            0 | 1 if self.rng.chance(20) => {
                // A closure called by name (inlined at its calls), twice with its arguments
                // swapped, or in a loop. Its body reads its parameters and names bound once,
                // before it (every generated name is fresh; `index` is none at the top).
                let f = self.name("f");
                let v = self.name("v");
                let outer = self.scalars.len();
                self.scalars.extend(["t".to_string(), "u".to_string()]);
                let body = self.expr(3);
                self.scalars.truncate(outer);
                let (e1, e2) = (self.expr(2), self.expr(2));
                let _ = writeln!(out, "    let {f} = |t: f64, u: f64| {body};");
                if self.rng.chance(50) {
                    let _ = writeln!(
                        out,
                        "    let {v} = {f}({e1}, {e2}) * 0.5 + {f}({e2}, {e1});"
                    );
                } else {
                    let _ = writeln!(out, "    let mut {v} = {e2};\n    for i in 0..n {{\n        {v} = {v} * 0.5 + {f}(x[i], {e1});\n    }}");
                }
                self.scalars.push(v);
            }
            0 | 1 if self.rng.chance(10) => {
                // A call of a vector-valued function, its elements read by index.
                let v = self.name("v");
                let r = self.name("r");
                let (e, k) = (self.expr(2), self.rng.below(3));
                let _ = writeln!(
                    out,
                    "    let {r} = products(x, {e});\n    let {v} = {r}[0] * {r}[2] + {r}[{k}];"
                );
                self.scalars.push(v);
            }
            0 | 1 if self.rng.chance(12) => {
                // Fixed-size arrays: a difference vector as an array literal passed by
                // reference, a map returning `[f64; 3]` taken apart, a `[0.0; 3]` buffer
                // reading its own elements, and a generic function given its const parameter.
                let v = self.name("v");
                let (e1, e2) = (self.expr(2), self.expr(1));
                let lit = self.rng.literal();
                let _ = match self.rng.below(9) {
                    // A buffer of rows of a width known at run time (`Vec<Vec<f64>>`), written
                    // element by element, passed to a function taking rows.
                    8 => writeln!(out, "    let mut {v}_g = vec![vec![0.0; 2]; n];\n    for i in 0..n {{\n        {v}_g[i][i % 2] += x[i] * {e1};\n        {v}_g[i][1] = {v}_g[i][0] * x[(i + 1) % n] + {v}_g[i][1];\n    }}\n    let {v} = {v}_g[n - 1][1] * {e2} + row_sum(&{v}_g);"),
                    // A function returning a tuple of floats, taken apart.
                    7 => writeln!(out, "    let ({v}_r, {v}_t) = polar2({e1}, x[1]);\n    let {v} = {v}_r * {v}_t + {e2};"),
                    // A `Vec` built by `push`, behind a condition and reading what it pushed
                    // before, then walked.
                    6 => writeln!(out, "    let mut {v}_o = Vec::new();\n    for (i, &w) in x.iter().enumerate() {{\n        if w > {lit} {{\n            {v}_o.push(w * {e1});\n        }}\n        if {v}_o.len() > 1 {{\n            let {v}_l = {v}_o[{v}_o.len() - 1];\n            {v}_o.push({v}_l * x[i] * 0.5);\n        }}\n    }}\n    let mut {v} = {e2};\n    for (i, &w) in {v}_o.iter().enumerate() {{\n        {v} += w * (i + 1) as f64;\n    }}"),
                    // Rows of differentiated values (points, kept flat) and a `vec![..]` of
                    // them, each written after it is filled, one passed to a function.
                    5 => writeln!(out, "    let mut {v}_r = vec![[x[0] * {e1}, x[1]], [x[2], {e2}]];\n    {v}_r[1][0] += {v}_r[0][1] * x[3];\n    let mut {v}_w = vec![{e2}, x[1] * x[2]];\n    {v}_w[0] = {v}_w[0] * {v}_w[1];\n    let {v} = {v}_r[1][0] * {v}_r[0][0] + pair_sum(&{v}_r) + {v}_w[0];"),
                    // A buffer of points accumulated pair by pair (`f[i][k] += ..`), swapped,
                    // passed to a function taking points.
                    3 => writeln!(out, "    let mut {v}_f = vec![[0.0; 2]; n];\n    for i in 1..n {{\n        let {v}_d = x[i] - x[i - 1];\n        {v}_f[i][0] += {v}_d * {e1};\n        {v}_f[i - 1][1] += x[i] * {v}_d * 0.5;\n    }}\n    {v}_f.swap(0, n - 1);\n    let {v} = {v}_f[0][1] * {v}_f[n - 1][0] + pair_sum(&{v}_f) * {e2};"),
                    // Points stored whole, stepped in place with a function returning points,
                    // walked by pattern and taken apart.
                    4 => writeln!(out, "    let mut {v}_p = vec![[0.0; 2]; n];\n    for i in 0..n {{\n        {v}_p[i] = [x[i], x[(i + 1) % n] * {e1}];\n    }}\n    for _ in 0..3 {{\n        let {v}_s = spread(&{v}_p);\n        for i in 0..n {{\n            {v}_p[i][0] += 0.1 * {v}_s[i][1];\n            {v}_p[i][1] = {v}_p[i][1] * 0.9 + 0.1 * {v}_p[i][0].sin();\n        }}\n    }}\n    let mut {v} = {e2};\n    for &[{v}_a, {v}_b] in {v}_p.iter() {{\n        {v} += {v}_a * {v}_b;\n    }}\n    let [{v}_u, _] = {v}_p[1];\n    {v} += {v}_u;"),
                    0 => writeln!(out, "    let {v}_d = [x[0] - x[1], {e1}, x[2] * {e2}];\n    let {v} = norm3(&{v}_d) + {v}_d[1] * {v}_d[2];"),
                    1 => writeln!(out, "    let [{v}_p, {v}_q, {v}_r] = twist([{e1}, x[1], {e2}], x[3]);\n    let {v} = {v}_p * {v}_q + {v}_r;"),
                    _ => writeln!(out, "    let mut {v}_b = [0.0; 3];\n    for i in 0..3 {{\n        {v}_b[i] = x[i] * {e1} + {v}_b[(i + 2) % 3];\n    }}\n    let {v} = {v}_b[0] * {v}_b[2] + leading::<3>(&{v}_b) + leading::<2>(x) * {e2};"),
                };
                self.scalars.push(v);
            }
            0 | 1 if self.rng.chance(8) => {
                // A part of the input read at constant indices beside the input itself (the
                // part's element `t[0]` is `x[1]`): their adjoints add up.
                let v = self.name("v");
                let e = self.expr(2);
                let _ = writeln!(
                    out,
                    "    let {v}_t = &x[1..];\n    let {v} = {v}_t[0] * x[1] + {v}_t[1] * {e} + x[2];"
                );
                self.scalars.push(v);
            }
            0 | 1 if self.rng.chance(15) => {
                // An angle's sine and cosine taken apart at once.
                let v = self.name("v");
                let (e, g) = (self.expr(2), self.expr(2));
                let _ = writeln!(
                    out,
                    "    let ({v}_s, {v}_c) = ({e}).sin_cos();\n    let {v} = {v}_s * {g} + {v}_c;"
                );
                self.scalars.push(v);
            }
            0 | 1 => {
                let v = self.name("v");
                let e = self.expr(3);
                let _ = writeln!(out, "    let {v} = {e};");
                self.scalars.push(v);
            }
            2 => {
                let v = self.name("v");
                let (c, t, f) = (self.cond(), self.expr(2), self.expr(2));
                if self.rng.chance(30) {
                    // A `match` on an integer with a guard; one on a tuple holding a condition,
                    // with a binding in an or-pattern; an `if let` with a binding; a
                    // `let .. else` that returns early; windows and chunks; a fold over a zip.
                    let g = self.expr(1);
                    // The binding's name, unlike every other name of the program.
                    let m = self.name("k");
                    match self.rng.below(10) {
                        9 => {
                            // A walk mapped by a function's name, the ends of the input, and a
                            // search over it (an index), an element that may be missing, the
                            // largest and smallest by comparators, a median of a sorted copy,
                            // windows zipped with the elements.
                            let lit = self.rng.literal();
                            let _ = writeln!(out, "    let {v} = x.iter().copied().map(smooth).sum::<f64>() * {t}\n        + *x.last().unwrap() * x.first().copied().unwrap()\n        + x[x.iter().position(|&w| w > {lit}).unwrap_or(0)] * {f}\n        + x.get(n - 1 + n % 2).copied().unwrap_or({lit}) * {t}\n        + *x.iter().max_by(|a, b| a.partial_cmp(b).unwrap()).unwrap() * x.iter().copied().min_by(|a, b| b.partial_cmp(a).unwrap()).unwrap();\n    let mut {v}_s: Vec<f64> = x.iter().map(|w| w * {t}).collect();\n    {v}_s.sort_by(|a, b| a.partial_cmp(b).unwrap());\n    let {v} = {v} + {v}_s[n / 2] * {v}_s[n - 1] + x.windows(2).zip(x).map(|(w, &q)| (w[1] - w[0]) * q).sum::<f64>();");
                        }
                        8 => {
                            // Bindings of differentiated values whole: the scrutinee (with a
                            // guard reading it) and the elements of a tuple scrutinee.
                            let lit = self.rng.literal();
                            let _ = writeln!(out, "    let {v} = match {t} {{\n        {m} if {m} < {lit} => {m} * {g},\n        {m} => {f} - {m},\n    }} + match ({g}, {f}) {{\n        ({m}, w) if {m} > w => {m} - w,\n        ({m}, w) => w * 0.5 + {m},\n    }};");
                        }
                        7 => {
                            // Reductions rewritten at lowering: a walk collected into a `Vec`,
                            // a sum over a range, one over windows, a fold over a `map`, and a
                            // reversed enumeration (counting from the last element).
                            let _ = writeln!(out, "    let {v}_c: Vec<f64> = x.iter().map(|q| q * {t}).collect();\n    let mut {v} = (0..n).map(|i| {v}_c[i] * x[(i + 1) % n]).sum::<f64>() + x.windows(2).map(|w| w[0] * w[1]).sum::<f64>();\n    for ({m}, &q) in x.iter().rev().enumerate() {{\n        {v} += q * {f} * ({m} + 1) as f64;\n    }}\n    {v} += x.iter().map(|q| q.abs()).fold({g}, |acc, q| acc.max(q));");
                        }
                        6 => {
                            // Walks with `skip` and `take` (enumerated before them, counting
                            // from the start), and a fold over a skipped walk.
                            let _ = writeln!(out, "    let mut {v} = {g};\n    for ({m}, &w) in x.iter().enumerate().skip(1).take(n) {{\n        {v} = {v} * 0.5 + w * {t} * {m} as f64;\n    }}\n    for w in x.iter().take(n - 1).skip(n / 2) {{\n        {v} += w * {f};\n    }}\n    {v} += x.iter().skip(2).fold({f}, |acc, q| acc * 0.5 + q * q);");
                        }
                        0 => {
                            let _ = writeln!(out, "    let {v} = match n % 3 {{\n        0 => {t},\n        1 if {c} => {f},\n        _ => {g},\n    }};");
                        }
                        1 => {
                            let _ = writeln!(out, "    let {v} = match ({c}, n % 3) {{\n        (true, 0) => {t},\n        (false, {m}) | (_, {m} @ 1) => {f} * ({m} + 1) as f64,\n        _ => {g},\n    }};");
                        }
                        2 => {
                            let _ = writeln!(out, "    let {v} = if let (true, {m} @ 0..=1) = ({c}, n % 3) {{\n        {t} * ({m} + 2) as f64\n    }} else {{\n        {f}\n    }};");
                        }
                        3 => {
                            let _ = writeln!(out, "    let ({m}, true) = (n % 2, {c}) else {{\n        return {g};\n    }};\n    let {v} = {t} * ({m} + 1) as f64 + {f};");
                        }
                        4 => {
                            // Windows, then enumerated exact chunks, of the input.
                            let _ = writeln!(out, "    let mut {v} = {g};\n    for w in x.windows(2) {{\n        {v} = {v} * 0.5 + (w[1] - w[0]) * {t};\n    }}\n    for ({m}, pair) in x.chunks_exact(2).enumerate() {{\n        {v} += pair[0] * pair[1] * {f} * ({m} + 1) as f64;\n    }}");
                        }
                        _ => {
                            // An iterator reduction over a zip of the input with itself shifted.
                            let _ = writeln!(out, "    let {v} = x\n        .iter()\n        .copied()\n        .zip(x[1..].iter().copied())\n        .fold({g}, |acc, ({m}, q)| acc * 0.5 + {m} * q * {t})\n        + {f};");
                        }
                    }
                } else {
                    let _ = writeln!(out, "    let {v} = if {c} {{ {t} }} else {{ {f} }};");
                }
                self.scalars.push(v);
            }
            3 => {
                let v = self.name("m");
                let init = self.expr(1);
                let _ = writeln!(out, "    let mut {v} = {init};");
                let (c, e1) = (self.cond(), self.expr(2));
                let _ = writeln!(out, "    if {c} {{\n        {v} += {e1};\n    }} else if {} {{\n        {v} = {v} * 0.5;\n    }}", self.cond());
                self.scalars.push(v);
            }
            4 => {
                // A loop with carried accumulation and reads at the loop variable.
                let v = self.name("acc");
                let init = self.expr(1);
                let _ = writeln!(out, "    let mut {v} = {init};");
                self.index = Some("i".into());
                let e = self.expr(2);
                let c = self.cond();
                let e2 = self.expr(1);
                self.index = None;
                // One time in five, the branch returns from the function out of the loop.
                let update = if self.rng.chance(20) {
                    format!("return {v} * 0.9 + {e2};")
                } else {
                    format!("{v} = {v} * 0.9 + {e2};")
                };
                let _ = writeln!(out, "    for i in 0..n {{\n        {v} += {e};\n        if {c} {{\n            {update}\n        }}\n    }}");
                self.scalars.push(v);
            }
            5 if self.rng.chance(30) => {
                // A trajectory: steps whose inner loop writes a history buffer it never reads
                // (a checkpointed program keeps the state, not the history), read afterwards.
                let h = self.name("hist");
                let st = self.name("st");
                let init = self.expr(1);
                self.index = Some("i".into());
                let e = self.expr(1);
                self.index = None;
                let v = self.name("v");
                let _ = writeln!(out, "    let mut {h} = vec![0.0; 3 * n];\n    let mut {st} = {init};\n    for t in 0..3 {{\n        for i in 0..n {{\n            {st} = {st} * 0.7 + x[i] * {e};\n            {h}[t * n + i] = {st}.sin();\n        }}\n    }}\n    let {v} = {h}[1] * {h}[2 * n] + {h}[3 * n - 1] + {st};");
                self.scalars.push(v);
            }
            5 => {
                // A buffer written by index, then read.
                let buf = self.name("buf");
                self.index = Some("i".into());
                let e = self.expr(2);
                self.index = None;
                let v = self.name("v");
                let k = self.rng.below(4);
                // Read back as a product (the reverse reads the values) or linearly (it reads
                // only the buffer's shape).
                let op = if self.rng.below(2) == 0 {
                    "*"
                } else {
                    "+ 0.5 *"
                };
                // Sometimes filled once and read, sometimes mixed in place by two more loops,
                // sometimes stepped by a stencil that reads it at `i - 1`, `i` and `i + 1` and
                // then updates it (a window copy per step).
                let mix = match self.rng.below(5) {
                    // Double-buffered: each step writes a second buffer from the first, then
                    // swaps them (`std::mem::swap`, element by element); a `for_each` after.
                    // Or the new state replaces the old whole, `buf = buf_n;` (its elements
                    // copied in).
                    4 if self.rng.below(2) == 0 => format!("    let mut {buf}_n = vec![0.0; n];\n    for _ in 0..3 {{\n        for i in 1..n - 1 {{\n            {buf}_n[i] = {buf}[i] + 0.2 * ({buf}[i - 1] - {buf}[i]) * {buf}[i + 1];\n        }}\n        {buf}_n[0] = {buf}[0];\n        {buf}_n[n - 1] = {buf}[n - 1].sin();\n        std::mem::swap(&mut {buf}, &mut {buf}_n);\n    }}\n    {buf}.iter_mut().for_each(|w| *w = w.tanh());\n"),
                    4 => format!("    for _ in 0..3 {{\n        let mut {buf}_n = vec![0.0; n];\n        for i in 1..n - 1 {{\n            {buf}_n[i] = {buf}[i] + 0.2 * ({buf}[i - 1] - {buf}[i]) * {buf}[i + 1];\n        }}\n        {buf}_n[0] = {buf}[0];\n        {buf}_n[n - 1] = {buf}[n - 1].sin();\n        {buf} = {buf}_n;\n    }}\n    {buf}.iter_mut().for_each(|w| *w = w.tanh());\n"),
                    // Updated in place by walks that write (`iter_mut()` enumerated, zipped).
                    3 => format!("    for (i, v) in {buf}.iter_mut().enumerate() {{\n        *v = (*v * x[(i + 1) % n]).sin() + *v * 0.5;\n    }}\n    for (v, &w) in {buf}.iter_mut().zip(x) {{\n        *v += w * 0.25;\n    }}\n"),
                    0 => format!("    for i in 1..n {{\n        {buf}[i] += {buf}[i - 1] * 0.5;\n    }}\n    for i in 1..n {{\n        let old = {buf}[i];\n        {buf}[i] = (old * {buf}[i - 1]).sin() + old;\n    }}\n"),
                    // Steps whose `if` arms run loops of their own, their values read by
                    // nonlinear rules (each reverse iteration recomputes the arm).
                    2 if self.rng.below(2) == 0 => format!("    for _ in 0..2 {{\n        for i in 0..n {{\n            if i % 2 == 1 {{\n                let mut r = 0.0;\n                for k in 0..n {{\n                    r += {buf}[k] * x[k];\n                }}\n                {buf}[i] += 0.3 * r.sin();\n            }} else {{\n                let mut p = 1.0;\n                for k in 0..n {{\n                    p *= 0.9 + 0.1 * x[k] * x[k];\n                }}\n                {buf}[i] = {buf}[i] * 0.5 + p.sqrt();\n            }}\n        }}\n    }}\n"),
                    1 => format!("    let mut {buf}_v = vec![0.0; n];\n    for _ in 0..3 {{\n        for i in 1..n - 1 {{\n            {buf}_v[i] += 0.2 * ({buf}[i - 1] * {buf}[i + 1] - {buf}[i].sin());\n        }}\n        for i in 0..n {{\n            {buf}[i] += 0.1 * {buf}_v[i].tanh();\n        }}\n    }}\n"),
                    _ => String::new(),
                };
                let _ = writeln!(out, "    let mut {buf} = vec![0.0; n];\n    for i in 0..n {{\n        {buf}[i] = {e};\n    }}\n{mix}    let {v} = {buf}[{k}] {op} {buf}[{}];", (k + 1) % 4);
                self.scalars.push(v);
            }
            6 => {
                // A while loop whose trip count depends on the data.
                let w = self.name("w");
                let init = self.expr(2);
                let step = self.expr(1);
                let _ = writeln!(out, "    let mut {w} = {init}.tanh() + 3.0;\n    let mut steps = 0;\n    while {w} > 0.5 && steps < 20 {{\n        {w} = {w} * 0.6 + 0.05 * {step}.tanh();\n        steps += 1;\n    }}");
                self.scalars.push(w);
            }
            7 => {
                // Array code with broadcasting.
                let v = self.name("arr");
                let s = self.expr(1);
                let forms = [
                    format!("(m * {s} + &m.t().dot(m)).mapv(|t| t.tanh()).sum()"),
                    format!("(m + &m.sum_axis(Axis(0))).mapv(|t| (t * t + 1.0).ln()).mean().unwrap() * {s}"),
                    format!("autodiff::ops::logsumexp(&(m.dot(&m.column(0)) * {s}))"),
                    format!("(&m.row(1) * {s} - &m.column(1)).mapv(f64::sin).sum()"),
                    format!("(m.to_owned().reversed_axes() * {s} + &m.view()).mapv(|t| t.tanh()).sum()"),
                    format!("(&m.column(0).insert_axis(Axis(1)) * m).mapv(|t| (t * t + 1.0).ln()).sum() * {s}"),
                    format!("m.view().into_shape_with_order(4).unwrap().mapv(|t| t.sin()).sum() + {s}"),
                    format!("m.to_shape((1, 4)).unwrap().mapv(|t| t * t).sum() * {s}"),
                    format!("m.mean_axis(Axis(0)).unwrap().mapv(|t| t.tanh()).sum() * {s}"),
                    format!("(&m.slice(autodiff::ndarray::s![.., 1..]) * {s} + &m.slice(autodiff::ndarray::s![..;-1, 0])).mapv(|t| t.sin()).sum()"),
                    // A fused mean with a closure inlined below its top and a scalar input.
                    format!("(m * m * {s} - m.mapv(|t| t.cos())).mapv(f64::exp).mean().unwrap()"),
                    // An element-wise operation on an array written after it, before its sum:
                    // fusion must not move the operation past the write.
                    format!("{{ let mut q = m.to_owned(); let t = &q * {s}; q[[0, 1]] = {s} * 2.0; t.mapv(f64::sin).sum() + q.sum() }}"),
                    // Stores into views of a local array: a row, a block, a column from a
                    // broadcast value, one row written twice.
                    format!("{{ let mut q = Array2::<f64>::zeros((3, 2)); q.row_mut(0).assign(&(&m.row(1) * {s})); q.slice_mut(autodiff::ndarray::s![1.., ..]).assign(&m.mapv(|t| t.sin())); q.row_mut(2).assign(&m.row(0)); q.column_mut(1).assign(&m.column(0).slice(autodiff::ndarray::s![1..2])); (&q * &q).sum() }}"),
                    // A trajectory that reads its last row back before storing the next.
                    format!("{{ let mut q = Array2::<f64>::zeros((3, 2)); q.row_mut(0).assign(&m.row(0)); for i in 1..3 {{ let prev = (&q.row(i - 1) * {s} + &m.row(1)).mapv(|t| t.sin()); q.row_mut(i).assign(&prev); }} (&q * &q).sum() + q.column(1).sum() }}"),
                    // A sweep: rows stored by the loop's index and read one behind, read in
                    // place; a matrix-vector product and `tanh` of it recorded.
                    format!("{{ let mut q = Array2::<f64>::zeros((3, 2)); q.row_mut(0).assign(&m.row(0)); for i in 1..3 {{ let prev = m.dot(&q.row(i - 1)).mapv(f64::tanh) * {s} + &q.row(i - 1); q.row_mut(i).assign(&prev); }} (&q * &q).sum() }}"),
                    // Products with vectors inside a loop (vector-matrix, vector-vector,
                    // matrix-vector) and costly maps of arrays, recorded.
                    format!("{{ let mut acc = 0.0; for i in 0..2 {{ let r = m.row(i); let h = r.dot(m).mapv(f64::exp) * {s}; acc += r.dot(&h) + m.dot(&r).mapv(f64::sin).sum(); }} acc }}"),
                    // An `if` arm yielding an array computed before the `if`, which the
                    // reverse sweep reads afterwards.
                    format!("{{ let t = m.dot(&m.column(0)); let e = m.column(1).mapv(f64::exp); let z = if {s} > 0.0 {{ t }} else {{ &e * 2.0 }}; (&z * &e).sum() }}"),
                    // A trajectory kept row by row in a loop.
                    format!("{{ let mut q = Array2::<f64>::zeros((2, 2)); let mut r = m.row(0).to_owned(); for i in 0..2 {{ r = (&r * {s} + &m.row(i)).mapv(|t| t.tanh()); q.row_mut(i).assign(&r); }} (&q * m).sum() }}"),
                ];
                let f = forms[self.rng.below(forms.len())].clone();
                let _ = writeln!(out, "    let {v} = {f};");
                self.scalars.push(v);
            }
            9 => {
                // Integer state in a buffer that each iteration changes after reading it (a
                // rotating permutation): indices and branches read through it.
                let perm = self.name("perm");
                let v = self.name("rot");
                let shift = 1 + self.rng.below(3);
                let init = self.expr(1);
                self.index = Some("i".into());
                let e = self.expr(1);
                let e2 = self.expr(1);
                self.index = None;
                let _ = writeln!(out, "    let mut {perm} = vec![0usize; n];\n    for i in 0..n {{\n        {perm}[i] = (i + {shift}) % n;\n    }}\n    let mut {v} = {init};\n    for i in 0..n {{\n        {v} = {v} * 0.8 + x[{perm}[i]] * {e};\n        if {perm}[0] % 2 == 0 {{\n            {v} = {v} + {e2};\n        }}\n        let first = {perm}[0];\n        for j in 1..n {{\n            {perm}[j - 1] = {perm}[j];\n        }}\n        {perm}[n - 1] = first;\n    }}");
                self.scalars.push(v);
            }
            10 => {
                // A log-sum-exp per point over a scratch buffer declared outside the loop
                // (GMM's `main_term`): filled for every component, then read. Or, one time in
                // four, read before it is filled, so that it carries values from one iteration
                // to the next.
                let v = self.name("lse");
                let sc = self.name("scratch");
                let init = self.expr(1);
                self.index = Some("i".into());
                let e = self.expr(2);
                self.index = None;
                let rows = self.rng.chance(20);
                let (len, range) = match self.rng.below(3) {
                    // By rows and columns (`sc[q0 * 2 + r]`), below.
                    _ if rows => ("n * 2".to_string(), String::new()),
                    0 => ("3".to_string(), "0..3".to_string()),
                    1 => ("n".to_string(), "0..n".to_string()),
                    _ => ("n".to_string(), format!("0..{sc}.len()")),
                };
                let (carry, carried) = if self.rng.chance(25) {
                    (format!("        let prev = {sc}[1] * 0.25;\n"), " + prev")
                } else {
                    (String::new(), "")
                };
                // Sometimes the first element is written by itself, then the rest by a loop.
                let (fill, close) = if rows {
                    (
                        "        for q0 in 0..n {\n            for r in 0..2 {\n                let q = q0 * 2 + r;\n".to_string(),
                        "            }\n",
                    )
                } else if self.rng.chance(30) {
                    (
                        format!(
                            "        {sc}[0] = x[i] * 0.5;\n        for q in 1{} {{\n",
                            &range[1..]
                        ),
                        "",
                    )
                } else {
                    (format!("        for q in {range} {{\n"), "")
                };
                // Accumulated (the loop can run fused where it stands), or a state that
                // decays (it cannot: reversed backwards, or checkpointed).
                let update = if self.rng.chance(35) {
                    format!("{v} = {v} * 0.5 + se.ln() + mx{carried};")
                } else {
                    format!("{v} += se.ln() + mx{carried};")
                };
                let _ = writeln!(out, "    let mut {v} = {init};\n    let mut {sc} = vec![0.0; {len}];\n    for i in 0..n {{\n{carry}{fill}            {sc}[q] = x[(i + q) % n] * {e};\n{close}        }}\n        let mut mx = {sc}[0];\n        for q in 1..{sc}.len() {{\n            mx = mx.max({sc}[q]);\n        }}\n        let mut se = 0.0;\n        for q in 0..{sc}.len() {{\n            se += ({sc}[q] - mx).exp();\n        }}\n        {update}\n    }}");
                self.scalars.push(v);
            }
            11 => {
                // A part of the slice (`&x[a..b]`, `a..=b`, `a..`; `x` has 4 elements): a view
                // whose element reads add into that part of `x`'s adjoint.
                let v = self.name("part");
                let lo = self.rng.below(2);
                let range = match self.rng.below(3) {
                    0 => format!("{lo}..{}", lo + 2),
                    1 => format!("{lo}..=2"),
                    _ => format!("{lo}.."),
                };
                let e = self.expr(1);
                let _ = writeln!(out, "    let {v}_s = &x[{range}];\n    let mut {v} = {e};\n    for i in 0..{v}_s.len() {{\n        {v} += {v}_s[i] * {v}_s[1].sin();\n    }}");
                self.scalars.push(v);
            }
            _ => {
                // Nested loops.
                let v = self.name("pair");
                let _ = writeln!(out, "    let mut {v} = 0.0;");
                self.index = Some("i".into());
                let e = self.expr(1);
                self.index = None;
                let shape = self.rng.below(3);
                if shape == 0 && self.rng.chance(40) {
                    // Every ordered pair but a particle with itself, by a filtered range, and
                    // the positive elements by a filtered walk.
                    let _ = writeln!(out, "    for i in 0..n {{\n        for j in (0..n).filter(|&j| j != i) {{\n            let d = x[i] - x[j];\n            {v} += (d * d + 0.5).recip() * {e};\n        }}\n    }}\n    for &q in x.iter().filter(|&&q| q > 0.0) {{\n        {v} += q * q * 0.25;\n    }}");
                } else if shape == 0 {
                    let _ = writeln!(out, "    for i in 0..n {{\n        for j in (i + 1)..n {{\n            let d = x[i] - x[j];\n            {v} += (d * d + 0.5).recip() * {e};\n        }}\n    }}");
                } else if shape == 1 {
                    // Runs `x[j + i]`, `x[start + j]` read by inner range loops (some empty):
                    // their reverse adds into a window of `x`'s adjoint.
                    let _ = writeln!(out, "    for i in 0..n {{\n        let w = {e};\n        let mut acc = 0.0;\n        for j in (i % 3)..(n - i) {{\n            acc += (x[j + i] * w).sin();\n        }}\n        let start = i / 2;\n        for j in 0..n - start {{\n            acc += x[start + j] * w * 0.5;\n        }}\n        {v} += acc * acc;\n    }}");
                } else {
                    // The partner's index stepped by a growing stride and a clock, carried by
                    // the inner loop (a forward-order reverse steps them again itself).
                    let _ = writeln!(out, "    for i in 0..n {{\n        let mut p = i + 1;\n        let mut stride = 1;\n        let mut t = 0.5;\n        for j in (i + 1)..n {{\n            let d = x[i] - x[p % n];\n            {v} += (d * d + 0.5).recip() * {e} * t;\n            p += stride;\n            stride += j % 2;\n            t += 0.25;\n        }}\n    }}");
                }
                self.scalars.push(v);
            }
        }
    }
}

fn program(rng: &mut Rng, k: usize, out: &mut String, twins: &mut String) {
    let mut g = Gen {
        rng,
        scalars: vec!["a".into(), "b".into()],
        fresh: 0,
        index: None,
    };
    // One program in seven is a method differentiated with respect to its receiver, which
    // holds `a` (read as `self.a`) and a constant cap on `n` (read beside an integer).
    let method = g.rng.chance(15);
    let mut body = if method {
        g.scalars[0] = "self.a".into();
        String::from("    let n = x.len().min(self.cap);\n")
    } else {
        String::from("    let n = x.len();\n")
    };
    let count = 2 + g.rng.below(5);
    for _ in 0..count {
        g.stmt(&mut body);
    }
    // The value: a combination of what was computed, so that every statement matters.
    let mut terms = Vec::new();
    for s in g.scalars.clone() {
        let w = g.rng.literal();
        terms.push(format!("{w} * ({s}).tanh()"));
    }
    if g.rng.chance(25) {
        // Or accumulated by a last loop of fused sums, whose adjoint is known before they run
        // (the loop runs fused with its reverse, and the sums add their derivatives into the
        // rows' and columns' adjoints themselves; the scaled one keeps the other path). The
        // accumulator is declared `f64`, a known scalar whatever its first value's spelling.
        let (u, v) = (g.rng.literal(), g.rng.literal());
        let _ = writeln!(
            body,
            "    let mut acc: f64 = {};\n    for i in 0..2 {{\n        acc += (&m.row(i) * {u}).mapv(f64::tanh).sum() - (&m.column(i) * {v} - 0.25).mapv(f64::sin).mean().unwrap() + (&m.row(1 - i) - &m.column(i)).mapv(|t| t * t).sum() * 0.5;\n    }}\n    acc",
            terms.join(" + ")
        );
    } else {
        let _ = writeln!(body, "    {}", terms.join(" + "));
    }
    let allow = "#[allow(unused_mut, unused_variables, clippy::all)]";
    // Some programs checkpoint their loops (recompute each iteration instead of recording).
    let attr = if g.rng.chance(30) {
        "#[differentiate(checkpoint)]"
    } else {
        "#[differentiate]"
    };
    if method {
        // The program as a method of a struct holding `a`, differentiated with respect to the
        // struct too, and the harness's free functions calling it.
        let attr = if attr.contains("checkpoint") {
            "#[differentiate(wrt(self, x, m, b), checkpoint)]"
        } else {
            "#[differentiate(wrt(self, x, m, b))]"
        };
        // Half of them read the input's elements through a copy the struct holds, `self.w[..]`
        // (a `Vec` field, read by reference), the gradient of `x` then its own plus `w`'s.
        let method_body = if g.rng.chance(50) {
            reads_through_field(&body)
        } else {
            body.clone()
        };
        let method_body = method_body
            .replace("\n    ", "\n        ")
            .replacen("    ", "        ", 1);
        // Generic over a constant field's type (`mark: M`, the unit here), for the derive and
        // the method's companions.
        let _ = writeln!(out, "#[derive(Clone, Differentiable)]\npub struct Holder{k}<M> {{\n    a: f64,\n    w: Vec<f64>,\n    cap: usize,\n    #[differentiable(constant)]\n    mark: M,\n}}\n\nimpl<M: Clone> Holder{k}<M> {{\n    {attr}\n    {allow}\n    pub fn value(&self, x: &[f64], m: &Array2<f64>, b: f64) -> f64 {{\n{method_body}    }}\n}}\n");
        let holder = format!("Holder{k} {{ a, w: x.to_vec(), cap: 4, mark: () }}");
        let _ = writeln!(out, "pub fn p{k}(x: &[f64], m: &Array2<f64>, a: f64, b: f64) -> f64 {{\n    {holder}.value(x, m, b)\n}}\n");
        let _ = writeln!(out, "pub fn p{k}_value_and_grad(\n    x: &[f64],\n    m: &Array2<f64>,\n    a: f64,\n    b: f64,\n) -> (f64, (Vec<f64>, Array2<f64>, f64, f64)) {{\n    let (v, (gs, gx, gm, gb)) = {holder}.value_value_and_grad(x, m, b);\n    let gx = gx.iter().zip(&gs.w).map(|(p, q)| p + q).collect();\n    (v, (gx, gm, gs.a, gb))\n}}\n");
    } else if g.rng.chance(15) {
        // The input's elements read as points, `pts[i / 2][i % 2]` of `&[[f64; 2]]` (a copy of
        // `x` in pairs), beside `x` itself for its walks and parts: the gradient of `x` is then
        // its own plus the points'.
        // Half of them hold the pairs as rows of nested `Vec`s instead (`&[Vec<f64>]`), a
        // quarter as structs (`&[Pair]`, a field `p: [f64; 2]`, or `&[Two]`, fields `a` and
        // `b` picked from an array literal), differentiated field by field (`wrt(pts)`).
        let (ty, pairs, flat) = if g.rng.chance(50) {
            ("&[Vec<f64>]", "pair_rows", "gp.iter().flatten()")
        } else if g.rng.chance(50) {
            ("&[[f64; 2]]", "pairs", "gp.iter().flatten()")
        } else if g.rng.chance(50) {
            (
                "&[Pair]",
                "pair_structs",
                "gp.iter().flat_map(|s| s.p).collect::<Vec<f64>>().iter()",
            )
        } else {
            (
                "&[Two]",
                "two_structs",
                "gp.iter().flat_map(|s| [s.a, s.b]).collect::<Vec<f64>>().iter()",
            )
        };
        // Programs over structs start by mixing a walk over the pairs into `a` (the dual twin
        // too, over `x`).
        // And its windows and a zip with `x` into `b` (written over `x` for the twin, over
        // the structs below: `windows(4).step_by(2)` of `x` are the pairs' windows of 2).
        if ty.starts_with("&[P") || ty.starts_with("&[T") {
            body = format!("    let a = a + 0.1 * x.chunks_exact(2).enumerate().map(|(i, pair)| pair[0] * pair[1].sin() * (i + 1) as f64).sum::<f64>();\n    let b = b + 0.1 * x.windows(4).step_by(2).map(|w| w[0] * w[3].sin()).sum::<f64>() + 0.1 * x.chunks_exact(2).zip(x.iter()).map(|(c, &v)| c[1] * v).sum::<f64>();\n    let mut pw = 0.0;\n    for (_, pair) in x.chunks_exact(2).enumerate() {{\n        pw += pair[0] * pair[1].sin();\n    }}\n    let b = b + 0.1 * (pw * pw).tanh();\n    let a = a + 0.05 * x.chunks_exact(2).zip(x.chunks_exact(2)).map(|(c, d)| c[0] * d[1].cos()).sum::<f64>();\n{body}");
        }
        let points_body = reads_as_points(&body);
        // The walk over the input's pairs (`x.chunks_exact(2).enumerate()`) walks the structs
        // (`pts.iter().enumerate()`, by name or by a struct pattern).
        let points_body = match ty {
            "&[Pair]" => points_body
                .replace("][(", "].p[(")
                .replace("pair) in x.chunks_exact(2)", "pair) in pts.iter()")
                .replace(
                    "x.chunks_exact(2).enumerate().map(|(i, pair)|",
                    "pts.iter().enumerate().map(|(i, pair)|",
                )
                .replace("pair[0]", "pair.p[0]")
                .replace("pair[1]", "pair.p[1]")
                .replace(
                    "x.windows(4).step_by(2).map(|w| w[0] * w[3].sin())",
                    "pts.windows(2).map(|w| w[0].p[0] * w[1].p[1].sin())",
                )
                .replace(
                    "x.chunks_exact(2).zip(x.iter()).map(|(c, &v)| c[1] * v)",
                    "pts.iter().zip(x.iter()).map(|(c, &v)| c.p[1] * v)",
                )
                .replace(
                    "x.chunks_exact(2).zip(x.chunks_exact(2)).map(|(c, d)| c[0] * d[1].cos())",
                    "pts.iter().zip(pts.iter()).map(|(c, d)| c.p[0] * d.p[1].cos())",
                ),
            "&[Two]" => two_fields(&points_body)
                .replace(
                    "pair) in x.chunks_exact(2)",
                    "Two { a: pair_a, b: pair_b, .. }) in pts.iter()",
                )
                .replace(
                    "x.chunks_exact(2).enumerate().map(|(i, pair)|",
                    "pts.iter().enumerate().map(|(i, Two { a: pair_a, b: pair_b, .. })|",
                )
                .replace("pair[0]", "*pair_a")
                .replace("pair[1]", "pair_b")
                .replace(
                    "x.windows(4).step_by(2).map(|w| w[0] * w[3].sin())",
                    "pts.windows(2).map(|w| w[0].a * w[1].b.sin())",
                )
                .replace(
                    "x.chunks_exact(2).zip(x.iter()).map(|(c, &v)| c[1] * v)",
                    "pts.iter().zip(x.iter()).map(|(c, &v)| c.b * v)",
                )
                .replace(
                    "x.chunks_exact(2).zip(x.chunks_exact(2)).map(|(c, d)| c[0] * d[1].cos())",
                    "pts.iter().zip(pts.iter()).map(|(c, d)| c.a * d.b.cos())",
                ),
            _ => points_body,
        };
        let attr = match ty {
            "&[Pair]" | "&[Two]" if attr.contains("checkpoint") => {
                "#[differentiate(wrt(x, pts, m, a, b), checkpoint)]"
            }
            "&[Pair]" | "&[Two]" => "#[differentiate(wrt(x, pts, m, a, b))]",
            _ => attr,
        };
        // Half of the walks over `&[Pair]` pass the element whole to a function, and a
        // field of the elements by reference.
        let points_body = match ty {
            "&[Pair]" if g.rng.chance(50) => points_body
                .replace("pair.p[0] * pair.p[1].sin()", "pair_term(pair)")
                .replace(
                    "w[0].p[0] * w[1].p[1].sin()",
                    "window_term(&w[0].p, &w[1].p)",
                ),
            _ => points_body,
        };
        // Half of the structs held in a field of a struct, `sw.pts` (`s` is 1, read in `a`),
        // beside a copy of them, `sw.qs`, zipped with them (the gradient of `x` is then both
        // fields' too).
        let (param, points_body, arg, gp) = match ty {
            "&[Pair]" | "&[Two]" if g.rng.chance(50) => {
                let element = &ty[2..ty.len() - 1];
                (
                    format!("sw: &Swarm<{element}>"),
                    format!(
                        "    let a = a * sw.s;\n{}",
                        replace_word(&points_body, "pts", "sw.pts")
                            .replace("zip(sw.pts.iter())", "zip(sw.qs.iter())")
                    ),
                    format!("&Swarm {{ pts: {pairs}(x), qs: {pairs}(x), s: 1.0 }}"),
                    "gsw",
                )
            }
            _ => (
                format!("pts: {ty}"),
                points_body,
                format!("&{pairs}(x)"),
                "gp",
            ),
        };
        let attr = match gp {
            "gsw" => attr.replace("pts", "sw"),
            _ => attr.to_string(),
        };
        let _ = writeln!(out, "{attr}\n{allow}\npub fn p{k}_points(x: &[f64], {param}, m: &Array2<f64>, a: f64, b: f64) -> f64 {{\n{points_body}}}\n");
        let _ = writeln!(out, "pub fn p{k}(x: &[f64], m: &Array2<f64>, a: f64, b: f64) -> f64 {{\n    p{k}_points(x, {arg}, m, a, b)\n}}\n");
        let unpack = match gp {
            "gsw" => format!("\n    let gp = merged_{pairs}(gsw.pts, gsw.qs);"),
            _ => String::new(),
        };
        let _ = writeln!(out, "pub fn p{k}_value_and_grad(\n    x: &[f64],\n    m: &Array2<f64>,\n    a: f64,\n    b: f64,\n) -> (f64, (Vec<f64>, Array2<f64>, f64, f64)) {{\n    let (v, (gx, {gp}, gm, ga, gb)) = p{k}_points_value_and_grad(x, {arg}, m, a, b);{unpack}\n    let gx = gx.iter().zip({flat}).map(|(p, q)| p + q).collect();\n    (v, (gx, gm, ga, gb))\n}}\n");
    } else {
        let _ = writeln!(out, "{attr}\n{allow}\npub fn p{k}(x: &[f64], m: &Array2<f64>, a: f64, b: f64) -> f64 {{\n{body}}}\n");
    }
    let twin_body = body
        .replace("self.a", "a")
        .replace("x.len().min(self.cap)", "x.len().min(4)");
    let _ = writeln!(
        twins,
        "    {allow}\n    pub fn p{k}(x: &[D], m: &Array2<D>, a: D, b: D) -> D {{\n{}    }}\n",
        dual_twin(&twin_body)
            .replace("\n    ", "\n        ")
            .replacen("    ", "        ", 1)
    );
}

/// `text` with each whole identifier `word` (not a member `.word`, not part of a longer
/// name) replaced by `by`.
fn replace_word(text: &str, word: &str, by: &str) -> String {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().last().or(out.chars().last());
        let after = rest[at + word.len()..].chars().next();
        out.push_str(&rest[..at]);
        match before.is_some_and(|c| ident(c) || c == '.') || after.is_some_and(ident) {
            true => out.push_str(word),
            false => out.push_str(by),
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// `body` with each read of the input, `x[..]`, `x.len()`, `x.iter()`, `x.windows(..)`,
/// `x.chunks_exact(..)`, read from the struct's copy of it, `self.w`: element reads, parts,
/// walks and lengths of a differentiated field.
fn reads_through_field(body: &str) -> String {
    let mut out = String::new();
    let mut prev = ' ';
    for (i, c) in body.char_indices() {
        let rest = &body[i + c.len_utf8()..];
        let read = ["[", ".len()", ".iter()", ".windows(", ".chunks_exact("]
            .iter()
            .any(|r| rest.starts_with(r));
        if c == 'x' && read && !(prev.is_alphanumeric() || prev == '_') {
            out.push_str("self.w");
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// `body` with each element read of the input, `x[e]` (not a part `x[a..b]`), read from its
/// copy in pairs, `pts[(e) / 2][(e) % 2]`.
fn reads_as_points(body: &str) -> String {
    let chars: Vec<char> = body.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i] == 'x'
            && chars.get(i + 1) == Some(&'[')
            && (i == 0
                || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.'));
        if starts {
            // The index: up to the matching `]`.
            let mut depth = 0;
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let index: String = chars[i + 2..j].iter().collect();
            if !index.contains("..") && j < chars.len() {
                let _ = write!(out, "pts[({index}) / 2][({index}) % 2]");
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// `body` (read as points, `pts[(e) / 2][(e) % 2]`) with each element read from a struct of
/// two fields, `[pts[(e) / 2].a, pts[(e) / 2].b][(e) % 2]` (an array literal: conditions may
/// hold it, unlike an `if`).
fn two_fields(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("pts[(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 4..];
        // `(e) / 2][(e) % 2]`: the index `e` is the text up to `) / 2][(`.
        let Some(mid) = after.find(") / 2][(") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let index = &after[1..mid];
        let tail = format!(") / 2][({index}) % 2]");
        if !after[mid..].starts_with(&tail) {
            out.push_str(&rest[start..start + 4]);
            rest = after;
            continue;
        }
        let _ = write!(
            out,
            "[pts[({index}) / 2].a, pts[({index}) / 2].b][({index}) % 2]"
        );
        rest = &after[mid + tail.len()..];
    }
    out.push_str(rest);
    out
}

/// The same body over forward-mode dual numbers (`num_dual::Dual64`, module `twin` of the
/// header): float literals become `c(..)` values, `powf` with a differentiated exponent is
/// num-dual's `powd`, and the library's own functions are the twin module's copies.
fn dual_twin(body: &str) -> String {
    let chars: Vec<char> = body.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_literal = chars[i].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'));
        if starts_literal {
            let mut j = i;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            if j + 1 < chars.len() && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
                j += 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                let literal: String = chars[i..j].iter().collect();
                if chars[j..].starts_with(&['f', '6', '4']) {
                    j += 3;
                }
                let _ = write!(out, "c({literal})");
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    let out = out
        .replace(".log(c(3.0))", ".log(3.0)")
        .replace(".powf(", ".powd(")
        .replace("f64::sin", "sin")
        .replace("f64::exp", "exp")
        .replace("f64::tanh", "tanh")
        .replace("Array2::<f64>", "Array2::<D>")
        .replace("let mut acc: f64", "let mut acc: D")
        .replace(": Vec<f64> =", ": Vec<D> =")
        .replace(".sum::<f64>()", ".sum::<D>()")
        .replace("|t: f64, u: f64|", "|t: D, u: D|")
        .replace("autodiff::ops::", "ops::");
    // `buf[i] += e` on a non-primitive element borrows `buf` twice: spell it out.
    let mut lines = String::new();
    for line in out.lines() {
        match line.split_once(" += ") {
            Some((target, value)) if target.ends_with(']') => {
                let indent = &target[..target.len() - target.trim_start().len()];
                let target = target.trim_start();
                let value = value.trim_end_matches(';');
                let _ = writeln!(lines, "{indent}{target} = {target} + ({value});");
            }
            _ => {
                let _ = writeln!(lines, "{line}");
            }
        }
    }
    lines
}

const HEADER: &str = r#"// Generated by `cargo run -p autodiff-fuzz -- --seed SEED --count COUNT`: random
// differentiable functions, each gradient checked against forward-mode dual numbers
// (`num-dual`, on a twin of the program over `Dual64`) and central finite differences.
#![allow(clippy::all, unused_parens)]
use autodiff::ndarray::{Array1, Array2, Axis};
use autodiff::{differentiate, Differentiable, StopGradient};

#[differentiate]
fn smooth(t: f64) -> f64 {
    t.tanh() * t.cos() + 0.1 * t
}

/// A vector-valued function (a `Vec` built by index), called from the programs.
#[differentiate]
fn products(x: &[f64], s: f64) -> Vec<f64> {
    let mut r = vec![0.0; x.len() - 1];
    for i in 0..x.len() - 1 {
        r[i] = (x[i] * x[i + 1] * s).sin();
    }
    r
}

/// Fixed-size arrays: a norm of a 3-vector, and a map returning one.
#[differentiate]
fn norm3(v: &[f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + 0.25).sqrt()
}

#[differentiate]
fn twist(p: [f64; 3], t: f64) -> [f64; 3] {
    let (c, s) = (t.cos(), t.sin());
    [c * p[0] - s * p[1], s * p[0] + c * p[1], p[2] * t]
}

/// Rows of nested `Vec`s.
#[differentiate]
fn row_sum(g: &[Vec<f64>]) -> f64 {
    let mut s = 0.0;
    for row in g {
        for v in row {
            s += v * v.tanh();
        }
    }
    s
}

/// Several outputs: a tuple of floats.
#[differentiate]
fn polar2(x: f64, y: f64) -> (f64, f64) {
    ((x * x + y * y + 0.25).sqrt(), y.atan2(x * x + 0.5))
}

/// Points: a sum over them, and a map returning them (built in a buffer of points).
#[differentiate]
fn pair_sum(p: &[[f64; 2]]) -> f64 {
    let mut s = 0.0;
    for (i, &[a, b]) in p.iter().enumerate() {
        s += a * b * (i + 1) as f64 + a.sin();
    }
    s
}

#[differentiate]
fn spread(p: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut q = p.to_vec();
    for i in 1..q.len() {
        q[i][1] += 0.5 * (p[i - 1][0] * p[i][1]).tanh();
    }
    q
}

/// A generic function: its const parameter is given by turbofish.
#[differentiate]
fn leading<const K: usize>(x: &[f64]) -> f64 {
    let mut s = 0.0;
    for i in 0..K {
        s += x[i] * x[i] * 0.5;
    }
    s
}

mod helpers {
    /// A function with a hand-written pullback (`sqrt(t^2 + eps)`).
    #[autodiff::differentiate(pullback = soft_pullback)]
    pub fn soft(t: f64, eps: f64) -> f64 {
        (t * t + eps).sqrt()
    }
    pub fn soft_pullback(t: f64, eps: f64, d_out: f64) -> (f64, f64) {
        let y = soft(t, eps);
        (d_out * t / y, d_out * 0.5 / y)
    }
}

/// The input in pairs, for the programs that read it as points.
fn pairs(x: &[f64]) -> Vec<[f64; 2]> {
    x.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
}

/// A pair of the input as a struct with an array field (and a constant).
#[derive(Clone, Differentiable)]
pub struct Pair {
    p: [f64; 2],
    id: usize,
}

/// A pair's term of the walk that starts the programs over structs, an element passed whole
/// to a differentiated function.
#[differentiate(wrt(p))]
pub fn pair_term(p: &Pair) -> f64 {
    p.p[0] * p.p[1].sin()
}

/// The term of a window of two pairs, their array fields passed whole by reference.
#[differentiate]
pub fn window_term(a: &[f64; 2], b: &[f64; 2]) -> f64 {
    a[0] * b[1].sin()
}

/// The input in pairs as structs with an array field.
fn pair_structs(x: &[f64]) -> Vec<Pair> {
    x.chunks_exact(2).enumerate().map(|(id, c)| Pair { p: [c[0], c[1]], id }).collect()
}

/// A pair of the input as a struct of two float fields (and a constant).
#[derive(Clone, Differentiable)]
pub struct Two {
    a: f64,
    b: f64,
    tag: u8,
}

/// The input in pairs as structs of two fields.
fn two_structs(x: &[f64]) -> Vec<Two> {
    x.chunks_exact(2).map(|c| Two { a: c[0], b: c[1], tag: 7 }).collect()
}

/// Pairs held in a field of a struct (`sw.pts`, a slice of structs read through a field),
/// beside a float field.
#[derive(Clone, Differentiable)]
pub struct Swarm<T> {
    pts: Vec<T>,
    qs: Vec<T>,
    s: f64,
}

/// The gradients of two fields of pairs, added.
fn merged_pair_structs(a: Vec<Pair>, b: Vec<Pair>) -> Vec<Pair> {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| Pair { p: [a.p[0] + b.p[0], a.p[1] + b.p[1]], id: a.id })
        .collect()
}

/// The gradients of two fields of structs of two floats, added.
fn merged_two_structs(a: Vec<Two>, b: Vec<Two>) -> Vec<Two> {
    a.into_iter()
        .zip(b)
        .map(|(a, b)| Two { a: a.a + b.a, b: a.b + b.b, tag: a.tag })
        .collect()
}

/// The input in pairs as rows of nested `Vec`s.
fn pair_rows(x: &[f64]) -> Vec<Vec<f64>> {
    x.chunks_exact(2).map(|c| c.to_vec()).collect()
}

type Primal = fn(&[f64], &Array2<f64>, f64, f64) -> f64;
type ValueAndGrad = fn(&[f64], &Array2<f64>, f64, f64) -> (f64, (Vec<f64>, Array2<f64>, f64, f64));
type Twin = fn(&[twin::D], &Array2<twin::D>, twin::D, twin::D) -> twin::D;

/// xorshift64*, for the evaluation points.
struct Points(u64);
impl Points {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        2.0 * u - 1.0
    }
}

/// All inputs flattened: x (4), m (2x2), a, b.
fn unpack(v: &[f64]) -> (Vec<f64>, Array2<f64>, f64, f64) {
    (v[..4].to_vec(), Array2::from_shape_vec((2, 2), v[4..8].to_vec()).unwrap(), v[8], v[9])
}

fn central(f: Primal, v: &[f64], i: usize, h: f64) -> f64 {
    let mut p = v.to_vec();
    let step = h * v[i].abs().max(1.0);
    p[i] = v[i] + step;
    let (x, m, a, b) = unpack(&p);
    let up = f(&x, &m, a, b);
    p[i] = v[i] - step;
    let (x, m, a, b) = unpack(&p);
    let down = f(&x, &m, a, b);
    (up - down) / (2.0 * step)
}

/// Forward mode over the program's dual twin: its value and its derivative along input `i`.
fn forward(twin: Twin, v: &[f64], i: usize) -> (f64, f64) {
    let d: Vec<twin::D> = v.iter().enumerate().map(|(j, &t)| twin::D::new(t, if j == i { 1.0 } else { 0.0 })).collect();
    let y = twin(&d[..4], &Array2::from_shape_vec((2, 2), d[4..8].to_vec()).unwrap(), d[8], d[9]);
    (y.re, y.eps)
}

/// Checks one program at up to 8 random points: against forward-mode dual numbers at every
/// point, and against central finite differences where they are well-conditioned (a point
/// where two step sizes disagree is near a kink, where only the dual numbers can judge).
fn check(name: &str, f: Primal, vg: ValueAndGrad, twin: Twin, seed: u64) -> Result<usize, String> {
    let mut points = Points(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut checked = 0;
    for _ in 0..8 {
        let v: Vec<f64> = (0..10).map(|_| points.next()).collect();
        let (x, m, a, b) = unpack(&v);
        let value = f(&x, &m, a, b);
        let (value2, (gx, gm, ga, gb)) = vg(&x, &m, a, b);
        // Bit for bit, but for the order of a sum: ndarray sums an array in its memory order,
        // and an owned temporary the primal transposes in place (`m.to_owned().reversed_axes()
        // * s + &m`) keeps a column-major layout that the generated code's fresh temporaries
        // need not share.
        let same = value.to_bits() == value2.to_bits()
            || (value - value2).abs() <= 1e-13 * value.abs().max(1.0)
            || (value.is_nan() && value2.is_nan());
        if !same {
            return Err(format!("{name}: value_and_grad's value {value2} differs from the function's {value} at {v:?}"));
        }
        if !value.is_finite() {
            continue;
        }
        let grad: Vec<f64> = gx.iter().copied().chain(gm.iter().copied()).chain([ga, gb]).collect();
        for (i, g) in grad.iter().enumerate() {
            let (re, d) = forward(twin, &v, i);
            // The twin is the same program over dual numbers, but num-dual's functions round
            // differently (`powi`, `softplus`), which a badly conditioned program amplifies
            // (`sin` of `(r^6 + 1)^0.76`, found by `scripts/differential.sh 10000 130000`):
            // the values agree to the same tolerance as the derivatives.
            if !((re - value).abs() <= DUAL_TOLERANCE * value.abs().max(1.0)) {
                return Err(format!("{name}: the dual twin's value {re} differs from the function's {value} at {v:?}"));
            }
            // Dual numbers divide 0 by 0 exactly at some kinks (`hypot` at the origin, where
            // the conventions table gives 0, found by `scripts/differential.sh 2000 1450000`):
            // there they judge nothing, and the finite differences below judge alone.
            if d.is_nan() && g.is_finite() {
                continue;
            }
            // Both NaN where the value is finite: an overflow inside the program (`exp` of a
            // huge value, then a saturated `tanh`: 0 times infinity in the chain rule) that
            // forward and reverse mode meet alike; they agree (found by
            // `scripts/differential.sh 2000 1836000`).
            if d.is_nan() && g.is_nan() {
                continue;
            }
            let scale = d.abs().max(value.abs()).max(1.0);
            if !((g - d).abs() <= DUAL_TOLERANCE * scale) {
                return Err(format!("{name}: d/dinput{i} = {g} but dual numbers give {d} at {v:?}"));
            }
        }
        checked += 1;
        let mut smooth = true;
        let mut worst: Option<String> = None;
        for i in 0..10 {
            let fd = central(f, &v, i, 1e-6);
            let fd2 = central(f, &v, i, 1e-5);
            let scale = fd.abs().max(value.abs()).max(1.0);
            // The two steps agree to the tolerance the gradient is held to, or the quotients
            // judge nothing: a jump of a piecewise-constant term between them (`ceil` of a
            // value 8e-7 from an integer, its effect 2.5e-11 after a saturated `tanh`) moved
            // both by 1e-5 and 1e-6 relative yet let them agree to 1e-5 (found by
            // `scripts/differential.sh 10000 1770000`).
            if !fd.is_finite() || (fd - fd2).abs() > 2e-6 * scale {
                smooth = false;
                break;
            }
            // A central difference is exact up to the derivative's curvature across the step
            // (`f'(v + h) + f'(v - h) - 2 f'(v)`, the dual twin's): where that is large, it
            // judges nothing. `sin` of a value that moves ten thousand times faster than the
            // input oscillates inside the step, yet damped (`atan`, a saturated `tanh`) the
            // quotients of both steps can agree (found by `scripts/differential.sh 2000 960000`).
            let step = 1e-5 * v[i].abs().max(1.0);
            let mut p = v.clone();
            p[i] = v[i] + step;
            let (_, d_up) = forward(twin, &p, i);
            p[i] = v[i] - step;
            let (_, d_down) = forward(twin, &p, i);
            let (_, d_here) = forward(twin, &v, i);
            if !((d_up + d_down - 2.0 * d_here).abs() <= 1e-5 * scale) {
                smooth = false;
                break;
            }
            if !((grad[i] - fd).abs() <= 2e-6 * scale) {
                worst = Some(format!("{name}: d/dinput{i} = {} but finite differences give {fd} at {v:?}", grad[i]));
            }
        }
        if !smooth {
            continue;
        }
        if let Some(w) = worst {
            return Err(w);
        }
    }
    Ok(checked)
}

/// Reverse and forward mode compute the same derivative in a different order: they agree to
/// rounding, amplified by the program's conditioning.
const DUAL_TOLERANCE: f64 = 1e-9;

fn run(programs: &[(&str, Primal, ValueAndGrad, Twin)]) {
    let mut failures = Vec::new();
    let mut unchecked = 0;
    for (k, (name, f, vg, twin)) in programs.iter().enumerate() {
        match check(name, *f, *vg, *twin, k as u64 + 1) {
            Ok(0) => unchecked += 1,
            Ok(_) => {}
            Err(e) => failures.push(e),
        }
    }
    println!("{} passed, {} failed", programs.len() - failures.len(), failures.len());
    assert!(unchecked * 10 <= programs.len(), "{unchecked} programs had no point with a finite value to check");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
"#;

/// The twin module's prelude: `Dual64` and what `f64` has that it lacks (ties and kinks follow
/// the branch taken, as forward mode does), and dual copies of the functions the programs call.
const TWIN_HEADER: &str = r#"    #![allow(dead_code, unused_parens)]
    pub use num_dual::{Dual64 as D, DualNum};
    use super::{Array1, Array2, Axis};

    /// A constant.
    pub fn c(v: f64) -> D {
        D::from(v)
    }
    pub fn sin(t: D) -> D {
        t.sin()
    }
    pub fn exp(t: D) -> D {
        t.exp()
    }
    pub fn tanh(t: D) -> D {
        Ext::tanh(t)
    }
    /// The piecewise-constant functions and `stop_gradient`: the value's, with a zero
    /// derivative.
    pub trait Steps: Sized {
        fn floor(self) -> Self;
        fn ceil(self) -> Self;
        fn round(self) -> Self;
        fn trunc(self) -> Self;
        fn signum(self) -> Self;
        fn stop_gradient(self) -> Self;
    }
    impl Steps for D {
        fn floor(self) -> D {
            c(self.re.floor())
        }
        fn ceil(self) -> D {
            c(self.re.ceil())
        }
        fn round(self) -> D {
            c(self.re.round())
        }
        fn trunc(self) -> D {
            c(self.re.trunc())
        }
        fn signum(self) -> D {
            c(self.re.signum())
        }
        fn stop_gradient(self) -> D {
            c(self.re)
        }
    }
    /// The periodic and sign-copying methods: slope one between their jumps.
    pub trait Periodic: Sized {
        fn fract(self) -> Self;
        fn rem_euclid(self, b: Self) -> Self;
        fn copysign(self, b: Self) -> Self;
    }
    impl Periodic for D {
        fn fract(self) -> D {
            self - c(self.re.trunc())
        }
        fn rem_euclid(self, b: D) -> D {
            self - b * c(self.re.div_euclid(b.re))
        }
        fn copysign(self, b: D) -> D {
            if self.re.is_sign_negative() == b.re.is_sign_negative() { self } else { -self }
        }
    }
    pub trait Ext: Sized {
        fn max(self, o: Self) -> Self;
        fn min(self, o: Self) -> Self;
        fn clamp(self, lo: Self, hi: Self) -> Self;
        fn hypot(self, o: Self) -> Self;
        fn abs(self) -> Self;
        fn tanh(self) -> Self;
    }
    impl Ext for D {
        fn max(self, o: D) -> D {
            if self.re >= o.re { self } else { o }
        }
        fn min(self, o: D) -> D {
            if self.re <= o.re { self } else { o }
        }
        fn clamp(self, lo: D, hi: D) -> D {
            if self.re < lo.re { lo } else if self.re > hi.re { hi } else { self }
        }
        fn hypot(self, o: D) -> D {
            (self * self + o * o).sqrt()
        }
        fn abs(self) -> D {
            if self.re < 0.0 { -self } else { self }
        }
        /// num-dual's overflows to NaN past |x| = 710 (sinh / cosh): 1 / cosh^2 written as
        /// 4 e^(-2|x|) / (1 + e^(-2|x|))^2 is exact everywhere.
        fn tanh(self) -> D {
            let e = (-2.0 * self.re.abs()).exp();
            D::new(self.re.tanh(), self.eps * 4.0 * e / ((1.0 + e) * (1.0 + e)))
        }
    }
    pub fn smooth(t: D) -> D {
        t.tanh() * t.cos() + c(0.1) * t
    }
    pub fn products(x: &[D], s: D) -> Vec<D> {
        (0..x.len() - 1).map(|i| (x[i] * x[i + 1] * s).sin()).collect()
    }
    pub fn norm3(v: &[D; 3]) -> D {
        (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + c(0.25)).sqrt()
    }
    pub fn twist(p: [D; 3], t: D) -> [D; 3] {
        let (c, s) = (t.cos(), t.sin());
        [c * p[0] - s * p[1], s * p[0] + c * p[1], p[2] * t]
    }
    pub fn row_sum(g: &[Vec<D>]) -> D {
        g.iter().flatten().fold(c(0.0), |s, &v| s + v * v.tanh())
    }
    pub fn polar2(x: D, y: D) -> (D, D) {
        ((x * x + y * y + c(0.25)).sqrt(), y.atan2(x * x + c(0.5)))
    }
    pub fn pair_sum(p: &[[D; 2]]) -> D {
        (0..p.len()).fold(c(0.0), |s, i| {
            s + p[i][0] * p[i][1] * c((i + 1) as f64) + p[i][0].sin()
        })
    }
    pub fn spread(p: &[[D; 2]]) -> Vec<[D; 2]> {
        let mut q = p.to_vec();
        for i in 1..q.len() {
            q[i][1] = q[i][1] + c(0.5) * (p[i - 1][0] * p[i][1]).tanh();
        }
        q
    }
    pub fn leading<const K: usize>(x: &[D]) -> D {
        (0..K).fold(c(0.0), |s, i| s + x[i] * x[i] * c(0.5))
    }
    pub mod helpers {
        use super::*;
        pub fn soft(t: D, eps: D) -> D {
            (t * t + eps).sqrt()
        }
    }
    pub mod ops {
        use super::*;
        pub fn softplus(t: D) -> D {
            // max(t, 0) + ln(1 + exp(-|t|))
            t.max(c(0.0)) + (-t.abs()).exp().ln_1p()
        }
        pub fn sigmoid(t: D) -> D {
            c(1.0) / (c(1.0) + (-t).exp())
        }
        pub fn logsumexp(v: &Array1<D>) -> D {
            let m = v.iter().fold(f64::NEG_INFINITY, |m, t| m.max(t.re));
            c(m) + v.iter().fold(c(0.0), |s, &t| s + (t - c(m)).exp()).ln()
        }
    }
"#;

fn main() {
    let mut seed = 1u64;
    let mut count = 300usize;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1)) {
            ("--seed", Some(v)) => seed = v.parse().unwrap_or(seed),
            ("--count", Some(v)) => count = v.parse().unwrap_or(count),
            _ => {
                eprintln!("usage: gen-programs [--seed N] [--count N]");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = HEADER
        .replace("SEED", &seed.to_string())
        .replace("COUNT", &count.to_string());
    let mut twins = String::new();
    for k in 0..count {
        program(&mut rng, k, &mut out, &mut twins);
    }
    let _ = writeln!(out, "/// Each program over dual numbers, for the forward-mode check.\nmod twin {{\n{TWIN_HEADER}\n{twins}}}\n");
    let _ = writeln!(
        out,
        "#[test]\nfn generated_gradients_match_finite_differences_and_dual_numbers() {{\n    run(&["
    );
    for k in 0..count {
        let _ = writeln!(
            out,
            "        (\"p{k}\", p{k}, p{k}_value_and_grad, twin::p{k}),"
        );
    }
    let _ = writeln!(out, "    ]);\n}}");
    print!("{out}");
}
