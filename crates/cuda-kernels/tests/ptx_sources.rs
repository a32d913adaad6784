//! Checks on the PTX sources themselves that need no GPU.

use diffuse_cuda_kernels::Module;

/// The text between the `shared with <other>: begin/end` markers of a file.
fn shared_block(source: &str) -> &str {
    let begin = source.find("shared with").expect("begin marker");
    let begin = begin + source[begin..].find('\n').expect("end of marker line");
    let end = source.find("// ---- shared with").map(|first| {
        source[first + 1..]
            .find("// ---- shared with")
            .map(|second| first + 1 + second)
            .expect("end marker")
    });
    &source[begin..end.expect("markers")]
}

#[test]
fn the_philox_functions_in_noise_ptx_are_the_ones_in_philox_ptx() {
    assert_eq!(
        shared_block(Module::Philox.source()),
        shared_block(Module::Noise.source())
    );
}

#[test]
fn every_module_targets_sm_80_with_64_bit_addresses_and_ptx_isa_at_most_8() {
    for module in Module::ALL {
        let source = module.source();
        assert!(
            source.contains("\n.target sm_80\n"),
            "{} does not target sm_80",
            module.file()
        );
        assert!(
            source.contains("\n.address_size 64\n"),
            "{} lacks .address_size 64",
            module.file()
        );
        let version = source
            .lines()
            .find_map(|line| line.strip_prefix(".version "))
            .unwrap_or_else(|| panic!("{} has no .version", module.file()));
        let (major, minor) = version.trim().split_once('.').expect("major.minor");
        let version = (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap());
        assert!(
            version <= (8, 0),
            "{} asks for PTX ISA {version:?}",
            module.file()
        );
    }
}

/// The text of device function `name` in a module: from its `.func` line to the first line that is just `}`.
fn device_function<'a>(source: &'a str, name: &str) -> &'a str {
    let start = source
        .find(&format!(") {name}("))
        .expect("function present");
    let start = source[..start].rfind(".func").expect(".func line");
    let end = start + source[start..].find("\n}\n").expect("closing brace");
    &source[start..end]
}

#[test]
fn the_exp_of_softmax_ptx_is_the_one_in_attention_ptx() {
    assert_eq!(
        device_function(Module::Softmax.source(), "exp_nonpositive"),
        device_function(Module::Attention.source(), "exp_nonpositive")
    );
}

#[test]
fn the_exp_of_softmax_ptx_is_the_one_in_attention_backward_ptx() {
    assert_eq!(
        device_function(Module::Softmax.source(), "exp_nonpositive"),
        device_function(Module::AttentionBackward.source(), "exp_nonpositive")
    );
}
