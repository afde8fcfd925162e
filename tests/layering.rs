//! The layering of `src/` (docs/design.md, "Layers"), checked so that it
//! cannot erode silently:
//!
//! - `shape/` (one shape in memory) imports nothing from `log/`, `store/`
//!   or the flush tracker;
//! - `log/` (one shape on disk) imports nothing from `shape/`, `store/` or
//!   the flush tracker;
//! - the flush tracker (usable without a store) imports no layer;
//! - the shared vocabulary at the root (`entry`, `durable`, `offset`,
//!   `error`, `id`, `sync`, `fs/`) imports no layer;
//! - no two files import each other, directly or through others (no
//!   circle).
//!
//! An import is any path in code (comments are skipped) that names another
//! file's module: `use` trees (`crate::`, `super::`, a child module) and
//! paths such as `crate::log::record::MAX_BODY`. A name re-exported by
//! `lib.rs` (`crate::Error`) counts as an import of the file that defines
//! it. `super::` on an indented line is taken to be inside an inline module
//! (`mod tests`), so it names the file itself. A parent's `mod child;`
//! declaration is not an import.
//!
//! Run with `--nocapture` to see the counts (files, edges, levels).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// A source file: its module path (`["store", "inner"]`) and its text.
struct File {
    module: Vec<String>,
    text: String,
}

/// Files by module path, joined with `::` (`""` for lib.rs).
type Tree = BTreeMap<String, File>;

fn load(src: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(src).unwrap().to_path_buf();
            if path.is_dir() {
                if rel.starts_with("bin") {
                    continue;
                }
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|l| l == "mod" || l == "lib") {
                module.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            tree.insert(module.join("::"), File { module, text });
        }
    }
    tree
}

/// The text without comments (line comments, doc comments, block
/// comments) and string literals' contents.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i..].starts_with(b"'\"'") {
            // The character literal '"'.
            out.push_str("' '");
            i += 3;
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |s| format!("{prefix}{s}")))
        .collect()
}

/// The file a path names, if any: the longest prefix of `segments` that is
/// a file's module, followed through that file's re-exports (`pub use`) of
/// the next name; a name re-exported at the root (`crate::Error`) is
/// followed the same way.
fn resolve(tree: &Tree, reexports: &Reexports, segments: &[String]) -> Option<String> {
    for n in (1..=segments.len()).rev() {
        let key = segments[..n].join("::");
        if tree.contains_key(&key) {
            if let Some(next) = segments.get(n) {
                if let Some(origin) = reexports.get(&(key.clone(), next.clone())) {
                    return Some(origin.clone());
                }
            }
            return Some(key);
        }
    }
    let first = segments.first()?;
    reexports.get(&(String::new(), first.clone())).cloned()
}

/// `(file, name)` -> the file a `pub use` in `file` takes `name` from.
type Reexports = BTreeMap<(String, String), String>;

/// Paths a file names, as absolute module paths (without `crate`).
fn paths(file: &File, tree: &Tree) -> Vec<Vec<String>> {
    let code = code(&file.text);
    let children: BTreeSet<String> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("pub(crate) ")
                .or(l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect();
    let absolute = |indented: bool, path: &str| -> Option<Vec<String>> {
        let segs: Vec<String> = path.split("::").map(str::to_string).collect();
        let first = segs.first()?.as_str();
        match first {
            "crate" => Some(segs[1..].to_vec()),
            "super" if indented => Some(file.module.clone()),
            "super" => {
                let mut m = file.module.clone();
                // A file `a/b.rs` or `a/b/mod.rs` is module `a::b`; its
                // parent is `a`.
                m.pop();
                let mut rest = &segs[1..];
                while rest.first().is_some_and(|s| s == "super") {
                    m.pop();
                    rest = &rest[1..];
                }
                m.extend(rest.iter().cloned());
                Some(m)
            }
            "self" => Some(file.module.clone()),
            c if children.contains(c) => {
                let mut m = file.module.clone();
                m.extend(segs.iter().cloned());
                Some(m)
            }
            _ => None,
        }
    };
    let mut out = Vec::new();
    // `use` statements (possibly over several lines).
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let prefix = &before[line_start..];
        let is_use =
            prefix.trim().is_empty() || prefix.trim() == "pub" || prefix.trim().starts_with("pub(");
        let indented = prefix.starts_with(' ') || prefix.starts_with('\t');
        let tail = &rest[at + 4..];
        let end = tail.find(';').unwrap_or(tail.len());
        if is_use && (at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric()) {
            for p in expand(&tail[..end]) {
                let p = p
                    .split(" as ")
                    .next()
                    .unwrap_or(&p)
                    .trim_end_matches("::*")
                    .to_string();
                let p = p.strip_suffix("::self").unwrap_or(&p).to_string();
                if let Some(abs) = absolute(indented, &p) {
                    out.push(abs);
                }
            }
        }
        rest = &tail[end.min(tail.len())..];
    }
    // Paths in code: `crate::a::b`.
    for (i, _) in code.match_indices("crate::") {
        let tail = &code[i..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let p = tail[..end].trim_end_matches(':');
        if let Some(abs) = absolute(false, p) {
            out.push(abs);
        }
    }
    let _ = tree;
    out
}

/// Every file's re-exports, each mapped to the file its name comes from.
fn reexports(tree: &Tree) -> Reexports {
    let mut map = Reexports::new();
    for (name, file) in tree {
        for stmt in code(&file.text).split(';') {
            let s = stmt.trim();
            let Some(text) = s
                .strip_prefix("pub use ")
                .or(s.strip_prefix("pub(crate) use "))
            else {
                continue;
            };
            for p in expand(text) {
                let p = p.split(" as ").next().unwrap_or(&p).to_string();
                let mut segs: Vec<String> = p.split("::").map(str::to_string).collect();
                let item = segs.pop().unwrap_or_default();
                if segs.first().is_some_and(|s| s == "crate") {
                    segs.remove(0);
                } else {
                    let mut m = file.module.clone();
                    m.extend(segs);
                    segs = m;
                }
                if let Some(origin) = resolve(tree, &Reexports::new(), &segs) {
                    map.insert((name.clone(), item), origin);
                }
            }
        }
    }
    // Follow chains (lib.rs -> store/mod.rs -> store/inner.rs), boundedly.
    for _ in 0..8 {
        let next: Reexports = map
            .iter()
            .map(|((f, item), origin)| {
                let o = map.get(&(origin.clone(), item.clone())).unwrap_or(origin);
                ((f.clone(), item.clone()), o.clone())
            })
            .collect();
        if next == map {
            break;
        }
        map = next;
    }
    map
}

/// The import graph: file -> files it imports (self edges dropped).
fn graph(tree: &Tree) -> BTreeMap<String, BTreeSet<String>> {
    let re = reexports(tree);
    tree.iter()
        .map(|(name, file)| {
            let deps = paths(file, tree)
                .iter()
                .filter_map(|p| resolve(tree, &re, p))
                .filter(|d| d != name && !d.is_empty())
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

/// Which layer a file belongs to.
fn layer(module: &str) -> &'static str {
    match module.split("::").next().unwrap_or("") {
        "" => "lib",
        "shape" => "shape",
        "log" => "log",
        "store" => "store",
        "flush_tracker" => "flush_tracker",
        "loom_api" => "lib",
        _ => "shared",
    }
}

/// The layers a layer may not import.
fn forbidden(from: &str) -> &'static [&'static str] {
    match from {
        "shape" => &["log", "store", "flush_tracker", "lib"],
        "log" => &["shape", "store", "flush_tracker", "lib"],
        "flush_tracker" => &["shape", "log", "store", "lib"],
        "shared" => &["shape", "log", "store", "flush_tracker", "lib"],
        "store" => &["lib"],
        _ => &[],
    }
}

/// Every rule broken: upward imports and circles.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, deps) in graph {
        for to in deps {
            if forbidden(layer(from)).contains(&layer(to)) {
                bad.push(format!(
                    "{from} imports {to} ({} may not import {})",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    // Circles: a depth-first search that finds a back edge.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        bad: &mut Vec<String>,
    ) {
        state.insert(n, 1);
        path.push(n);
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let at = path.iter().position(|p| p == d).unwrap_or(0);
                    bad.push(format!("circle: {} -> {d}", path[at..].join(" -> ")));
                }
                Some(_) => {}
                None => visit(d, g, state, path, bad),
            }
        }
        path.pop();
        state.insert(n, 2);
    }
    for n in graph.keys() {
        if !state.contains_key(n.as_str()) {
            visit(n, graph, &mut state, &mut Vec::new(), &mut bad);
        }
    }
    bad
}

/// The longest import chain (levels), for a graph without circles.
fn levels(graph: &BTreeMap<String, BTreeSet<String>>) -> usize {
    fn depth(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        memo: &mut BTreeMap<String, usize>,
    ) -> usize {
        if let Some(&d) = memo.get(n) {
            return d;
        }
        memo.insert(n.to_string(), 0);
        let d = 1 + g
            .get(n)
            .into_iter()
            .flatten()
            .map(|x| depth(x, g, memo))
            .max()
            .unwrap_or(0);
        memo.insert(n.to_string(), d);
        d
    }
    let mut memo = BTreeMap::new();
    graph
        .keys()
        .map(|n| depth(n, graph, &mut memo))
        .max()
        .unwrap_or(0)
}

#[test]
fn layers_import_one_way_and_no_file_imports_in_a_circle() {
    // SHAPEBUF_LAYERING_SRC points the check at another tree (an old
    // checkout's src/, to compare the counts).
    let src = std::env::var_os("SHAPEBUF_LAYERING_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        Into::into,
    );
    let tree = load(&src);
    let g = graph(&tree);
    let edges: usize = g.values().map(BTreeSet::len).sum();
    let top = fs::read_dir(&src)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "rs")
        })
        .count();
    println!(
        "layering: {} files ({top} at the top of src/), {edges} import edges, {} levels",
        tree.len(),
        levels(&g)
    );
    let bad = violations(&g);
    println!(
        "layering: {} circles, {} upward imports",
        bad.iter().filter(|b| b.starts_with("circle")).count(),
        bad.iter().filter(|b| !b.starts_with("circle")).count()
    );
    // The check sees the imports it must see (it is not vacuous).
    assert!(
        g["shape::reader"].contains("shape::buffer"),
        "{:?}",
        g["shape::reader"]
    );
    assert!(
        g["store::writer"].contains("store::inner"),
        "{:?}",
        g["store::writer"]
    );
    assert!(g["log::record"].contains("id"), "{:?}", g["log::record"]);
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

/// The check fails on a deliberate upward import and on a circle.
#[test]
fn an_upward_import_or_a_circle_is_caught() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut tree = load(&src);
    // `shape/reader.rs` reaching the disk side, as it did before the layers.
    tree.get_mut("shape::reader")
        .unwrap()
        .text
        .push_str("\nuse crate::log::ShapeLog;\n");
    let bad = violations(&graph(&tree));
    assert!(
        bad.iter().any(|b| b.contains("shape::reader imports log")),
        "{bad:?}"
    );
    // The same through a group and `super::` from a nested file.
    let mut tree = load(&src);
    tree.get_mut("log::file")
        .unwrap()
        .text
        .push_str("\nuse crate::{store::slot::Slot, LogOffset};\n");
    tree.get_mut("flush_tracker::model")
        .unwrap()
        .text
        .push_str("\nuse super::super::shape::buffer;\n");
    let bad = violations(&graph(&tree));
    assert!(
        bad.iter()
            .any(|b| b.contains("log::file imports store::slot")),
        "{bad:?}"
    );
    assert!(
        bad.iter()
            .any(|b| b.contains("flush_tracker::model imports shape::buffer")),
        "{bad:?}"
    );
    // A circle inside one layer: the writer reaching back into the store's
    // public face.
    let mut tree = load(&src);
    tree.get_mut("store::inner")
        .unwrap()
        .text
        .push_str("\nfn f(_: &crate::store::writer::ShapeWriter) {}\n");
    let bad = violations(&graph(&tree));
    assert!(bad.iter().any(|b| b.starts_with("circle")), "{bad:?}");
}
