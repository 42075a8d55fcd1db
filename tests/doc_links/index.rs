//! What the code defines, read from the Rust sources as text: each `fn`,
//! `struct`, `enum`, `trait`, `type`, `const`, `static`, `mod` and
//! `macro_rules!`, bare (`join`) and under the type or module it belongs to
//! (`Room::join`, `Outgoing::Close`, `durable::replace`), by file. The
//! sources are `rustfmt`ed, so indentation says where a block ends; that is
//! all the parsing a name check needs.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{crate_dir, read, shown};

/// The index reads methods (of an `impl` and a `trait`), variants, fields,
/// a file's items under its module, and goes on after a one-line `impl`;
/// a `pub use` makes a path but does not define the name in its file.
#[test]
fn the_index_reads_items_under_their_type_and_module() {
    let mut index = Index::default();
    index.add(
        "src/framing.rs",
        "pub struct TooLong {\n    pub limit: usize,\n}\n\nimpl Error for TooLong {}\n\n\
         pub fn is_too_long() {}\n\nimpl<'a> Read for Conn<'a> {\n    fn read(&mut self) {}\n}\n\n\
         pub trait Sink {\n    fn take(&mut self);\n}\n\nenum Step {\n    Idle,\n    Body(u64),\n}\n\n\
         macro_rules! log {\n    () => {};\n}\n\n\
         pub use body::{\n    copy_exact,\n    read_chunked as Chunks,\n};\npub use body::read_chunked;\n",
    );
    for name in [
        "framing::is_too_long",
        "netlessons::framing",
        "TooLong::limit",
        "Conn::read",
        "Sink::take",
        "Step::Idle",
        "Step::Body",
        "netlessons::log",
        "framing::read_chunked",
        "framing::Chunks",
        "netlessons::framing::copy_exact",
    ] {
        assert!(index.defines(name), "{name} not read");
    }
    assert!(!index.defines("TooLong::is_too_long"));
    assert!(!index.defines("Conn::take"));
    assert!(index.defined_in("src/", "Conn::read"));
    assert!(!index.defined_in("src/other.rs", "Conn::read"));
    assert!(!index.defined_in("src/framing.rs", "copy_exact"));
}

/// The defined names of the crate's Rust sources.
#[derive(Default)]
pub(super) struct Index {
    /// Every name, bare (`join`) and under its type or module (`Room::join`).
    pub(super) names: HashSet<String>,
    /// The same names, by the file that defines them.
    pub(super) by_file: HashMap<String, HashSet<String>>,
    /// Words the code writes as string literals (`"MISSING_DATE"`).
    pub(super) strings: HashSet<String>,
}

/// The kinds of block whose members are named under the block's name.
#[derive(Clone, Copy, PartialEq)]
enum Block {
    Module,
    Impl,
    Enum,
    Struct,
}

impl Index {
    /// Every `.rs` file under `src/`, `examples/` and `tests/`.
    pub(super) fn of_tree() -> Index {
        let mut index = Index::default();
        for dir in ["src", "examples", "tests"] {
            for file in rust_files(&crate_dir().join(dir)) {
                index.add(&shown(&file), &read(&file));
            }
        }
        index
    }

    /// Reads one file's definitions. The sources are `rustfmt`ed, so a block
    /// ends at the first line indented as little as its opening line.
    pub(super) fn add(&mut self, path: &str, source: &str) {
        let module = module_of(path);
        self.define(path, &module, None);
        if path.starts_with("src/") {
            self.define(path, &format!("netlessons::{module}"), None);
        }
        let mut open: Vec<(usize, String, Block)> = Vec::new();
        let mut reexport: Option<(String, String)> = None;
        for line in source.lines() {
            let code = line.trim_start();
            if code.is_empty() || code.starts_with("//") || code.starts_with('#') {
                continue;
            }
            let indent = line.len() - code.len();
            if let Some((_, text)) = reexport.as_mut() {
                text.push_str(code);
                if code.ends_with(';') {
                    let (owner, text) = reexport.take().unwrap();
                    self.reexport(path, &owner, &text);
                }
                continue;
            }
            while open
                .last()
                .is_some_and(|(i, ..)| indent < *i || (indent == *i && code.starts_with('}')))
            {
                open.pop();
            }
            let owner = match open.last() {
                Some((i, name, kind)) if i + 4 == indent => Some((name.clone(), *kind)),
                None if indent == 0 => Some((module.clone(), Block::Module)),
                _ => None,
            };
            self.strings.extend(quoted_words(code));
            if let Some(text) = code.strip_prefix("pub use ") {
                if let Some((owner, Block::Module)) = owner {
                    reexport = Some((owner, text.to_string()));
                    if code.ends_with(';') {
                        let (owner, text) = reexport.take().unwrap();
                        self.reexport(path, &owner, &text);
                    }
                }
                continue;
            }
            self.add_line(path, code, indent, owner, &mut open);
        }
    }

    /// A `pub use` makes a real path of the module (`framing::read_chunked`
    /// for an item of `framing/body.rs`), so the names count under it; but
    /// not as defined in this file, which only passes them on.
    fn reexport(&mut self, path: &str, module: &str, text: &str) {
        let text = text.trim_end_matches(';');
        let items = match text.split_once('{') {
            Some((_, list)) => list.trim_end_matches('}'),
            None => text,
        };
        for item in items.split(',') {
            let item = item.rsplit(" as ").next().unwrap_or(item);
            let Some(name) = item.trim().rsplit("::").next().and_then(ident_prefix) else {
                continue;
            };
            self.names.insert(format!("{module}::{name}"));
            if path.starts_with("src/") {
                self.names.insert(format!("netlessons::{module}::{name}"));
            }
        }
    }

    /// One line of code: a definition, an `impl`, or a member of the block
    /// it is in.
    fn add_line(
        &mut self,
        path: &str,
        code: &str,
        indent: usize,
        owner: Option<(String, Block)>,
        open: &mut Vec<(usize, String, Block)>,
    ) {
        let owner_name = owner.as_ref().map(|(name, _)| name.as_str());
        if let Some((keyword, name)) = definition(code) {
            self.define(path, &name, owner_name);
            if keyword == "macro_rules!" && path.starts_with("src/") {
                self.define(path, &format!("netlessons::{name}"), None);
            }
            let block = match keyword {
                "mod" => Some(Block::Module),
                "trait" => Some(Block::Impl),
                "enum" => Some(Block::Enum),
                "struct" => Some(Block::Struct),
                _ => None,
            };
            if let Some(block) = block.filter(|_| code.ends_with('{')) {
                open.push((indent, name, block));
            }
        } else if let Some(target) = impl_target(code).filter(|_| !code.ends_with('}')) {
            open.push((indent, target, Block::Impl));
        } else if let Some((name, kind)) = owner.filter(|(_, k)| *k != Block::Module) {
            if let Some(member) = member(code, kind) {
                self.define(path, &member, Some(&name));
            }
        }
    }

    fn define(&mut self, path: &str, name: &str, owner: Option<&str>) {
        let mut names = vec![name.to_string()];
        names.extend(owner.map(|owner| format!("{owner}::{name}")));
        for name in names {
            self.names.insert(name.clone());
            self.by_file
                .entry(path.to_string())
                .or_default()
                .insert(name);
        }
    }

    /// Whether a name is defined: by its last two segments if it has more.
    pub(super) fn defines(&self, name: &str) -> bool {
        let segments: Vec<&str> = name.split("::").collect();
        let tail = segments[segments.len().saturating_sub(2)..].join("::");
        self.names.contains(&tail) || self.names.contains(name)
    }

    /// Whether `path` (a file, or a folder ending in `/` or not) holds a
    /// source file of the index.
    pub(super) fn file_exists(&self, path: &str) -> bool {
        let folder = format!("{}/", path.trim_end_matches('/'));
        self.by_file
            .keys()
            .any(|file| file == path || file.starts_with(&folder))
    }

    /// The names defined in `path`, or in any file under it if it is a folder.
    pub(super) fn defined_in(&self, path: &str, name: &str) -> bool {
        let folder = format!("{}/", path.trim_end_matches('/'));
        let segments: Vec<&str> = name.split("::").collect();
        let tail = segments[segments.len().saturating_sub(2)..].join("::");
        self.by_file.iter().any(|(file, names)| {
            (file == path || file.starts_with(&folder)) && names.contains(&tail)
        })
    }

    /// The files of the index called `name` (`spool.rs`), in any folder.
    pub(super) fn files_named(&self, name: &str) -> Vec<&String> {
        let tail = format!("/{name}");
        self.by_file
            .keys()
            .filter(|file| *file == name || file.ends_with(&tail))
            .collect()
    }

    /// Whether some name in the index ends in `name.rs`.
    pub(super) fn has_file_named(&self, name: &str) -> bool {
        !self.files_named(name).is_empty()
    }
}

pub(super) fn is_ident(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `(keyword, name)` if the line defines an item.
fn definition(code: &str) -> Option<(&'static str, String)> {
    const KEYWORDS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "union",
        "macro_rules!",
    ];
    let mut words = code.split_whitespace().peekable();
    if words.peek()?.starts_with("pub") {
        words.next();
    }
    while let Some(word) = words.next() {
        let next = words.peek().copied().unwrap_or("");
        match word {
            "async" | "unsafe" | "extern" | "\"C\"" | "default" => {}
            "const" if matches!(next, "fn" | "unsafe" | "async") => {}
            "static" if next == "mut" => {
                words.next();
                return Some(("static", ident_prefix(words.next()?)?));
            }
            _ => {
                let keyword = KEYWORDS.iter().find(|k| **k == word)?;
                return Some((keyword, ident_prefix(next)?));
            }
        }
    }
    None
}

/// The type an `impl` line is for: `Conn` in `impl<'a> Read for Conn<'a> {`.
fn impl_target(code: &str) -> Option<String> {
    let rest = code.strip_prefix("unsafe ").unwrap_or(code);
    let rest = rest.strip_prefix("impl")?;
    let rest = if let Some(generic) = rest.strip_prefix('<') {
        let mut depth = 1;
        let end = generic.find(|c| {
            depth += match c {
                '<' => 1,
                '>' => -1,
                _ => 0,
            };
            depth == 0
        })?;
        &generic[end + 1..]
    } else {
        rest.strip_prefix(' ')?
    };
    let rest = rest.split(" where").next()?.trim_end_matches('{').trim();
    let ty = rest.rsplit(" for ").next()?;
    let ty = ty.trim_start_matches('&').trim_start_matches("dyn ");
    let ty = ty.split('<').next()?.rsplit("::").next()?;
    ident_prefix(ty)
}

/// A variant of an enum or a field of a struct, on its own line.
fn member(code: &str, kind: Block) -> Option<String> {
    let code = code.strip_prefix("pub(crate) ").unwrap_or(code);
    let code = code.strip_prefix("pub ").unwrap_or(code);
    let name = ident_prefix(code)?;
    let after = &code[name.len()..];
    match kind {
        Block::Enum if name.starts_with(|c: char| c.is_ascii_uppercase()) => Some(name),
        Block::Struct if after.starts_with(':') => Some(name),
        _ => None,
    }
}

fn ident_prefix(word: &str) -> Option<String> {
    let end = word
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(word.len());
    let name = &word[..end];
    is_ident(name).then(|| name.to_string())
}

/// The words the line writes as whole string literals (`"MISSING_DATE"`).
fn quoted_words(code: &str) -> Vec<String> {
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| is_ident(s))
        .map(str::to_string)
        .collect()
}

/// The module a file is: its stem, or its folder's name for `main.rs` and
/// `mod.rs`, or `netlessons` for the library's root.
pub(super) fn module_of(path: &str) -> String {
    if path == "src/lib.rs" {
        return "netlessons".to_string();
    }
    let mut parts = path.trim_end_matches(".rs").rsplit('/');
    let stem = parts.next().unwrap_or("");
    if matches!(stem, "main" | "mod") {
        return parts.next().unwrap_or(stem).to_string();
    }
    stem.to_string()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
