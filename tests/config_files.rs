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
            "origin.toml" | "origin-fleet.toml" => {
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
    assert_eq!(
        seen,
        ["dev.toml", "edge.toml", "origin-fleet.toml", "origin.toml"]
    );
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
    std::fs::write(&path, format!("{}\nworkerz = 3\n", example("origin.toml"))).unwrap();
    let err = config::load::<RawOrigin>(&path).unwrap_err().to_string();
    assert!(err.contains("workerz"), "{err}");
}

/// An origin config's text validated; the error as text.
fn validate(text: &str) -> Result<uplink::config::OriginSettings, String> {
    toml::from_str::<RawOrigin>(text)
        .map_err(|e| e.to_string())
        .and_then(|raw| raw.validate(&env).map_err(|e| e.to_string()))
}

/// Each (`from`, `to`, `key`): `good` with `from` replaced by `to` is refused naming `key`.
fn refused_by_key(good: &str, cases: &[(&str, &str, &str)]) {
    assert!(validate(good).is_ok());
    for (from, to, key) in cases {
        assert!(good.contains(from), "{from}");
        let err = validate(&good.replacen(from, to, 1)).unwrap_err();
        assert!(err.contains(key), "{from} -> {err}");
    }
}

fn example(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(name),
    )
    .unwrap()
}

#[test]
fn a_fleet_is_checked_key_by_key() {
    let good = example("origin-fleet.toml");
    refused_by_key(
        &good,
        &[
            ("fallback = \"fra-1\"", "fallback = \"lhr-9\"", "fleet"),
            (
                "latitude = 50.11",
                "latitude = 150.11",
                "fleet.edges[0].latitude",
            ),
            ("capacity = 1000", "capacity = 0", "fleet.edges[2].capacity"),
            ("\"10.0.0.0/8\"", "\"10.0.0.0/33\"", "fleet.trusted_proxies"),
            (
                "heartbeat_timeout = \"30s\"",
                "heartbeat_timeout = \"soon\"",
                "fleet.heartbeat_timeout",
            ),
            ("name = \"nrt-1\"", "name = \"fra-1\"", "fleet"),
        ],
    );
    // Both a single edge_url and a fleet: which one is meant?
    let err = validate(&good.replace("\n[fleet]\n", "\nedge_url = \"http://x:1\"\n[fleet]\n"))
        .unwrap_err();
    assert!(err.contains("edge_url"), "{err}");
}

#[test]
fn processing_and_notifications_are_checked_key_by_key() {
    let good = example("origin.toml");
    refused_by_key(
        &good,
        &[
            (
                "max_pixels = 35389440",
                "max_pixels = 10",
                "processing.max_pixels",
            ),
            (
                "job_timeout = \"2h\"",
                "job_timeout = \"later\"",
                "processing.job_timeout",
            ),
            (
                "first_retry = \"5s\"",
                "first_retry = \"30s\"",
                "notify.first_retry",
            ),
            ("senders = 4", "senders = 0", "notify.senders"),
        ],
    );
    for (template, key) in [
        (
            "renditions = [{ height = 720, video_bitrate = \"fast\" }]",
            "processing.templates.t.renditions[0].video_bitrate",
        ),
        (
            "renditions = [{ height = 9000, video_bitrate = \"1M\" }]",
            "processing.templates.t.renditions[0].height",
        ),
        ("renditions = []", "processing.templates.t.renditions"),
        (
            "renditions = [{ height = 720, video_bitrate = \"1M\" }]\nwatermark = \"/nonexistent/logo.png\"",
            "processing.templates.t.watermark",
        ),
        (
            "renditions = [{ height = 720, video_bitrate = \"1M\" }]\nsubtitles = \"/tmp/my subs.srt\"",
            "processing.templates.t.subtitles",
        ),
    ] {
        let err = validate(&format!("{good}\n[processing.templates.t]\n{template}\n")).unwrap_err();
        assert!(err.contains(key), "{template} -> {err}");
    }
}

#[test]
fn an_edge_tls_listener_needs_its_certificate_files() {
    let with_tls = |extra: &str| {
        toml::from_str::<RawEdge>(&format!("{}\n{extra}", example("edge.toml")))
            .map_err(|e| e.to_string())
            .and_then(|raw| raw.validate(&env).map_err(|e| e.to_string()))
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let table = |listen: &str| {
        format!(
            "[tls]\nlisten = \"{listen}\"\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    let err = with_tls(&table("0.0.0.0:443")).unwrap_err();
    assert!(err.contains("tls.certificate"), "{err}");
    uplink::edge::tls::ensure_self_signed(&cert, &key).unwrap();
    let tls = with_tls(&table("0.0.0.0:443")).unwrap().tls.unwrap();
    assert_eq!(tls.listen.port(), 443);
    let err = with_tls(&table("everywhere")).unwrap_err();
    assert!(err.contains("tls.listen"), "{err}");
}
