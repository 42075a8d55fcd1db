//! The links in the course work in both places it is read: as Markdown
//! files on a repository page, and as the rustdoc pages `src/tutorial.rs`
//! makes of them (`cargo doc`).
//!
//! A link between chapters is written `[chapter 2][02-echo]`, with the
//! definition `[02-echo]: 02-echo.md` at the end of the file; `src/tutorial.rs`
//! puts `[02-echo]: crate::tutorial::ch02_echo` before each chapter, and in
//! Markdown the first definition of a label wins. This test scans the files
//! (no rendering needed) so that a new link cannot quietly go dead.
//!
//! `names.rs` does the same for the names the course gives the code: every
//! file, function, type and command it points at must exist in what
//! `index.rs` reads of the sources.

mod index;
mod names;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every relative link in `README.md` and `docs/*.md` names a file or
/// folder that exists, so the links work on a repository page.
#[test]
fn relative_links_lead_to_files_that_exist() {
    let mut dead = Vec::new();
    for file in markdown_files() {
        let text = prose(&read(&file));
        let targets = inline_links(&text)
            .into_iter()
            .chain(definitions(&text).into_values());
        for target in targets {
            let Some(path) = relative_path(&target) else {
                continue;
            };
            if !file.parent().unwrap().join(path).exists() {
                dead.push(format!("{}: {target}", shown(&file)));
            }
        }
    }
    assert!(dead.is_empty(), "links to nothing:\n{}", dead.join("\n"));
}

/// In every chapter that `src/tutorial.rs` includes, no link is a bare
/// relative path (dead in rustdoc, which serves the text from another
/// folder): links to other files are reference links whose label
/// `src/tutorial.rs` defines as a module of the tutorial.
#[test]
fn chapter_links_work_in_the_rendered_tutorial() {
    let tutorial = read(&crate_dir().join("src/tutorial.rs"));
    let modules: Vec<&str> = tutorial
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.split_whitespace().next())
        .collect();
    let rustdoc = definitions(&tutorial);
    let mut wrong = Vec::new();
    for (label, target) in &rustdoc {
        let module = target.strip_prefix("crate::tutorial::").unwrap_or("");
        let module = module.split('#').next().unwrap();
        if !modules.contains(&module) {
            wrong.push(format!(
                "src/tutorial.rs: [{label}]: {target} is not a module of the tutorial"
            ));
        }
    }
    let lines: Vec<&str> = tutorial.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("#[doc = include_str!(\"../") else {
            continue;
        };
        let name = rest.split('"').next().unwrap();
        if i == 0 || lines[i - 1] != "#[doc = chapter_links!()]" {
            wrong.push(format!(
                "src/tutorial.rs: put #[doc = chapter_links!()] before the include of {name}"
            ));
        }
        let text = prose(&read(&crate_dir().join(name)));
        for target in inline_links(&text) {
            if relative_path(&target).is_some() {
                wrong.push(format!(
                    "{name}: ({target}) is dead in rustdoc: write [text][label], define \
                     [label]: {target} at the end of the file, and the label in src/tutorial.rs"
                ));
            }
        }
        for (label, target) in definitions(&text) {
            if relative_path(&target).is_some() && !rustdoc.contains_key(&label) {
                wrong.push(format!(
                    "{name}: the label [{label}] ({target}) has no definition in \
                     src/tutorial.rs's chapter_links, so it is dead in rustdoc"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The scanner finds inline links and definitions, and leaves code alone.
#[test]
fn the_scanner_reads_links_and_skips_code() {
    let text = prose(
        "See [two](02-echo.md \"title\") and [three][03-framing], `[x](code.md)`.\n\
         ```rust\nlet a = [b](c);\n```\n[03-framing]: 03-framing.md\n",
    );
    assert_eq!(inline_links(&text), ["02-echo.md"]);
    assert_eq!(definitions(&text)["03-framing"], "03-framing.md");
    assert_eq!(relative_path("https://example.test/x"), None);
    assert_eq!(relative_path("#try-it"), None);
    assert_eq!(relative_path("crate::tutorial"), None);
    assert_eq!(
        relative_path("../README.md#for-instructors"),
        Some("../README.md")
    );
}

// ---------------------------------------------------------------- helpers

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(crate_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `README.md` and every `docs/*.md`.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![crate_dir().join("README.md")];
    for entry in fs::read_dir(crate_dir().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The text without fenced code blocks and inline code spans, where
/// brackets are code, not links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of inline links `[text](target "title")`.
fn inline_links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let target = after[..end].split_whitespace().next().unwrap_or("");
        if !target.is_empty() {
            found.push(target.to_string());
        }
        rest = &after[end..];
    }
    found
}

/// Link reference definitions `[label]: target`, the first one of each
/// label (as Markdown does), labels in lower case. Also reads them from a
/// Rust file's string literals, where `chapter_links!` keeps them.
fn definitions(text: &str) -> HashMap<String, String> {
    let mut defs = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix('[') else {
            continue;
        };
        let Some((label, target)) = rest.split_once("]: ") else {
            continue;
        };
        if label.is_empty() || label.contains(']') {
            continue;
        }
        let target = target.split_whitespace().next().unwrap_or("").to_string();
        defs.entry(label.to_lowercase()).or_insert(target);
    }
    defs
}

/// The file part of a link that points at a file of the repository, or
/// `None` for a web address, an anchor on the same page or a Rust path.
fn relative_path(target: &str) -> Option<&str> {
    if target.starts_with('#') || target.contains("://") || target.contains("::") {
        return None;
    }
    if target.starts_with("mailto:") {
        return None;
    }
    Some(target.split('#').next().unwrap())
}
