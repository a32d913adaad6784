//! What the models' `config.json` readers and writers share: the error that names the file, and the diffusers form of
//! a saved config (the arguments, the class name and the diffusers version this crate reproduces).

use crate::error::Error;
use crate::unet::config::DIFFUSERS_VERSION;
use serde_json::Value;

/// An error about the `config.json` being read.
pub(crate) fn config_error(message: impl Into<String>) -> Error {
    Error::model("config.json", message)
}

/// A `config.json` diffusers' `class_name.from_pretrained` reads, from a config serialised by serde (an object).
pub(crate) fn diffusers_config_json(mut value: Value, class_name: &str) -> String {
    let map = value
        .as_object_mut()
        .expect("a model config serialises to an object");
    map.insert("_class_name".into(), Value::from(class_name));
    map.insert("_diffusers_version".into(), Value::from(DIFFUSERS_VERSION));
    serde_json::to_string_pretty(&value).expect("a JSON value always serialises")
}
