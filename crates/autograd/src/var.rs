//! The graph: variables, their nodes, and the switch that turns recording off.

use diffuse_tensor::{Error, Result, Tensor};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Maps the gradient of a node's output to the gradients of its parents, in parent order (`None`: no gradient flows
/// to that parent).
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

/// A variable's place in the graph. It does not hold the variable's value: an output lives only while user code
/// holds its [`Var`] or a backward rule saved it, so outputs that no rule needs are freed as soon as the forward
/// code drops them.
pub(crate) struct Node {
    pub id: usize,
    /// Made by [`Var::leaf`] or [`Var::constant`] (not by an operation).
    pub leaf: bool,
    /// Fixed for nodes made by operations; switchable on leaves (freezing a parameter).
    pub requires_grad: Cell<bool>,
    /// The shape of the value, which the gradient arriving here must have.
    pub shape: Vec<usize>,
    /// Emptied when backward has run this node's rule, so that the nodes above can be freed as the walk goes.
    pub parents: RefCell<Vec<Rc<Node>>>,
    /// Taken (and so dropped, with everything it saved) when backward runs it.
    pub backward: RefCell<Option<BackwardFn>>,
}

/// A tensor in the autograd graph: its value and its node. Cloning shares both.
#[derive(Clone)]
pub struct Var {
    value: Tensor,
    pub(crate) node: Rc<Node>,
}

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var{{id: {}, {:?}, requires_grad: {}}}",
            self.node.id,
            self.value,
            self.node.requires_grad.get()
        )
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether operations on this thread record the graph (false inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Runs `f` without recording: every variable it makes is a constant. The previous state comes back afterwards,
/// even if `f` panics.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

impl Var {
    fn new(
        value: Tensor,
        requires_grad: bool,
        parents: Vec<Rc<Node>>,
        backward: Option<BackwardFn>,
    ) -> Var {
        let node = Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            leaf: backward.is_none(),
            requires_grad: Cell::new(requires_grad),
            shape: value.shape().to_vec(),
            parents: RefCell::new(parents),
            backward: RefCell::new(backward),
        };
        Var {
            value,
            node: Rc::new(node),
        }
    }

    /// A variable whose gradient [`Var::backward`] reports: a parameter or an input being differentiated.
    pub fn leaf(value: Tensor) -> Var {
        Var::new(value, true, Vec::new(), None)
    }

    /// A variable that never receives a gradient (data, targets, fixed weights).
    pub fn constant(value: Tensor) -> Var {
        Var::new(value, false, Vec::new(), None)
    }

    /// The result of an operation on `parents`. Records the node only when recording is on and some parent needs a
    /// gradient; otherwise the result is a constant and `backward` is dropped unused.
    pub(crate) fn from_op(
        value: Tensor,
        parents: &[&Var],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        if is_grad_enabled() && parents.iter().any(|p| p.requires_grad()) {
            let parents = parents.iter().map(|p| Rc::clone(&p.node)).collect();
            Var::new(value, true, parents, Some(Box::new(backward)))
        } else {
            Var::constant(value)
        }
    }

    /// An operation defined outside this crate: `value` computed from `parents`, and `backward`, which maps the
    /// gradient of `value` to the gradients of `parents` (in order; `None` where none flows), run once by
    /// [`Var::backward`]. For operations whose rule needs something this crate cannot see, such as the all-gather
    /// of data-parallel training, whose backward sums the gradient over processes. Recorded only when recording is
    /// on and some parent needs a gradient.
    pub fn custom_op(
        value: Tensor,
        parents: &[&Var],
        backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + 'static,
    ) -> Var {
        Var::from_op(value, parents, backward)
    }

    /// The same value as a constant: gradients stop here.
    pub fn detach(&self) -> Var {
        Var::constant(self.value.clone())
    }

    pub fn tensor(&self) -> &Tensor {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn requires_grad(&self) -> bool {
        self.node.requires_grad.get()
    }

    /// Turns gradient tracking of a leaf on or off: operations recorded afterwards see the new setting, so a leaf
    /// switched off (a frozen parameter) gets no gradient and costs the backward pass nothing. The result of an
    /// operation keeps the setting it was made with (an error).
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        if !self.is_leaf() {
            return Err(Error::argument(
                "set_requires_grad",
                "only a leaf can be switched; this variable is the result of an operation (detach it first)",
            ));
        }
        self.node.requires_grad.set(requires_grad);
        Ok(())
    }

    /// True for variables made by [`Var::leaf`] (their gradients are what [`Var::backward`] returns).
    pub fn is_leaf(&self) -> bool {
        self.node.leaf
    }

    /// A number unique to this variable's node, the key of its gradient.
    pub fn id(&self) -> usize {
        self.node.id
    }
}
