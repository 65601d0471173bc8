//! The operator's files in `deploy/`, checked with the validators that run here: Prometheus's
//! `promtool` (scrape config, alerting rules and their unit tests), the Compose specification's
//! JSON schema (`check-jsonschema`), Kubernetes' OpenAPI schemas (`kubernetes-validate`), the
//! roles' own config parsers for every config file the deployments carry, and the container
//! file's runtime libraries against the ones the binary links. `bash .ci/setup` installs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// Runs a validator and fails with its output unless it succeeds.
fn passes(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} (bash .ci/setup installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    let dir = deploy("prometheus");
    passes("promtool", &["check", "config", "prometheus.yml"], &dir);
    passes("promtool", &["check", "rules", "rules.yml"], &dir);
    passes("promtool", &["test", "rules", "rules.test.yml"], &dir);
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    passes(
        "check-jsonschema",
        &["--builtin-schema", "vendor.compose-spec", "compose.yaml"],
        &deploy(""),
    );
}

#[test]
fn the_kubernetes_manifests_follow_the_kubernetes_schemas() {
    let dir = deploy("k8s");
    let mut args = vec!["--strict", "--quiet", "-k", "1.30.0"];
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    args.extend(files.iter().map(String::as_str));
    passes("kubernetes-validate", &args, &dir);
}

/// The ConfigMap's files, by name (YAML read by Python's PyYAML, which check-jsonschema brings).
fn config_map_files() -> Vec<(String, String)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))['data']))",
        ])
        .arg(deploy("k8s/config.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap();
    data.into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
        .collect()
}

/// Every config file the deployments carry is read by the role's own parser (an unknown or
/// misspelt key is refused) and, where it names no file of the target machine, validated.
#[test]
fn every_deployed_config_file_is_one_the_roles_accept() {
    let env = |name: &str| match name {
        "UPLINK_INTERNAL_SECRET" => Some("a-shared-internal-secret-for-tests".to_owned()),
        "UPLINK_TOKEN_KEYS" => Some("t1:dGVzdC10b2tlbi1rZXktdGhhdC1pcy0zMi1ieXRlcyEh".to_owned()),
        _ => None,
    };
    let mut edges = vec![];
    let mut origins = vec![];
    for entry in std::fs::read_dir(deploy("compose")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if name.starts_with("edge") {
                edges.push((name, text));
            } else {
                origins.push((name, text));
            }
        }
    }
    for (name, text) in config_map_files() {
        // The init container puts the node's name in.
        let text = text.replace("@NODE_NAME@", "edge-node-1");
        if name.starts_with("edge") {
            edges.push((format!("k8s {name}"), text));
        } else {
            origins.push((format!("k8s {name}"), text));
        }
    }
    assert_eq!((edges.len(), origins.len()), (4, 2));
    for (name, text) in &edges {
        let raw: uplink::config::RawEdge =
            toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(raw.metrics_listen.is_some(), "{name}: metrics_listen");
        if raw.tls.is_none() {
            raw.validate(&env).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    for (name, text) in &origins {
        let raw: uplink::config::RawOrigin =
            toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(raw.metrics_listen.is_some(), "{name}: metrics_listen");
    }
}

/// The container's runtime stage installs the FFmpeg libraries, by soname, that the binary
/// built here (on the same Debian release) links against.
#[test]
fn the_container_installs_the_ffmpeg_libraries_the_binary_links() {
    let out = Command::new("ldd").arg(common::bin()).output().unwrap();
    let linked = String::from_utf8_lossy(&out.stdout).into_owned();
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .unwrap();
    let mut checked = 0;
    for line in linked.lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        // libavcodec.so.59 -> the package libavcodec59.
        let Some((stem, version)) = lib.split_once(".so.") else {
            continue;
        };
        if [
            "libavcodec",
            "libavformat",
            "libavutil",
            "libavfilter",
            "libswscale",
            "libswresample",
        ]
        .contains(&stem)
        {
            let package = format!("{stem}{version}");
            assert!(
                runtime.contains(&package),
                "the runtime stage does not install {package}:\n{runtime}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "ldd found only {checked} FFmpeg libraries:\n{linked}"
    );
}
