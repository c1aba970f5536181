//! `cargo xtask tidy`: structural checks on the workspace.
//!
//! Every check is a plain function returning `Err` with a readable list of violations.
//! [`run`] runs them all and prints the result; the `#[test]`s at the bottom run each one,
//! so `cargo test --workspace` enforces them as well. The parts that decide (walking the
//! dependency graph, reading a manifest, scanning a source file) are pure functions with
//! their own unit tests on small hand-written inputs, so each check provably can fail.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, workspace_root};

/// The crate that must stay free of IO.
const PURE_CRATE: &str = "port-core";

/// Packages that mean IO, a runtime or an HTTP/database stack.
const IO_PACKAGES: &[&str] = &[
    "tokio",
    "axum",
    "axum-core",
    "hyper",
    "reqwest",
    "sqlx",
    "sqlx-core",
    "rusqlite",
    "libsqlite3-sys",
    "tower",
    "tower-http",
    "mio",
];

/// The only workspace members allowed to depend on axum directly. `port-bench` is the
/// benchmark harness (`cargo xtask bench`, never published): its bare axum baseline must
/// be built with the same framework portd is measured against, and its loopback webhook
/// receiver is an axum server too; no library crate depends on it.
const AXUM_USERS: &[&str] = &["port-server", "port-webhook", "port-bench"];

/// The manifest sections that declare dependencies.
const DEPENDENCY_SECTIONS: &[&str] = &["dependencies", "dev-dependencies", "build-dependencies"];

type Check = fn() -> Result<()>;

/// Every check, by the name of the test that runs it.
const CHECKS: &[(&str, Check)] = &[
    (
        "port_core_has_no_io_dependencies",
        port_core_has_no_io_dependencies,
    ),
    ("only_server_crate_knows_axum", only_server_crate_knows_axum),
    (
        "every_crate_uses_workspace_lints",
        every_crate_uses_workspace_lints,
    ),
    ("no_ignored_tests", no_ignored_tests),
    (
        "dependency_versions_live_in_the_workspace",
        dependency_versions_live_in_the_workspace,
    ),
];

pub(crate) fn run() -> Result<()> {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        match check() {
            Ok(()) => println!("tidy: {name} ... ok"),
            Err(error) => {
                println!("tidy: {name} ... FAILED\n{error:#}\n");
                failed.push(*name);
            }
        }
    }
    let passed = CHECKS.len() - failed.len();
    println!("\ntidy: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("tidy checks failed: {}", failed.join(", "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The checks.

fn port_core_has_no_io_dependencies() -> Result<()> {
    let feature_sets: [&[&str]; 2] = [&[], &["--features", "port-core/testing"]];
    let mut problems = String::new();
    for extra in feature_sets {
        let graph = DependencyGraph::from_metadata(&cargo_metadata(extra)?)?;
        let paths = graph.forbidden_paths(PURE_CRATE, IO_PACKAGES)?;
        if !paths.is_empty() {
            let features = if extra.is_empty() {
                "default features".to_owned()
            } else {
                extra.join(" ")
            };
            let _ = writeln!(
                problems,
                "{PURE_CRATE} reaches IO packages through normal dependencies ({features}):"
            );
            for path in paths {
                let _ = writeln!(problems, "  {}", path.join(" -> "));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{problems}");
    }
    Ok(())
}

fn only_server_crate_knows_axum() -> Result<()> {
    let graph = DependencyGraph::from_metadata(&cargo_metadata(&["--all-features"])?)?;
    let offenders: Vec<String> = graph
        .members_depending_directly_on("axum")
        .into_iter()
        .filter(|member| !AXUM_USERS.contains(&member.as_str()))
        .collect();
    if !offenders.is_empty() {
        bail!(
            "only {} may depend on axum, but these members do too: {}",
            AXUM_USERS.join(", "),
            offenders.join(", ")
        );
    }
    Ok(())
}

fn every_crate_uses_workspace_lints() -> Result<()> {
    let mut problems = Vec::new();
    for (name, manifest) in member_manifests()? {
        if !uses_workspace_lints(&manifest) {
            problems.push(format!("{name}: add `[lints]` with `workspace = true`"));
        }
    }
    report(problems)
}

fn no_ignored_tests() -> Result<()> {
    let needle = ignore_attribute();
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        collect_rust_files(&root.join(dir), &mut files)?;
    }
    let mut problems = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for line in lines_containing(&text, &needle) {
            problems.push(format!(
                "{shown}:{line}: ignored test (fix it or delete it instead)"
            ));
        }
    }
    report(problems)
}

fn dependency_versions_live_in_the_workspace() -> Result<()> {
    let mut problems = Vec::new();
    for (name, manifest) in member_manifests()? {
        for problem in non_workspace_dependencies(&manifest) {
            problems.push(format!("{name}: {problem}"));
        }
    }
    report(problems)
}

fn report(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Cargo metadata and the resolved dependency graph.

fn cargo_metadata(extra_args: &[&str]) -> Result<Value> {
    let output = cargo()
        .args(["metadata", "--format-version", "1"])
        .args(extra_args)
        .output()
        .context("could not run `cargo metadata`")?;
    if !output.status.success() {
        bail!(
            "`cargo metadata {}` failed ({}):\n{}",
            extra_args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")
}

/// The resolved package graph from `cargo metadata`, keeping only what the checks need.
#[derive(Debug)]
struct DependencyGraph {
    /// Package id to package name.
    names: HashMap<String, String>,
    /// Ids of the workspace members.
    members: Vec<String>,
    /// Package id to the ids of its normal (not dev, not build) dependencies, on any
    /// platform.
    normal_deps: HashMap<String, Vec<String>>,
}

impl DependencyGraph {
    fn from_metadata(metadata: &Value) -> Result<Self> {
        let mut names = HashMap::new();
        for package in array(metadata, "packages")? {
            names.insert(string(package, "id")?, string(package, "name")?);
        }
        let members = array(metadata, "workspace_members")?
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .context("a workspace member id is not a string")
            })
            .collect::<Result<Vec<_>>>()?;
        let resolve = metadata
            .get("resolve")
            .filter(|resolve| !resolve.is_null())
            .context("`cargo metadata` output has no `resolve` (was --no-deps passed?)")?;
        let mut normal_deps = HashMap::new();
        for node in array(resolve, "nodes")? {
            let mut deps = Vec::new();
            for dep in array(node, "deps")? {
                let normal = array(dep, "dep_kinds")?
                    .iter()
                    .any(|kind| kind.get("kind").is_none_or(Value::is_null));
                if normal {
                    deps.push(string(dep, "pkg")?);
                }
            }
            normal_deps.insert(string(node, "id")?, deps);
        }
        Ok(Self {
            names,
            members,
            normal_deps,
        })
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    fn member_id(&self, name: &str) -> Result<&str> {
        self.members
            .iter()
            .find(|id| self.name(id) == name)
            .map(String::as_str)
            .with_context(|| format!("`{name}` is not a workspace member"))
    }

    /// For each forbidden package reachable from workspace member `root` through normal
    /// dependencies, one shortest path to it (package names, `root` first), sorted.
    fn forbidden_paths(&self, root: &str, forbidden: &[&str]) -> Result<Vec<Vec<String>>> {
        let start = self.member_id(root)?;
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut seen: BTreeSet<&str> = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        while let Some(id) = queue.pop_front() {
            let name = self.name(id);
            if id != start && forbidden.contains(&name) && !found.contains_key(name) {
                let mut path = vec![name.to_owned()];
                let mut at = id;
                while let Some(&up) = parent.get(at) {
                    path.push(self.name(up).to_owned());
                    at = up;
                }
                path.reverse();
                found.insert(name.to_owned(), path);
            }
            for dep in self.normal_deps.get(id).into_iter().flatten() {
                if seen.insert(dep.as_str()) {
                    parent.insert(dep.as_str(), id);
                    queue.push_back(dep);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// The names of the workspace members with a direct normal dependency on `package`,
    /// sorted.
    fn members_depending_directly_on(&self, package: &str) -> Vec<String> {
        let mut members: Vec<String> = self
            .members
            .iter()
            .filter(|id| {
                self.normal_deps
                    .get(id.as_str())
                    .into_iter()
                    .flatten()
                    .any(|dep| self.name(dep) == package)
            })
            .map(|id| self.name(id).to_owned())
            .collect();
        members.sort();
        members
    }
}

fn array<'a>(value: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    value
        .get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("`cargo metadata` output: `{key}` is not an array"))
}

fn string(value: &Value, key: &str) -> Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("`cargo metadata` output: `{key}` is not a string"))
}

// ---------------------------------------------------------------------------------------
// Member manifests.

/// Every workspace member's name and parsed `Cargo.toml`, sorted by name.
fn member_manifests() -> Result<Vec<(String, toml::Table)>> {
    let metadata = cargo_metadata(&["--no-deps"])?;
    let members: BTreeSet<&str> = array(&metadata, "workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut manifests = Vec::new();
    for package in array(&metadata, "packages")? {
        if !members.contains(string(package, "id")?.as_str()) {
            continue;
        }
        let path = PathBuf::from(string(package, "manifest_path")?);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        manifests.push((string(package, "name")?, manifest));
    }
    manifests.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(manifests)
}

/// Whether the manifest has `[lints]` with `workspace = true`.
fn uses_workspace_lints(manifest: &toml::Table) -> bool {
    manifest
        .get("lints")
        .and_then(|lints| lints.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true)
}

/// Every dependency in the manifest (in any section, including `[target.'cfg'.*]`) that is
/// not declared with `workspace = true`, described.
fn non_workspace_dependencies(manifest: &toml::Table) -> Vec<String> {
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    for &section in DEPENDENCY_SECTIONS {
        if let Some(table) = manifest.get(section).and_then(toml::Value::as_table) {
            tables.push((format!("[{section}]"), table));
        }
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (target, value) in targets {
            for &section in DEPENDENCY_SECTIONS {
                if let Some(table) = value.get(section).and_then(toml::Value::as_table) {
                    tables.push((format!("[target.'{target}'.{section}]"), table));
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (section, table) in tables {
        for (name, spec) in table {
            let inherited = spec
                .get("workspace")
                .and_then(toml::Value::as_bool)
                .unwrap_or(false);
            if !inherited {
                problems.push(format!(
                    "{section} `{name}` must be `{name}.workspace = true`; \
                     declare it in the root [workspace.dependencies]"
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// Source files.

/// The attribute that ignores a test, assembled so that this file does not contain it.
fn ignore_attribute() -> String {
    ["#[", "ignore"].concat()
}

/// The 1-based numbers of the lines of `text` that contain `needle`.
fn lines_containing(text: &str, needle: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(index, _)| index + 1)
        .collect()
}

/// Every `.rs` file under `dir` (none if it does not exist), skipping `target` folders
/// and hidden ones.
fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, files)?;
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests: the real checks, then the pure parts on hand-written inputs.

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn port_core_has_no_io_dependencies() -> Result<()> {
        super::port_core_has_no_io_dependencies()
    }

    #[test]
    fn only_server_crate_knows_axum() -> Result<()> {
        super::only_server_crate_knows_axum()
    }

    #[test]
    fn every_crate_uses_workspace_lints() -> Result<()> {
        super::every_crate_uses_workspace_lints()
    }

    #[test]
    fn no_ignored_tests() -> Result<()> {
        super::no_ignored_tests()
    }

    #[test]
    fn dependency_versions_live_in_the_workspace() -> Result<()> {
        super::dependency_versions_live_in_the_workspace()
    }

    #[test]
    fn the_real_walk_sees_port_cores_dependencies() -> Result<()> {
        // Guards the real check against passing vacuously (say, if ids stopped matching):
        // the same walk must see a dependency port-core is known to have.
        let graph = DependencyGraph::from_metadata(&cargo_metadata(&[])?)?;
        let paths = graph.forbidden_paths(PURE_CRATE, &["serde"])?;
        assert_eq!(paths, vec![vec![PURE_CRATE, "serde"]]);
        Ok(())
    }

    /// A `cargo metadata` resolve edge.
    fn dep(pkg: &str, kinds: &[Option<&str>]) -> Value {
        let kinds: Vec<Value> = kinds
            .iter()
            .map(|kind| json!({ "kind": kind, "target": null }))
            .collect();
        json!({ "name": pkg.replace('-', "_"), "pkg": id(pkg), "dep_kinds": kinds })
    }

    fn id(name: &str) -> String {
        format!("registry+https://github.com/rust-lang/crates.io-index#{name}@1.0.0")
    }

    /// A small workspace in `cargo metadata`'s shape:
    ///
    /// - `port-core` -> `futures` -> `mio` (normal, so forbidden and reached transitively);
    ///   `port-core` -> `tokio` only as a dev-dependency and `hyper` only as a build
    ///   dependency (neither counts); `port-core` -> `serde` as both dev and normal.
    /// - `port-server` -> `axum` -> `tokio`; `port-cli` -> `axum` as a dev-dependency;
    ///   `port-client` -> `axum` directly (not allowed).
    fn fixture() -> Value {
        let node = |name: &str, deps: Vec<Value>| json!({ "id": id(name), "deps": deps });
        let names = [
            "port-core",
            "port-server",
            "port-cli",
            "port-client",
            "futures",
            "mio",
            "tokio",
            "hyper",
            "serde",
            "axum",
        ];
        let normal = [None];
        json!({
            "packages": names.iter().map(|name| json!({ "id": id(name), "name": name }))
                .collect::<Vec<_>>(),
            "workspace_members": [id("port-core"), id("port-server"), id("port-cli"),
                id("port-client")],
            "resolve": {
                "root": null,
                "nodes": [
                    node("port-core", vec![
                        dep("futures", &normal),
                        dep("tokio", &[Some("dev")]),
                        dep("hyper", &[Some("build")]),
                        dep("serde", &[Some("dev"), None]),
                    ]),
                    node("port-server", vec![dep("axum", &normal)]),
                    node("port-cli", vec![dep("axum", &[Some("dev")])]),
                    node("port-client", vec![dep("axum", &normal)]),
                    node("futures", vec![dep("mio", &normal)]),
                    node("mio", vec![]),
                    node("tokio", vec![dep("mio", &normal)]),
                    node("hyper", vec![dep("tokio", &normal)]),
                    node("serde", vec![]),
                    node("axum", vec![dep("tokio", &normal), dep("hyper", &normal)]),
                ],
            },
        })
    }

    #[test]
    fn the_walk_finds_a_forbidden_crate_reached_transitively() -> Result<()> {
        let graph = DependencyGraph::from_metadata(&fixture())?;
        let paths = graph.forbidden_paths("port-core", IO_PACKAGES)?;
        assert_eq!(paths, vec![vec!["port-core", "futures", "mio"]]);
        Ok(())
    }

    #[test]
    fn the_walk_follows_only_normal_edges() -> Result<()> {
        let graph = DependencyGraph::from_metadata(&fixture())?;
        // `serde` is not forbidden, but naming it shows an edge that is both dev and
        // normal is followed; tokio and hyper are reached only by dev or build edges.
        let paths = graph.forbidden_paths("port-core", &["serde", "tokio", "hyper"])?;
        assert_eq!(paths, vec![vec!["port-core", "serde"]]);
        Ok(())
    }

    #[test]
    fn the_walk_reports_one_shortest_path_per_forbidden_crate() -> Result<()> {
        let graph = DependencyGraph::from_metadata(&fixture())?;
        let paths = graph.forbidden_paths("port-server", IO_PACKAGES)?;
        assert_eq!(
            paths,
            vec![
                vec!["port-server", "axum"],
                vec!["port-server", "axum", "hyper"],
                vec!["port-server", "axum", "tokio", "mio"],
                vec!["port-server", "axum", "tokio"],
            ]
        );
        Ok(())
    }

    #[test]
    fn the_walk_needs_a_workspace_member_as_root() -> Result<()> {
        let graph = DependencyGraph::from_metadata(&fixture())?;
        assert!(graph.forbidden_paths("tokio", IO_PACKAGES).is_err());
        assert!(graph.forbidden_paths("port-nothing", IO_PACKAGES).is_err());
        Ok(())
    }

    #[test]
    fn metadata_without_a_resolve_is_an_error() {
        let mut metadata = fixture();
        metadata["resolve"] = Value::Null;
        assert!(DependencyGraph::from_metadata(&metadata).is_err());
    }

    #[test]
    fn direct_axum_users_are_found_through_normal_edges_only() -> Result<()> {
        let graph = DependencyGraph::from_metadata(&fixture())?;
        assert_eq!(
            graph.members_depending_directly_on("axum"),
            vec!["port-client", "port-server"]
        );
        // Transitive use does not count.
        assert_eq!(
            graph.members_depending_directly_on("tokio"),
            Vec::<String>::new()
        );
        Ok(())
    }

    fn manifest(text: &str) -> toml::Table {
        toml::from_str(text).expect("test manifest parses")
    }

    #[test]
    fn workspace_lints_must_be_on() {
        assert!(uses_workspace_lints(&manifest(
            "[package]\nname = \"a\"\n[lints]\nworkspace = true\n"
        )));
        assert!(!uses_workspace_lints(&manifest(
            "[package]\nname = \"a\"\n"
        )));
        assert!(!uses_workspace_lints(&manifest(
            "[lints]\nworkspace = false\n"
        )));
        assert!(!uses_workspace_lints(&manifest(
            "[lints.rust]\nunsafe_code = \"forbid\"\n"
        )));
    }

    #[test]
    fn dependencies_must_come_from_the_workspace() {
        let text = r#"
            [dependencies]
            serde.workspace = true
            tokio = { workspace = true, features = ["rt"] }
            regex = "1"
            port-core = { path = "../port-core" }

            [dev-dependencies]
            proptest = { version = "1" }
            insta.workspace = true

            [build-dependencies]
            cc = "1"

            [target.'cfg(unix)'.dependencies]
            libc = { workspace = false }
            nix.workspace = true
        "#;
        let problems = non_workspace_dependencies(&manifest(text));
        let mut named: Vec<&str> = problems
            .iter()
            .map(|problem| problem.split('`').nth(1).unwrap_or_default())
            .collect();
        named.sort_unstable();
        assert_eq!(named, ["cc", "libc", "port-core", "proptest", "regex"]);
        assert!(
            problems
                .iter()
                .any(|problem| { problem.starts_with("[target.'cfg(unix)'.dependencies] `libc`") })
        );
        assert!(non_workspace_dependencies(&manifest("[package]\nname = \"a\"\n")).is_empty());
    }

    #[test]
    fn the_ignore_scan_finds_the_attribute() {
        let needle = ignore_attribute();
        let text = format!("#[test]\n{needle}]\nfn a() {{}}\n\n{needle} = \"slow\"]\n");
        assert_eq!(lines_containing(&text, &needle), [2, 5]);
        assert!(lines_containing("#[test]\nfn a() {}\n", &needle).is_empty());
        // The needle is assembled, so this very file does not trip the check.
        assert!(lines_containing(include_str!("tidy.rs"), &needle).is_empty());
    }
}
