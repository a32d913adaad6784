//! The test-side references checked against published values (Random123's known-answer vectors for Philox, tabulated
//! erf), so that the GPU kernels are held against references that are themselves known to be right. Runs without a GPU.

mod reference;

use reference::erf;
use reference::philox::{philox4x32_10, uniform};

#[test]
fn philox_reference_matches_random123_known_answers() {
    assert_eq!(
        philox4x32_10([0, 0, 0, 0], [0, 0]),
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    );
    assert_eq!(
        philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
    );
    assert_eq!(
        philox4x32_10(
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0]
        ),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn uniforms_lie_in_the_half_open_unit_interval() {
    assert_eq!(uniform(0), 0.5 / 16_777_216.0);
    assert!(uniform(u32::MAX) <= 1.0);
    assert!(uniform(0xFFFF_FE00) < 1.0);
}

#[test]
fn erf_reference_matches_tabulated_values() {
    for (x, want) in [
        (0.0, 0.0),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (-2.0, -0.995_322_265_018_952_7),
        (3.5, 0.999_999_256_901_627_7),
    ] {
        assert!(
            (erf(x) - want).abs() < 1e-14,
            "erf({x}) = {} but tables say {want}",
            erf(x)
        );
    }
}
