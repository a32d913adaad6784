//! The reverse walk: topological order, gradient accumulation, and the gradients of the leaves.

use crate::var::{Node, Var};
use diffuse_tensor::{Error, Result, Tensor};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// The gradients of the leaves reached by one backward pass, by variable.
#[derive(Debug, Default)]
pub struct Gradients {
    by_id: HashMap<usize, Tensor>,
}

impl Gradients {
    /// ∂loss/∂`var`, or `None` when the loss does not depend on `var`.
    pub fn get(&self, var: &Var) -> Option<&Tensor> {
        self.by_id.get(&var.id())
    }

    /// Removes and returns the gradient of `var`.
    pub fn remove(&mut self, var: &Var) -> Option<Tensor> {
        self.by_id.remove(&var.id())
    }

    /// Sets ∂loss/∂`var` to `grad` (replacing any gradient it had): a data-parallel run puts back the gradients
    /// summed over its processes.
    pub fn insert(&mut self, var: &Var, grad: Tensor) {
        self.by_id.insert(var.id(), grad);
    }

    /// Every gradient, in no particular order.
    pub fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.by_id.values()
    }

    /// Every gradient, mutably, in no particular order: to rescale them all (gradient clipping). Replace a tensor
    /// rather than writing into it: one gradient tensor may be shared by several leaves.
    pub fn tensors_mut(&mut self) -> impl Iterator<Item = &mut Tensor> {
        self.by_id.values_mut()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The nodes that need a gradient and are reachable from `root`, each after all of its parents (iterative
/// depth-first post-order, so deep graphs cannot overflow the stack).
fn topological_order(root: &Rc<Node>) -> Vec<Rc<Node>> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![(Rc::clone(root), false)];
    while let Some((node, parents_done)) = stack.pop() {
        if parents_done {
            order.push(node);
            continue;
        }
        if !node.requires_grad.get() || !visited.insert(node.id) {
            continue;
        }
        stack.push((Rc::clone(&node), true));
        for parent in node.parents.borrow().iter().rev() {
            if parent.requires_grad.get() && !visited.contains(&parent.id) {
                stack.push((Rc::clone(parent), false));
            }
        }
    }
    order
}

impl Var {
    /// Back-propagates from this scalar (one-element) variable and returns the gradients of the leaves it depends on.
    ///
    /// The backward rules run once, each followed by dropping what it saved and its links to its parents, so memory
    /// falls as the walk proceeds; afterwards the graph below `self` is gone, and a second call through the same
    /// nodes is an error (run the forward again).
    pub fn backward(&self) -> Result<Gradients> {
        self.backward_with_hook(&mut |_, _| Ok(()))
    }

    /// [`Var::backward`], calling `on_final(leaf_id, gradient)` for each leaf as soon as its gradient is final: when
    /// the last node that uses the leaf has passed its contribution on, while the walk goes on through the nodes
    /// below (a data-parallel run starts summing a bucket of gradients over the processes there). Each leaf that
    /// receives a gradient is reported exactly once, in the order the walk finishes them; a leaf whose every path to
    /// the loss carried no gradient is not reported. An error from `on_final` ends the walk and is returned.
    pub fn backward_with_hook(
        &self,
        on_final: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Gradients> {
        let value = self.tensor();
        if value.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "backward starts from a scalar loss, got shape {:?} (reduce it with sum or mean first)",
                    value.shape()
                ),
            ));
        }
        let mut pending: HashMap<usize, Tensor> = HashMap::new();
        pending.insert(
            self.id(),
            Tensor::ones(value.shape(), value.dtype(), value.device())?,
        );
        let mut leaves = Gradients::default();
        // Consumed from the end, so each node is released as soon as it has been processed.
        let mut order = topological_order(&self.node);
        // For every leaf, how many of the walk's nodes use it and have not yet run: at zero its gradient is final.
        let mut users_left: HashMap<usize, usize> = HashMap::new();
        for node in &order {
            for parent in node.parents.borrow().iter() {
                if parent.leaf && parent.requires_grad.get() {
                    *users_left.entry(parent.id).or_default() += 1;
                }
            }
        }
        while let Some(node) = order.pop() {
            let Some(grad) = pending.remove(&node.id) else {
                // No gradient reached this node: its uses of the leaves below are done all the same.
                count_uses(&node.parents.borrow(), &mut users_left, &pending, on_final)?;
                continue;
            };
            if node.leaf {
                // A leaf that no node uses is the loss itself: final at once.
                if !users_left.contains_key(&node.id) {
                    on_final(node.id, &grad)?;
                }
                leaves.by_id.insert(node.id, grad);
                continue;
            }
            let rule = node.backward.borrow_mut().take().ok_or_else(|| {
                Error::argument(
                    "backward",
                    "this graph was already back-propagated and its saved tensors freed; run the forward again",
                )
            })?;
            let parent_grads = rule(&grad)?;
            let parents = std::mem::take(&mut *node.parents.borrow_mut());
            for (parent, g) in parents.iter().zip(parent_grads) {
                let Some(g) = g else { continue };
                if !parent.requires_grad.get() {
                    continue;
                }
                if g.shape() != parent.shape.as_slice() {
                    return Err(Error::shape(
                        "backward",
                        format!(
                            "a rule produced a gradient of shape {:?} for an input of shape {:?}",
                            g.shape(),
                            parent.shape
                        ),
                    ));
                }
                // In place into whichever of the two the walk owns alone (bit for bit `acc + g`).
                let total = match pending.remove(&parent.id) {
                    Some(acc) => acc.accumulate(g)?,
                    None => g,
                };
                pending.insert(parent.id, total);
            }
            count_uses(&parents, &mut users_left, &pending, on_final)?;
        }
        Ok(leaves)
    }
}

/// Counts one use of each leaf among `parents` as done, and reports through `on_final` the leaves whose uses are now
/// all done and that hold a gradient.
fn count_uses(
    parents: &[Rc<Node>],
    users_left: &mut HashMap<usize, usize>,
    pending: &HashMap<usize, Tensor>,
    on_final: &mut dyn FnMut(usize, &Tensor) -> Result<()>,
) -> Result<()> {
    for parent in parents {
        let Some(left) = users_left.get_mut(&parent.id) else {
            continue;
        };
        *left -= 1;
        if *left == 0 {
            if let Some(grad) = pending.get(&parent.id) {
                on_final(parent.id, grad)?;
            }
        }
    }
    Ok(())
}

/// Zeros of `shape` in the dtype and on the device of `like` (used by rules that pad a gradient).
pub(crate) fn zeros(shape: &[usize], like: &Tensor) -> Result<Tensor> {
    Tensor::zeros(shape, like.dtype(), like.device())
}
