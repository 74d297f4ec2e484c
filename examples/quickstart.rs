//! The seed example from PyTorch's autograd tutorial:
//!
//! ```python
//! x = torch.tensor([2.0], requires_grad=True)
//! y = (x + 2) ** 2 + 3
//! y.backward()
//! print(x.grad)   # tensor([8.])
//! ```
use autodiff::differentiate;

#[differentiate]
fn f(x: f64) -> f64 {
    (x + 2.0).powi(2) + 3.0
}

fn main() {
    let x = 2.0;
    let (y, dx) = f_value_and_grad(x);
    println!("y = (x + 2)^2 + 3 at x = {x}");
    println!("f(x)      = {y}   (f itself: {})", f(x));
    println!("df/dx     = {dx}");
    println!("x.grad    = tensor([{:.0}.])   (autodiff)", f_grad(x));
    println!("x.grad    = tensor([8.])   (PyTorch, for the same code)");
}
