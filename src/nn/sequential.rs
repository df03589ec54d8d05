//! `Sequential`: modules applied one after another.

use super::Module;
use crate::error::Result;
use crate::tensor::{Element, Tensor};

/// Modules applied in order, as `torch.nn.Sequential`; the parameters of the module at
/// position `i` are named `i.<name>` (`0.weight`, `2.bias`), as in PyTorch.
///
/// ```
/// use nabla::prelude::*;
/// let mut rng = nabla::rng(1);
/// let model = nn::Sequential::new().push(nn::Linear::new(2, 3, &mut rng)).push(nn::Tanh);
/// assert_eq!(model.len(), 2);
/// assert_eq!(model.forward(&Tensor::ones(&[4, 2]))?.shape(), &[4, 3]);
/// # Ok::<(), nabla::Error>(())
/// ```
pub struct Sequential<T: Element = f32> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Element> Default for Sequential<T> {
    fn default() -> Self {
        Sequential { layers: Vec::new() }
    }
}

constructors! {
    Sequential: SequentialNew {
        /// An empty sequence (the identity).
        fn new() -> Self {
            Self::default()
        }
    }
}

impl<T: Element> Sequential<T> {
    /// Appends a module.
    #[allow(clippy::should_implement_trait)]
    pub fn push(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends an already boxed module.
    pub fn push_boxed(mut self, layer: Box<dyn Module<T>>) -> Self {
        self.layers.push(layer);
        self
    }

    /// How many modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when there are no modules.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The module at `index`.
    pub fn get(&self, index: usize) -> Option<&dyn Module<T>> {
        self.layers.get(index).map(|l| l.as_ref())
    }

    /// The output of each module in turn (the input is not included): what the network does
    /// to its input, step by step.
    pub fn forward_trace(&self, input: &Tensor<T>) -> Result<Vec<Tensor<T>>> {
        let mut out = Vec::with_capacity(self.layers.len());
        let mut x = input.clone();
        for layer in &self.layers {
            x = layer.forward(&x)?;
            out.push(x.clone());
        }
        Ok(out)
    }
}

impl<T: Element> Module<T> for Sequential<T> {
    fn forward(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let mut x = input.clone();
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    fn named_children(&self) -> Vec<(String, &dyn Module<T>)> {
        self.layers.iter().enumerate().map(|(i, layer)| (i.to_string(), layer.as_ref())).collect()
    }
}
