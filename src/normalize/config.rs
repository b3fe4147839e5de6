//! `[normalize]` as the operator writes it: the `Raw*` structs read from TOML, and
//! [`RawNormalizeConfig::validate`], which compiles them once into a [`NormalizeConfig`] whose
//! [`RuleTable`] holds the built-in rules plus the user's. Errors name the key.

use std::collections::BTreeMap;

use bytesize::ByteSize;
use http::Method;
use serde::Deserialize;

use super::rules::{literal_prefix, parse_pattern, Rule, RuleTable};
use super::shape::{FieldType, Shape};

/// `[normalize]` as written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNormalizeConfig {
    /// Largest (decoded) body the gateway buffers to normalize; larger ones stream through. 8 MiB if unset.
    #[serde(default, deserialize_with = "crate::units::optional_size")]
    pub max_body: Option<ByteSize>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// One `[[normalize.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// An exact path, or a pattern where `{name}` matches one segment and a trailing `*` the rest.
    pub path: String,
    /// Methods the rule applies to; `["GET"]` if unset.
    pub methods: Option<Vec<String>>,
    // The fields of a top-level `RawShape`, repeated: serde's `flatten` ignores `deny_unknown_fields`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    #[serde(default)]
    pub omit_null: Vec<String>,
    #[serde(default)]
    pub arrays: BTreeMap<String, RawShape>,
    #[serde(default)]
    pub objects: BTreeMap<String, RawShape>,
}

/// What to do with one JSON object: the top level of a body, or a named field inside it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShape {
    /// Key renames, from -> to; when both keys are present the target wins and `from` is dropped.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Field types: "string" or "integer".
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Fields removed when they are `null` (for "absent means none", like `nextCursor`).
    #[serde(default)]
    pub omit_null: Vec<String>,
    /// Arrays of objects (named after renames): the shape applies to each element.
    #[serde(default)]
    pub arrays: BTreeMap<String, RawShape>,
    /// Object fields (named after renames): the shape applies to the object.
    #[serde(default)]
    pub objects: BTreeMap<String, RawShape>,
}

/// The validated `[normalize]` section.
#[derive(Debug, Clone)]
pub struct NormalizeConfig {
    /// Largest body, in bytes, that is buffered and normalized.
    pub max_body: usize,
    pub rules: RuleTable,
}

/// A config mistake, naming the key where it is.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{key}: {path:?} {problem}")]
    Path {
        key: String,
        path: String,
        problem: &'static str,
    },
    #[error("{key}: unknown type {name:?}, expected \"string\" or \"integer\"")]
    UnknownType { key: String, name: String },
    #[error("{key}: invalid method {name:?}")]
    Method {
        key: String,
        name: String,
        #[source]
        source: http::method::InvalidMethod,
    },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: &'static str },
}

const DEFAULT_MAX_BODY: ByteSize = ByteSize::mib(8);

impl RawNormalizeConfig {
    /// Checks every rule and compiles the table; errors name the key (`normalize.rules[1].types.code`).
    pub fn validate(self) -> Result<NormalizeConfig, RuleError> {
        let max_body = self.max_body.unwrap_or(DEFAULT_MAX_BODY).as_u64();
        let max_body = usize::try_from(max_body)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                invalid(
                    "normalize.max_body",
                    "must be between 1 byte and usize::MAX",
                )
            })?;
        let user = self.rules.into_iter().enumerate();
        let user = user.map(|(i, raw)| raw.compile(&format!("normalize.rules[{i}]")));
        let rules = user.collect::<Result<Vec<_>, _>>()?;
        Ok(NormalizeConfig {
            max_body,
            rules: RuleTable::new(rules),
        })
    }
}

impl RawRule {
    fn compile(self, key: &str) -> Result<Rule, RuleError> {
        let segments = parse_pattern(&self.path).map_err(|problem| RuleError::Path {
            key: format!("{key}.path"),
            path: self.path.clone(),
            problem,
        })?;
        let names = self.methods.unwrap_or_else(|| vec!["GET".to_owned()]);
        let methods = names.iter().enumerate().map(|(i, name)| {
            Method::from_bytes(name.to_ascii_uppercase().as_bytes()).map_err(|source| {
                RuleError::Method {
                    key: format!("{key}.methods[{i}]"),
                    name: name.clone(),
                    source,
                }
            })
        });
        let methods = methods.collect::<Result<Vec<_>, _>>()?;
        let shape = RawShape {
            rename: self.rename,
            types: self.types,
            omit_null: self.omit_null,
            arrays: self.arrays,
            objects: self.objects,
        };
        let shape = shape.compile(key)?;
        Ok(Rule {
            prefix: literal_prefix(&self.path),
            path: self.path,
            segments,
            methods,
            shape,
        })
    }
}

impl RawShape {
    fn compile(self, key: &str) -> Result<Shape, RuleError> {
        let mut rename = Vec::with_capacity(self.rename.len());
        for (from, to) in self.rename {
            if from.is_empty() || to.is_empty() || from == to {
                return Err(invalid(
                    &format!("{key}.rename.{from}"),
                    "needs two different, non-empty keys",
                ));
            }
            rename.push((from, to));
        }
        let mut types = Vec::with_capacity(self.types.len());
        for (field, name) in self.types {
            let ty = match name.as_str() {
                "string" => FieldType::String,
                "integer" => FieldType::Integer,
                _ => {
                    return Err(RuleError::UnknownType {
                        key: format!("{key}.types.{field}"),
                        name,
                    })
                }
            };
            types.push((field, ty));
        }
        let nested = |kind: &str, map: BTreeMap<String, RawShape>| {
            let compiled = map.into_iter().map(|(field, raw)| {
                let shape = raw.compile(&format!("{key}.{kind}.{field}"))?;
                Ok((field, shape))
            });
            compiled.collect::<Result<Vec<_>, RuleError>>()
        };
        let arrays = nested("arrays", self.arrays)?;
        let objects = nested("objects", self.objects)?;
        Ok(Shape::new(rename, self.omit_null, types, arrays, objects))
    }
}

fn invalid(key: &str, problem: &'static str) -> RuleError {
    RuleError::Invalid {
        key: key.to_owned(),
        problem,
    }
}
