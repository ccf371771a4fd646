//! Reads a crate's module tree from `src/lib.rs` (following `mod` items, inline and in files) and checks
//! every `crate::` / `super::` / `self::` path outside test code against a floor table.
//!
//! The rule: a module may use modules on its own floor and below. The crate root and *hubs* (modules
//! that no table entry covers but whose descendants are covered: `mod.rs` files that only declare and
//! re-export) may use anything. A hub sits on the highest floor of its descendants (a name reached
//! through it is reached through re-exports from any of them); the crate root sits above every floor,
//! so nothing below it may import through its re-exports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// One module of the tree.
#[derive(Debug)]
struct Module {
    /// Source file the module's items are in.
    file: PathBuf,
    /// Whether it has items other than `use`, `mod` and macro invocations (a hub must have none).
    has_code: bool,
}

/// A `crate::`-relative reference from one module to a path.
#[derive(Debug)]
struct Reference {
    from: String,
    to: Vec<String>,
    file: PathBuf,
}

/// The module tree of a crate and every reference its non-test code makes.
#[derive(Debug, Default)]
pub struct CrateModules {
    modules: BTreeMap<String, Module>,
    references: Vec<Reference>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr.meta.require_list().is_ok_and(|list| {
                list.tokens
                    .to_string()
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"'))
                    .any(|word| word == "test")
            })
    })
}

fn join(path: &[String]) -> String {
    path.join("::")
}

impl CrateModules {
    /// Reads the crate whose `src/` is `src`.
    pub fn read(src: &Path) -> Result<Self, String> {
        let mut modules = Self::default();
        modules.read_file(&src.join("lib.rs"), src, Vec::new())?;
        Ok(modules)
    }

    /// `dir` is where the `mod x;` items of this file find `x.rs` / `x/mod.rs`.
    fn read_file(&mut self, file: &Path, dir: &Path, path: Vec<String>) -> Result<(), String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed = syn::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        self.read_items(&parsed.items, file, dir, path)
    }

    fn read_items(
        &mut self,
        items: &[syn::Item],
        file: &Path,
        dir: &Path,
        path: Vec<String>,
    ) -> Result<(), String> {
        let mut has_code = false;
        let mut collector = ReferenceCollector {
            module: &path,
            found: Vec::new(),
        };
        for item in items {
            let attrs: &[syn::Attribute] = match item {
                syn::Item::Mod(m) => &m.attrs,
                syn::Item::Fn(f) => &f.attrs,
                syn::Item::Impl(i) => &i.attrs,
                syn::Item::Use(u) => &u.attrs,
                syn::Item::Struct(s) => &s.attrs,
                syn::Item::Enum(e) => &e.attrs,
                syn::Item::Const(c) => &c.attrs,
                syn::Item::Static(s) => &s.attrs,
                syn::Item::Trait(t) => &t.attrs,
                syn::Item::Type(t) => &t.attrs,
                syn::Item::Macro(m) => &m.attrs,
                _ => &[],
            };
            if is_cfg_test(attrs) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let mut child = path.clone();
                    child.push(m.ident.to_string());
                    match &m.content {
                        Some((_, inner)) => {
                            self.read_items(inner, file, &dir.join(m.ident.to_string()), child)?
                        }
                        None => {
                            let name = m.ident.to_string();
                            let flat = dir.join(format!("{name}.rs"));
                            let nested = dir.join(&name).join("mod.rs");
                            let (child_file, child_dir) = if flat.exists() {
                                (flat, dir.join(&name))
                            } else if nested.exists() {
                                (nested, dir.join(&name))
                            } else {
                                return Err(format!(
                                    "{}: no file for `mod {name};`",
                                    file.display()
                                ));
                            };
                            self.read_file(&child_file, &child_dir, child)?;
                        }
                    }
                }
                syn::Item::Use(u) => collector.visit_item_use(u),
                syn::Item::Macro(m) => collector.visit_item_macro(m),
                other => {
                    has_code = true;
                    collector.visit_item(other);
                }
            }
        }
        let found = std::mem::take(&mut collector.found);
        self.references
            .extend(found.into_iter().map(|to| Reference {
                from: join(&path),
                to,
                file: file.to_path_buf(),
            }));
        self.modules.insert(
            join(&path),
            Module {
                file: file.to_path_buf(),
                has_code,
            },
        );
        Ok(())
    }

    /// Checks every reference against `floors` (lowest first; each entry a module path that covers
    /// itself and its descendants, the longest matching entry wins). Returns one line per violation.
    pub fn check(&self, floors: &[&[&str]]) -> Vec<String> {
        let mut problems = Vec::new();
        let floor_of = |module: &str| -> Option<usize> {
            let mut best: Option<(usize, usize)> = None; // (prefix length, floor)
            for (floor, entries) in floors.iter().enumerate() {
                for entry in entries.iter() {
                    let covers = module == *entry || module.starts_with(&format!("{entry}::"));
                    if covers && best.is_none_or(|(len, _)| entry.len() > len) {
                        best = Some((entry.len(), floor));
                    }
                }
            }
            best.map(|(_, floor)| floor)
        };
        for (floors_entry_floor, entries) in floors.iter().enumerate() {
            for entry in entries.iter() {
                if !self.modules.contains_key(*entry) {
                    problems.push(format!(
                        "floor {floors_entry_floor} lists `{entry}`, which is no module"
                    ));
                }
            }
        }
        for (name, module) in &self.modules {
            if name.is_empty() || floor_of(name).is_some() {
                continue;
            }
            let covered_below = self
                .modules
                .keys()
                .any(|m| m.starts_with(&format!("{name}::")) && floor_of(m).is_some());
            if !covered_below {
                problems.push(format!(
                    "module `{name}` ({}) is on no floor",
                    module.file.display()
                ));
            } else if module.has_code {
                problems.push(format!(
                    "module `{name}` ({}) is on no floor but has code of its own: list it on a floor",
                    module.file.display()
                ));
            }
        }
        for reference in &self.references {
            let target = self.target_module(&reference.to);
            let from_floor = floor_of(&reference.from);
            let Some(from_floor) = from_floor else {
                continue; // the root or a hub: may use anything
            };
            let is_self_or_descendant =
                target == reference.from || target.starts_with(&format!("{}::", reference.from));
            if is_self_or_descendant {
                continue;
            }
            let target_floor = floor_of(&target).or_else(|| self.hub_floor(&target, &floor_of));
            match target_floor {
                Some(to_floor) if to_floor <= from_floor => {}
                Some(to_floor) => problems.push(format!(
                    "`{}` (floor {from_floor}, {}) uses `crate::{}`, in `{target}` on floor {to_floor} above it",
                    reference.from,
                    reference.file.display(),
                    join(&reference.to),
                )),
                None => problems.push(format!(
                    "`{}` (floor {from_floor}, {}) uses `crate::{}` through the re-exports of `{}`",
                    reference.from,
                    reference.file.display(),
                    join(&reference.to),
                    if target.is_empty() { "the crate root" } else { &target },
                )),
            }
        }
        problems
    }

    /// The floor of a hub: the highest floor of its descendants (`None` for the root).
    fn hub_floor(&self, hub: &str, floor_of: &dyn Fn(&str) -> Option<usize>) -> Option<usize> {
        if hub.is_empty() {
            return None;
        }
        let prefix = format!("{hub}::");
        self.modules
            .keys()
            .filter(|m| m.starts_with(&prefix))
            .filter_map(|m| floor_of(m))
            .max()
    }

    /// The longest prefix of `path` that is a module.
    fn target_module(&self, path: &[String]) -> String {
        (0..=path.len())
            .rev()
            .map(|len| join(&path[..len]))
            .find(|candidate| self.modules.contains_key(candidate))
            .unwrap_or_default()
    }

    /// A readable list of the modules found, for failure messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for name in self.modules.keys() {
            let _ = writeln!(out, "  {}", if name.is_empty() { "(root)" } else { name });
        }
        out
    }
}

/// Collects the crate-relative paths used by one module's items (not descending into inline modules,
/// which `read_items` visits on their own, and skipping `#[cfg(test)]` items and visibilities).
struct ReferenceCollector<'a> {
    module: &'a [String],
    found: Vec<Vec<String>>,
}

impl ReferenceCollector<'_> {
    /// Resolves `crate::` / `super::` / `self::` to a crate-relative path; `None` for other paths.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let mut current: Vec<String> = self.module.to_vec();
        let mut rest = segments;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                current.clear();
                rest = &rest[1..];
            }
            Some("super") | Some("self") => {}
            _ => return None,
        }
        while let Some(first) = rest.first() {
            match first.as_str() {
                "super" => {
                    current.pop()?;
                }
                "self" => {}
                _ => break,
            }
            rest = &rest[1..];
        }
        current.extend(rest.iter().cloned());
        Some(current)
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push_use(prefix, Some(n.ident.to_string())),
            syn::UseTree::Rename(r) => self.push_use(prefix, Some(r.ident.to_string())),
            syn::UseTree::Glob(_) => self.push_use(prefix, None),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    fn push_use(&mut self, prefix: &[String], last: Option<String>) {
        let mut path = prefix.to_vec();
        // `use super::{self, x}`: `self` names the prefix itself
        if let Some(last) = last.filter(|l| l != "self") {
            path.push(last);
        }
        if let Some(resolved) = self.resolve(&path) {
            self.found.push(resolved);
        }
    }
}

impl<'ast> Visit<'ast> for ReferenceCollector<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            if let Some(resolved) = self.resolve(&segments) {
                self.found.push(resolved);
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }
}
