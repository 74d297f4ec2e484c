//! The seed's matrix example from PyTorch's autograd tutorial:
//!
//! ```python
//! x = torch.ones(2, 4, requires_grad=True)
//! y = torch.ones(2, 1, requires_grad=True)
//! W = torch.ones(4, 1, requires_grad=True)
//! J = torch.sum(y - torch.matmul(x, W))
//! J.backward()
//! ```
use autodiff::differentiate;
use autodiff::ndarray::Array2;

#[differentiate]
fn j(x: &Array2<f64>, y: &Array2<f64>, w: &Array2<f64>) -> f64 {
    (y - &x.dot(w)).sum()
}

fn main() {
    let x = Array2::ones((2, 4));
    let y = Array2::ones((2, 1));
    let w = Array2::ones((4, 1));
    let (value, (dx, dy, dw)) = j_value_and_grad(&x, &y, &w);
    println!(
        "J = sum(y - x @ W) = {value}   (j itself: {})",
        j(&x, &y, &w)
    );
    println!("x.grad = {}", torch_style(&dx));
    println!("y.grad = {}", torch_style(&dy));
    println!("W.grad = {}", torch_style(&dw));
    println!("(PyTorch prints the same tensors for the same code: x.grad all -1, y.grad all 1, W.grad all -2.)");
}

/// A matrix printed the way PyTorch prints a tensor.
fn torch_style(a: &Array2<f64>) -> String {
    let rows: Vec<String> = a
        .rows()
        .into_iter()
        .map(|r| {
            format!(
                "[{}]",
                r.iter()
                    .map(|v| format!("{v:.0}."))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    format!("tensor([{}])", rows.join(",\n                 "))
}
