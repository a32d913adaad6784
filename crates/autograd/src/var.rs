//! The graph: variables, their nodes, and the switch that turns recording off.

use diffuse_tensor::{Error, Result, Tensor};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Maps the gradient of a node's output to the gradients of its parents, in parent order (`None`: no gradient flows
/// to that parent).
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

pub(crate) struct Node {
    pub id: usize,
    pub value: Tensor,
    /// Fixed for nodes made by operations; switchable on leaves (freezing a parameter).
    pub requires_grad: Cell<bool>,
    pub parents: Vec<Var>,
    /// Taken (and so dropped, with everything it saved) when backward runs it.
    pub backward: RefCell<Option<BackwardFn>>,
}

/// A tensor in the autograd graph. Cloning shares the node.
#[derive(Clone)]
pub struct Var(pub(crate) Rc<Node>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Var{{id: {}, {:?}, requires_grad: {}}}",
            self.0.id,
            self.0.value,
            self.0.requires_grad.get()
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
        parents: Vec<Var>,
        backward: Option<BackwardFn>,
    ) -> Var {
        Var(Rc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            value,
            requires_grad: Cell::new(requires_grad),
            parents,
            backward: RefCell::new(backward),
        }))
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
            let parents = parents.iter().map(|&p| p.clone()).collect();
            Var::new(value, true, parents, Some(Box::new(backward)))
        } else {
            Var::constant(value)
        }
    }

    /// The same value as a constant: gradients stop here.
    pub fn detach(&self) -> Var {
        Var::constant(self.0.value.clone())
    }

    pub fn tensor(&self) -> &Tensor {
        &self.0.value
    }

    pub fn shape(&self) -> &[usize] {
        self.0.value.shape()
    }

    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.get()
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
        self.0.requires_grad.set(requires_grad);
        Ok(())
    }

    /// True for variables made by [`Var::leaf`] (their gradients are what [`Var::backward`] returns).
    pub fn is_leaf(&self) -> bool {
        self.0.parents.is_empty()
    }

    /// A number unique to this variable's node, the key of its gradient.
    pub fn id(&self) -> usize {
        self.0.id
    }
}
