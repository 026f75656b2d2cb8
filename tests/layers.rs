//! The crate's layers, checked from its source: imports flow one way, from the facade down
//! (facade, engine, spill, log, leaves), and no set of modules imports itself in a circle.
//! Test code (modules under `#[cfg(test)]`) is left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may import only from layers below its own.
fn layer(top: &str) -> Option<u8> {
    Some(match top {
        "queue" | "builder" | "delivery" | "inspect" | "futures" | "bin" => 4,
        "engine" => 3,
        "spill" => 2,
        "log" => 1,
        "config" | "codec" | "error" | "sys" | "wake" => 0,
        _ => return None,
    })
}

/// The module path of a source file: `src/log/reader.rs` is `log::reader`, `src/log/mod.rs`
/// is `log`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Modules declared under `#[cfg(test)]` in `code` (`#[cfg(test)] mod name;`).
fn test_modules(code: &str) -> Vec<String> {
    let lines: Vec<&str> = code.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "#[cfg(test)]")
        .filter_map(|w| {
            let declaration = w[1]
                .trim_start_matches("pub(crate) ")
                .strip_prefix("mod ")?;
            Some(declaration.trim_end_matches(';').to_string())
        })
        .collect()
}

/// The code of a file without its inline test module (`#[cfg(test)] mod tests { ... }`,
/// conventionally last) and without comments.
fn production_code(code: &str) -> String {
    let mut kept = Vec::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            break;
        }
        let line = line.split("//").next().unwrap_or_default();
        kept.push(line);
    }
    kept.join("\n")
}

/// The modules `code` (in module `module`) refers to: `crate::a::b` and `super::c` paths,
/// resolved to their first two segments from the crate root.
fn references(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("crate::") || w.starts_with("super::"))
        .collect();
    for word in words {
        let mut parts: Vec<&str> = word.split("::").filter(|p| !p.is_empty()).collect();
        let mut base: Vec<String> = if parts.first() == Some(&"crate") {
            parts.remove(0);
            Vec::new()
        } else {
            module.to_vec()
        };
        while parts.first() == Some(&"super") {
            parts.remove(0);
            base.pop();
        }
        base.extend(parts.iter().map(|p| p.to_string()));
        base.truncate(2);
        // Items of a layer's root module (`crate::log::Counters`) name that module.
        if base.len() == 2 && base[1].starts_with(|c: char| c.is_uppercase()) {
            base.truncate(1);
        }
        if !base.is_empty() {
            found.insert(base);
        }
    }
    found
}

#[test]
fn imports_flow_down_the_layers_and_no_modules_import_each_other_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    // Modules that are test code, as their parents declare them.
    let mut tests: BTreeSet<Vec<String>> = BTreeSet::new();
    for file in &files {
        let module = module_of(&src, file);
        for name in test_modules(&std::fs::read_to_string(file).unwrap()) {
            let mut child = module.clone();
            child.push(name);
            tests.insert(child);
        }
    }
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module.is_empty() || tests.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let code = production_code(&std::fs::read_to_string(file).unwrap());
        let from_layer = layer(&module[0]);
        for target in references(&module, &code) {
            if tests.contains(&target) || target == module {
                continue;
            }
            if target[0] != module[0] {
                let to_layer = layer(&target[0]);
                if let (Some(from), Some(to)) = (from_layer, to_layer)
                    && to > from
                {
                    upward.push(format!(
                        "{} (layer {from}) imports {} (layer {to})",
                        module.join("::"),
                        target.join("::")
                    ));
                }
            }
            // Within a layer, a parent re-exporting its children is not a dependency.
            if !(target.starts_with(&module) && target.len() > module.len()) {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
    assert!(graph.len() > 10, "the source was not read: {graph:?}");
    // A circle: a depth-first search that meets a module still on its path.
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle: Vec<String> = path[at..].iter().map(|m| m.join("::")).collect();
            circle.push(node.join("::"));
            return Some(circle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let circle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            circle.is_none(),
            "modules import each other in a circle: {circle:?}"
        );
    }
}
