//! The crate's imports run one way. Each source file has a layer; a file may
//! name (through `crate::…` or `super::…` paths, outside its `#[cfg(test)]`
//! module) only files of its own layer or below, and only `gateway` and
//! `main` may name pingora. The layers, bottom up:
//!
//! 0 base       config, secret, clock, html, store_error
//! 1 cores      saml (validation), scim (filter, PATCH, resources, settings),
//!              policy, identity, webhook::{event, signing}, directory::{model,
//!              rules}, telemetry, tls — plain values in, plain values out
//! 2 services   directory, session, provisioning, ephemeral, webhook::{outbox,
//!              deliver, ops, mod} — each defines the store traits it needs
//! 3 store      the embedded and Redis backends implementing those traits
//! 4 handlers   app (Runtime + Snapshot), web, saml::web, scim::server, validate
//! 5 adapter    gateway (pingora), main, lib
//!
//! A change that makes a core reach for `gateway`, `store` or pingora (or any
//! file reach above its layer) fails here, naming the file and the import.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    // Most specific first: the first prefix that matches decides.
    ("config/", 0),
    ("secret.rs", 0),
    ("clock.rs", 0),
    ("html.rs", 0),
    ("store_error.rs", 0),
    ("saml/web.rs", 4),
    ("saml/", 1),
    ("scim/server.rs", 4),
    ("scim/", 1),
    ("policy/", 1),
    ("identity/", 1),
    ("webhook/event.rs", 1),
    ("webhook/signing.rs", 1),
    ("webhook/", 2),
    ("directory/model.rs", 1),
    ("directory/rules.rs", 1),
    ("directory/", 2),
    ("telemetry/", 1),
    ("tls.rs", 1),
    ("session/", 2),
    ("provisioning.rs", 2),
    ("ephemeral.rs", 2),
    ("store/", 3),
    ("app.rs", 4),
    ("web/", 4),
    ("validate.rs", 4),
    ("gateway/", 5),
    ("main.rs", 5),
    ("lib.rs", 5),
];

fn layer_of(rel: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(p, _)| rel.starts_with(p))
        .map(|&(_, l)| l)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code without comments (so doc text naming a module is not an
/// import) and without its unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal ("http://…") cuts too much of
            // that line only, never an import.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path named after `anchor` (`crate::` or `super::`), with
/// `{a, b::c}` groups expanded: the first two segments of each.
fn named_paths(code: &str, anchor: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(i) = code[from..].find(anchor) {
        let start = from + i;
        from = start + anchor.len();
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = 0;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for ch in group[..end].chars().chain(std::iter::once(',')) {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(segments(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
        } else {
            out.insert(segments(rest));
        }
    }
    out.retain(|s| !s.is_empty() && s[0] != "self" && s[0] != "super");
    out
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .take_while(|s| !s.is_empty())
        .take(2)
        .collect()
}

/// The source file a module path under `base` (a directory of `src`) names:
/// `a/b.rs`, else `a/mod.rs` (the item is in the module), else `a.rs`.
fn resolve(base: &Path, segs: &[String]) -> Option<String> {
    let root = src();
    let first = &segs[0];
    if let Some(second) = segs.get(1) {
        let p = base.join(first).join(format!("{second}.rs"));
        if p.exists() {
            return Some(rel(&root, &p));
        }
    }
    for p in [
        base.join(first).join("mod.rs"),
        base.join(format!("{first}.rs")),
    ] {
        if p.exists() {
            return Some(rel(&root, &p));
        }
    }
    None
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every (file, import target) pair that reaches above the file's layer,
/// and every file that names pingora below the adapter.
fn violations() -> Vec<String> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in &files {
        let me = rel(&root, f);
        let mine = layer_of(&me).unwrap_or_else(|| panic!("{me}: no layer; add it to LAYERS"));
        let text = code(&std::fs::read_to_string(f).unwrap());
        if mine < 5 && text.contains("pingora") {
            bad.push(format!("{me} (layer {mine}) names pingora"));
        }
        let dir = f.parent().unwrap();
        // `super::` from `a/b.rs` is `a` (files in `a/`); from `a/mod.rs`
        // or a top-level `x.rs` it is the crate root.
        let sup_base = if f.file_name().unwrap() == "mod.rs" {
            dir.parent().unwrap().to_path_buf()
        } else {
            dir.to_path_buf()
        };
        let targets = named_paths(&text, "crate::")
            .into_iter()
            .filter_map(|s| resolve(&root, &s))
            .chain(
                named_paths(&text, "super::")
                    .into_iter()
                    .filter_map(|s| resolve(&sup_base, &s)),
            );
        for t in targets {
            if t == me {
                continue;
            }
            let theirs = layer_of(&t).unwrap_or_else(|| panic!("{t}: no layer"));
            if theirs > mine {
                bad.push(format!("{me} (layer {mine}) imports {t} (layer {theirs})"));
            }
        }
    }
    bad
}

#[test]
fn imports_run_one_way() {
    let bad = violations();
    assert!(
        bad.is_empty(),
        "imports reaching up the layers:\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn every_source_file_has_a_layer() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    for f in files {
        let r = rel(&root, &f);
        assert!(layer_of(&r).is_some(), "{r} has no layer in LAYERS");
    }
}

/// The check itself catches what it is for: a core naming `gateway`,
/// `store` or pingora, through a plain path, a `use` group or `super::`.
#[test]
fn the_check_sees_a_core_reaching_up() {
    let root = src();
    let saml = root.join("saml");
    for (snippet, want) in [
        ("use crate::gateway::Snapshot;", "gateway/mod.rs"),
        (
            "use crate::{config::Config, store::Backend};",
            "store/mod.rs",
        ),
        (
            "fn f(x: &crate::store::redis::RedisStore) {}",
            "store/redis.rs",
        ),
        ("use super::web::acs;", "saml/web.rs"),
    ] {
        let text = code(snippet);
        let found: Vec<String> = named_paths(&text, "crate::")
            .into_iter()
            .filter_map(|s| resolve(&root, &s))
            .chain(
                named_paths(&text, "super::")
                    .into_iter()
                    .filter_map(|s| resolve(&saml, &s)),
            )
            .collect();
        assert!(found.iter().any(|t| t == want), "{snippet}: {found:?}");
        assert!(layer_of(want).unwrap() > layer_of("saml/idp.rs").unwrap());
    }
    // Comments do not count; code does.
    assert!(!code("// see crate::gateway\n").contains("gateway"));
    assert!(code("use pingora::x;").contains("pingora"));
}
