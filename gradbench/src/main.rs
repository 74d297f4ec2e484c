//! `gradbench-autodiff`: GradBench's tool protocol on stdin and stdout.
#![forbid(unsafe_code)]

fn main() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    if let Err(e) = gradbench_autodiff::protocol::serve(stdin.lock(), stdout.lock()) {
        eprintln!("gradbench-autodiff: {e}");
        std::process::exit(1);
    }
}
