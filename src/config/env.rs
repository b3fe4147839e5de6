//! Environment overrides: `KOODRIVE_GATEWAY__SECTION__KEY` variables written over the file's
//! table, and the variables that look meant for the gateway but that it does not read.

use super::{keys, ConfigError, ENV_PREFIX};

/// The process environment's overrides: the `KOODRIVE_GATEWAY__` variables. Others are not read
/// at all, so one that is not UTF-8 (a locale, a path) cannot stop the gateway; one of ours that
/// is not is an error naming it.
pub fn overrides() -> Result<Vec<(String, String)>, ConfigError> {
    let mut ours = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            message: "the value is not UTF-8".into(),
        })?;
        ours.push((name.to_owned(), value));
    }
    Ok(ours)
}

/// Variables the process has that look meant for the gateway but that it does not read
/// (`KOODRIVE_GATEWAY_CACHE_TTL`, one underscore after the prefix), each as a warning that says
/// so and, when one would match a key, names the variable that would set it.
pub fn unread_variables() -> Vec<String> {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    unread(names, &keys())
}

/// The variable the gateway reads as `KOODRIVE_GATEWAY_CONFIG` (the config file's path).
const CONFIG_VAR: &str = "KOODRIVE_GATEWAY_CONFIG";

pub(super) fn unread(names: impl Iterator<Item = String>, keys: &[String]) -> Vec<String> {
    let single = ENV_PREFIX.trim_end_matches('_');
    let mut unread: Vec<String> = names
        .filter(|name| {
            name.starts_with(&format!("{single}_"))
                && !name.starts_with(ENV_PREFIX)
                && name != CONFIG_VAR
        })
        .map(|name| {
            let hint = match suggestion(&name, keys) {
                Some(var) => format!("; did you mean {var}?"),
                None => format!("; overrides are {ENV_PREFIX}SECTION__KEY"),
            };
            format!("{name} is not read (not a config override){hint}")
        })
        .collect();
    unread.sort();
    unread
}

/// The override variable of the key a misspelt variable seems meant for: the same words after
/// the prefix, whatever the underscores between them.
fn suggestion(name: &str, keys: &[String]) -> Option<String> {
    let single = ENV_PREFIX.trim_end_matches('_');
    let words = |text: &str| -> String {
        text.split(['_', '.'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("_")
            .to_ascii_lowercase()
    };
    let wanted = words(name.strip_prefix(single)?);
    keys.iter().find(|key| words(key) == wanted).map(|key| {
        format!(
            "{ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        )
    })
}

/// Writes `KOODRIVE_GATEWAY__SECTION__KEY=value` over the table as `section.key = "value"`, and
/// returns the `(key, variable)` pairs it set. A variable that names no key is an error naming
/// the variable (not the key it spells, which is in no file).
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let known = keys();
    let mut set = Vec::new();
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let words: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        let key = words.join(".");
        if !known.contains(&key) {
            let mut message = format!("unknown key {key} (from the environment)");
            match suggestion(&name, &known) {
                Some(var) => message.push_str(&format!("; did you mean {var}?")),
                None => message.push_str(&format!("; overrides are {ENV_PREFIX}SECTION__KEY")),
            }
            return Err(ConfigError::Env { var: name, message });
        }
        let (last, sections) = words.split_last().unwrap_or((&key, &[]));
        let mut node = &mut *table;
        for section in sections {
            let entry = node
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                var: name.clone(),
                message: format!("{section} in the config file is not a section"),
            })?;
        }
        node.insert(last.clone(), toml::Value::String(value));
        set.push((key, name));
    }
    Ok(set)
}
