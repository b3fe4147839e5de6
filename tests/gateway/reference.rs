//! The README is the complete reference: every config key the code reads (derived from the config
//! structs, so a key added later is covered) is in its "Config reference" table and in the
//! commented example config, the table names no key that does not exist, and the admin listener's
//! row names every admin endpoint the code serves.

use koodrive_gateway::{admin, config};

fn read(relative: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The README's section under `heading`, up to the next heading of the same level.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading}"));
    let body = &readme[start + heading.len() + 2..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

/// The backquoted names in the first column of a Markdown table's rows.
fn first_column_names(table: &str) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect()
}

#[test]
fn every_config_key_is_in_the_readme_and_the_example_config() {
    let keys = config::keys();
    assert!(keys.len() > 30, "{keys:?}");
    let readme = read("README.md");
    let reference = section(&readme, "## Config reference");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !reference.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's Config reference lacks {missing:?}"
    );
    let unknown: Vec<String> = first_column_names(reference)
        .into_iter()
        .filter(|name| name.contains('.') && !keys.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "README's Config reference names keys the config does not have: {unknown:?}"
    );

    // The example config shows every key, set or commented out, in its section.
    let example = read("config/koodrive-gateway.toml");
    let mut shown = Vec::new();
    let mut section = String::new();
    for line in example.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            let name = &name[..name.find(']').unwrap_or(name.len())];
            // `[[normalize.rules]]` shows the key `normalize.rules`.
            shown.push(name.to_owned());
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                shown.push(format!("{section}.{key}"));
            }
        }
    }
    let missing: Vec<&String> = keys.iter().filter(|key| !shown.contains(key)).collect();
    assert!(
        missing.is_empty(),
        "config/koodrive-gateway.toml does not show {missing:?}"
    );
}

#[test]
fn every_admin_endpoint_is_named_where_the_readme_describes_the_admin_listener() {
    let readme = read("README.md");
    let row = section(&readme, "## Config reference")
        .lines()
        .find(|line| line.starts_with("| `server.admin_listen`"))
        .expect("a server.admin_listen row");
    for (method, path) in admin::ROUTES {
        let named = match *method {
            "GET" => format!("`{path}`"),
            _ => format!("`{method} {path}`"),
        };
        assert!(
            row.contains(&named),
            "the admin listener's row lacks {named}: {row}"
        );
    }
}
