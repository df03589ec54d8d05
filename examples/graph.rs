//! The computational graph of a small network's loss, exported with `Tensor::to_dot`:
//! variables are nodes (with their shapes; parameters filled blue, data grey), each op is
//! the edges from its inputs to its output.
//!
//! The network: `Linear(4, 3)`, tanh, `Linear(3, 2)`, cross-entropy over a batch of 5.
//! Writes `target/nabla-examples/graph/loss.dot` and, where Graphviz's `dot` program is on
//! the PATH, renders it to `loss.svg`. Prints the op count and the number of parameters
//! found in the graph (target: all 4).

mod common;

use nabla::nn::functional::cross_entropy;
use nabla::prelude::*;

fn main() -> nabla::Result<()> {
    let mut rng = nabla::rng(0);
    let model = nn::Sequential::new().push(nn::Linear::new(4, 3, &mut rng)).push(nn::Tanh).push(nn::Linear::new(3, 2, &mut rng));
    let x = Tensor::randn(&[5, 4], &mut rng);
    let y = ndarray::Array1::from(vec![0usize, 1, 1, 0, 1]).into_dyn();
    let loss = cross_entropy(&model.forward(&x)?, &y)?;

    let params: Vec<(String, Tensor)> = model.named_parameters().into_iter().map(|(n, p)| (n, p.tensor())).collect();
    let mut names: Vec<(&Tensor, &str)> = params.iter().map(|(n, t)| (t, n.as_str())).collect();
    names.push((&x, "x"));
    names.push((&loss, "loss"));
    let dot = loss.to_dot_named(&names);

    let dir = common::out_dir("graph");
    let path = dir.join("loss.dot");
    std::fs::write(&path, &dot).expect("write the DOT file");
    let nodes = dot.lines().filter(|l| l.starts_with("  n") && !l.contains("->")).count();
    let edges: Vec<&str> = dot.lines().filter(|l| l.contains("->")).collect();
    let ops: std::collections::BTreeSet<&str> = edges.iter().filter_map(|l| l.split("label=\"").nth(1)?.split('"').next()).collect();
    println!("{nodes} variables, {} edges; ops: {}", edges.len(), ops.into_iter().collect::<Vec<_>>().join(", "));
    println!("wrote {}", path.display());
    let svg = dir.join("loss.svg");
    match std::process::Command::new("dot").arg("-Tsvg").arg(&path).arg("-o").arg(&svg).status() {
        Ok(status) if status.success() => println!("rendered {}", svg.display()),
        _ => println!("Graphviz's `dot` is not installed: render with `dot -Tsvg {} -o loss.svg`", path.display()),
    }
    let found = params.iter().filter(|(_, t)| dot.contains(&format!("n{} ", t.id()))).count();
    common::report_target("parameters drawn in the graph", found as f64, params.len() as f64, true);
    Ok(())
}
