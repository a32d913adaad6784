//! Layout arithmetic on arbitrary shapes, strides and offsets: a layout that is accepted has an extent that fits in
//! `usize`, and every view derived from it (permute, transpose, narrow, broadcast, unsqueeze, squeeze, reshape) is
//! either refused with an error or stays inside the storage its base addresses. Nothing may overflow or panic.
#![no_main]

use arbitrary::Arbitrary;
use diffuse_tensor::layout::Layout;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    views: Vec<View>,
}

#[derive(Arbitrary, Debug)]
enum View {
    Permute(Vec<usize>),
    Transpose(usize, usize),
    Narrow {
        dim: usize,
        start: usize,
        len: usize,
    },
    BroadcastTo(Vec<usize>),
    Unsqueeze(usize),
    Squeeze(usize),
    Reshape(Vec<usize>),
}

fuzz_target!(|input: Input| {
    let Ok(base) = Layout::from_parts(input.shape, input.strides, input.offset) else {
        return;
    };
    let base_extent = base.extent().expect("from_parts checks the extent");
    let mut layout = base;
    for view in input.views {
        let next = match &view {
            View::Permute(dims) => layout.permute(dims),
            View::Transpose(a, b) => layout.transpose(*a, *b),
            View::Narrow { dim, start, len } => layout.narrow(*dim, *start, *len),
            View::BroadcastTo(shape) => layout.broadcast_to(shape),
            View::Unsqueeze(dim) => layout.unsqueeze(*dim),
            View::Squeeze(dim) => layout.squeeze(*dim),
            View::Reshape(shape) => match layout.reshape(shape) {
                Ok(Some(view)) => Ok(view),
                // Not contiguous: a tensor would copy first; the layout stays as it is.
                Ok(None) => continue,
                Err(e) => Err(e),
            },
        };
        let Ok(next) = next else {
            continue;
        };
        let extent = next.extent().expect("a view's extent fits in usize");
        assert!(
            extent <= base_extent,
            "{view:?} reaches {extent}, beyond the base's {base_extent}"
        );
        assert_eq!(next.shape().len(), next.strides().len());
        let _ = next.is_contiguous();
        layout = next;
    }
});
