//! `model_index.json`, the table of contents of a diffusers pipeline folder.
//!
//! ```json
//! {
//!   "_class_name": "DDPMPipeline",
//!   "_diffusers_version": "0.42.1",
//!   "scheduler": ["diffusers", "DDPMScheduler"],
//!   "unet": ["diffusers", "UNet2DModel"]
//! }
//! ```
//!
//! Keys starting with `_` describe the file; a `[library, class]` pair names a component, stored in the folder of
//! the same name (`unet/`, `scheduler/`); `[null, null]` is an optional component the pipeline was saved without
//! (a Stable Diffusion `safety_checker`); any other value (`"requires_safety_checker": true`) is a setting of the
//! pipeline itself.

use crate::error::{Error, Result};
use crate::schedule::python_json;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The file name.
pub const MODEL_INDEX_FILE: &str = "model_index.json";

/// A component's library and class, e.g. `("diffusers", "UNet2DModel")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentRef {
    pub library: String,
    pub class_name: String,
}

/// The contents of a `model_index.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelIndex {
    /// The pipeline class, e.g. `"DDPMPipeline"`.
    pub class_name: String,
    pub diffusers_version: Option<String>,
    /// Every component by name; `None` for one saved as `[null, null]`.
    pub components: BTreeMap<String, Option<ComponentRef>>,
    /// The pipeline's own settings, kept as read.
    pub settings: BTreeMap<String, Value>,
}

impl ModelIndex {
    /// Parses the text of a `model_index.json`.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let bad = |message: String| Error::model(MODEL_INDEX_FILE, message);
        let value = python_json::parse(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(bad("the top level must be a JSON object".into()));
        };
        let class_name = match map.get("_class_name") {
            Some(Value::String(name)) => name.clone(),
            _ => return Err(bad("_class_name (the pipeline class) is missing".into())),
        };
        let diffusers_version = map
            .get("_diffusers_version")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut components = BTreeMap::new();
        let mut settings = BTreeMap::new();
        for (key, value) in map {
            if key.starts_with('_') {
                continue;
            }
            match &value {
                Value::Array(pair) if pair.len() == 2 => {
                    let component = match (&pair[0], &pair[1]) {
                        (Value::Null, Value::Null) => None,
                        (Value::String(library), Value::String(class)) => Some(ComponentRef {
                            library: library.clone(),
                            class_name: class.clone(),
                        }),
                        _ => {
                            return Err(bad(format!(
                                "component '{key}' is {value}; expected [library, class] or [null, null]"
                            )))
                        }
                    };
                    components.insert(key, component);
                }
                _ => {
                    settings.insert(key, value);
                }
            }
        }
        Ok(Self {
            class_name,
            diffusers_version,
            components,
            settings,
        })
    }

    /// Reads `dir/model_index.json`; errors name the file.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MODEL_INDEX_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::model(path.display().to_string(), e.to_string()))?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Model { message, .. } => Error::model(path.display().to_string(), message),
            other => other,
        })
    }

    /// The index as diffusers writes it: keys sorted, two-space indent, trailing newline.
    pub fn to_json_string(&self) -> String {
        let mut map: BTreeMap<String, Value> = self.settings.clone();
        map.insert("_class_name".into(), Value::from(self.class_name.as_str()));
        if let Some(version) = &self.diffusers_version {
            map.insert("_diffusers_version".into(), Value::from(version.as_str()));
        }
        for (name, component) in &self.components {
            let pair = match component {
                Some(c) => Value::from(vec![c.library.as_str(), c.class_name.as_str()]),
                None => Value::Array(vec![Value::Null, Value::Null]),
            };
            map.insert(name.clone(), pair);
        }
        let object: Map<String, Value> = map.into_iter().collect();
        format!(
            "{}\n",
            python_json::to_string_pretty(&Value::Object(object))
        )
    }
}
