//! The layers import one way only: the sans-IO core (`node`, the wire
//! format included) imports no other layer, and the graph of imports
//! between the library's top-level modules and the binary's `cli` has no
//! cycle. Read from the sources, so a
//! new `use crate::...` that breaks the layering fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LAYERS: [&str; 4] = ["node", "runtime", "api", "cli"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable source dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The layers each layer's code names through `crate::LAYER`.
fn imports() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for layer in LAYERS {
        let mut files = Vec::new();
        let dir = src.join(layer);
        sources(&dir, &mut files);
        let single = src.join(format!("{layer}.rs"));
        if single.exists() {
            files.push(single);
        }
        assert!(!files.is_empty(), "no sources for the {layer} layer");
        let edges = graph.entry(layer).or_default();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable source");
            for other in LAYERS.iter().filter(|&&o| o != layer) {
                // The binary (`src/cli`) names the library as `roster::`.
                let named = ["crate", "roster"].iter().any(|root| {
                    [":", "}", ";"]
                        .iter()
                        .any(|end| text.contains(&format!("{root}::{other}{end}")))
                });
                if named {
                    edges.insert(other);
                }
            }
            // The wire format lives in the core; the old top-level path is
            // a re-export for users, not for the library's own code.
            assert!(
                !text.contains("crate::wire"),
                "{} names crate::wire; use crate::node::wire",
                f.display()
            );
        }
    }
    graph
}

fn cycle_from<'a>(
    graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    at: &'a str,
    path: &mut Vec<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(i) = path.iter().position(|&p| p == at) {
        let mut c = path[i..].to_vec();
        c.push(at);
        return Some(c);
    }
    path.push(at);
    for &next in graph.get(at).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, next, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn the_core_imports_no_other_layer_and_layers_form_no_cycle() {
    let graph = imports();
    for (layer, edges) in &graph {
        println!("{layer} -> {edges:?}");
    }
    assert!(
        graph["node"].is_empty(),
        "the sans-IO core imports {:?}",
        graph["node"]
    );
    for layer in LAYERS {
        if let Some(c) = cycle_from(&graph, layer, &mut Vec::new()) {
            panic!("import cycle between layers: {}", c.join(" -> "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut graph = imports();
    graph.entry("node").or_default().insert("cli");
    let found = LAYERS
        .iter()
        .find_map(|l| cycle_from(&graph, l, &mut Vec::new()));
    assert!(found.is_some(), "a planted node -> cli edge went unnoticed");
}
