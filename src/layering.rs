//! The modules form layers: a top-level module may use only modules below it, so each can
//! be read, and changed, knowing only what is under it. Checked here over the source, as a
//! unit test: a `crate::x` path (outside comments) in a file under `src/a` is an edge a → x,
//! and the edges must have no cycle. The same edges, for a reader:
//! `grep -rE --include='*.rs' -o 'crate::[a-z_]+' src`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules that must use no other module of pgweir's.
const LEAVES: &[&str] = &["budget", "error", "hba", "secret", "shutdown", "sql"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every top-level module and the top-level modules it names.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path).expect("src/ is readable");
            files.extend(entries.map(|e| e.expect("a directory entry").path()));
            continue;
        }
        let relative = path.strip_prefix(&src).expect("under src/");
        let Some(module) = top_module(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("a source file");
        let uses = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

/// `client` for `client/relay.rs`, `cancel` for `cancel.rs`; `None` for the crate root
/// and the binary, which sit above everything.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    let is_rust = relative.extension().is_some_and(|e| e == "rs");
    (is_rust && !matches!(name, "lib" | "main" | "layering")).then(|| name.to_owned())
}

/// A cycle through `start`, if there is one: the modules along it.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![next.clone()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_module_uses_a_module_that_uses_it() {
    let graph = graph();
    assert!(graph.len() > 20, "found only {:?}", graph.keys());
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn leaves_use_no_other_module() {
    let graph = graph();
    for leaf in LEAVES {
        let uses = graph.get(*leaf).expect("a leaf module exists");
        assert!(uses.is_empty(), "{leaf} uses {uses:?}");
    }
}
