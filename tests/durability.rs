//! Acknowledged bytes survive a crash, in every durability: many tus uploads at once in small
//! PATCHes (the load benchmark's concurrent workload, scaled down), `uplink dev` killed with
//! SIGKILL in the middle, then every upload asked again on the restarted node: HEAD never
//! answers less than its client was acknowledged, and each upload, resumed from there, is
//! stored byte-identical. The edge's metrics show acknowledgements sharing their syncs.

mod common;

use common::{free_port, tus, upload_token, Backend, Node, Scrape, Uploads};
use reqwest::Method;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const UPLOADS: usize = 40;
const LENGTH: u64 = 4 * 1024 * 1024;
const PATCH: u64 = 256 * 1024;

/// Upload `n`'s bytes `from..to`, different for every upload and offset.
fn bytes(n: usize, from: u64, to: u64) -> Vec<u8> {
    (from..to)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 13) as u8) ^ (n as u8))
        .collect()
}

/// PATCHes upload `n`'s bytes `from..to`; the offset acknowledged, or `None` (the node died).
async fn patch(url: &str, token: &str, n: usize, from: u64, to: u64) -> Option<u64> {
    let resp = reqwest::Client::new()
        .patch(url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", from)
        .header("content-type", "application/offset+octet-stream")
        .body(bytes(n, from, to))
        .send()
        .await
        .ok()?;
    if resp.status() != 204 {
        return None;
    }
    resp.headers()["upload-offset"].to_str().ok()?.parse().ok()
}

async fn crash_loses_nothing_acknowledged(durability: &str) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut node = Node::dev_with(
        Backend::Sqlite,
        &["--durability", durability, "--metrics-listen", &metrics],
    )
    .await;
    let account = node.account("Acme");
    let token = upload_token(&node, &account, "").await;
    let mut urls = Vec::new();
    for _ in 0..UPLOADS {
        let resp = tus(
            Method::POST,
            &format!("{}/files/", node.url),
            &token,
            &[("upload-length", LENGTH.to_string())],
            Vec::new(),
        )
        .await;
        assert_eq!(resp.status(), 201);
        let location = resp.headers()["location"].to_str().unwrap();
        urls.push(format!(
            "{}{}",
            node.url,
            location.trim_start_matches(&node.url)
        ));
    }

    // Every client PATCHes until the node dies; `acked` is what each was told.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..UPLOADS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(n, url)| {
            let (url, token, acked, stop) =
                (url.clone(), token.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut offset = 0;
                while offset < LENGTH && !stop.load(Ordering::SeqCst) {
                    let Some(now) =
                        patch(&url, &token, n, offset, (offset + PATCH).min(LENGTH)).await
                    else {
                        return;
                    };
                    acked[n].store(now, Ordering::SeqCst);
                    offset = now;
                }
            })
        })
        .collect();
    let total = || acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>();
    common::eventually("a third of the bytes acknowledged", async || {
        total() >= UPLOADS as u64 * LENGTH / 3
    })
    .await;
    let scrape = Scrape::of(&format!("http://{metrics}/metrics")).await;
    let rounds = scrape.sum("uplink_edge_spool_sync_rounds_total", &[]);
    let files = scrape.sum("uplink_edge_spool_synced_files_total", &[]);
    if durability == "none" {
        assert_eq!(files, 0.0, "nothing is synced with durability none");
    } else {
        // Forty clients acknowledging at once share their syncs: without group commit each
        // round would sync one file. (How many share depends on timing: 1.4 to 3 per round
        // have been seen on this 2-core machine, so the bound is only that they share.)
        assert!(files > rounds, "{files} files synced in {rounds} rounds");
    }
    stop.store(true, Ordering::SeqCst);
    node.restart().await;
    for client in clients {
        client.await.unwrap();
    }
    let told = total();
    assert!(
        told < UPLOADS as u64 * LENGTH,
        "the node was killed before every byte was acknowledged"
    );

    // Each upload answers at least what its client was told, and finishes from there.
    let api = Uploads::new(&node.url, &account.api_key);
    for (n, url) in urls.iter().enumerate() {
        let resp = tus(Method::HEAD, url, &token, &[], Vec::new()).await;
        assert_eq!(resp.status(), 200, "{url}");
        let offset: u64 = resp.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let was = acked[n].load(Ordering::SeqCst);
        assert!(
            offset >= was && offset <= LENGTH,
            "upload {n}: HEAD says {offset} after {was} was acknowledged ({durability})"
        );
        if offset < LENGTH {
            assert_eq!(patch(url, &token, n, offset, LENGTH).await, Some(LENGTH));
        }
        let id = url.rsplit('/').next().unwrap();
        api.assert_stored(id, &bytes(n, 0, LENGTH)).await;
    }
    eprintln!(
        "{durability}: killed after {told} of {} bytes acknowledged",
        UPLOADS as u64 * LENGTH
    );
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_byte_when_synced() {
    crash_loses_nothing_acknowledged("sync").await;
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_byte_when_batched() {
    crash_loses_nothing_acknowledged("batched").await;
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_byte_when_left_to_the_kernel() {
    crash_loses_nothing_acknowledged("none").await;
}
