//! Every file under `config/` parses and validates; unknown keys are refused by name.

use std::path::Path;
use uplink::config::{self, RawDev, RawEdge, RawOrigin};

fn env(name: &str) -> Option<String> {
    match name {
        "UPLINK_INTERNAL_SECRET" => Some("an-internal-secret-for-tests".to_owned()),
        "UPLINK_TOKEN_KEYS" => Some(uplink::token::Keyring::generate_line(
            "k1",
            &mut rand::rng(),
        )),
        _ => None,
    }
}

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            "origin.toml" => {
                config::load::<RawOrigin>(&path)
                    .unwrap()
                    .validate(&env)
                    .unwrap();
            }
            "edge.toml" => {
                config::load::<RawEdge>(&path)
                    .unwrap()
                    .validate(&env)
                    .unwrap();
            }
            "dev.toml" => {
                let secret = uplink::role::generate_secret();
                let keys =
                    uplink::token::Keyring::parse(&env("UPLINK_TOKEN_KEYS").unwrap()).unwrap();
                config::load::<RawDev>(&path)
                    .unwrap()
                    .validate(secret, keys)
                    .unwrap();
            }
            other => panic!("config/{other} has no test: add it here"),
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["dev.toml", "edge.toml", "origin.toml"]);
}

#[test]
fn example_configs_hold_no_secret_values() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| {
            (l.contains("secret") || l.contains("keys")) && !l.trim_start().starts_with('#')
        }) {
            assert!(
                line.contains("env =") || line.contains("file ="),
                "inline secret: {line}"
            );
        }
    }
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin.toml");
    let good =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/origin.toml"))
            .unwrap();
    std::fs::write(&path, format!("{good}\nworkerz = 3\n")).unwrap();
    let err = config::load::<RawOrigin>(&path).unwrap_err().to_string();
    assert!(err.contains("workerz"), "{err}");
}
