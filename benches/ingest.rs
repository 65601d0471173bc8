#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! The edge's per-byte hot path, without the network: a multipart body parsed by the form
//! parser every form protocol uses (and, for comparison, by multer, which it replaced) and
//! written through the local-file store, in the 64 KiB chunks a socket delivers; and SHA-256 alone, the pass the origin makes over every source (the edge
//! leaves it out: it costs more than the rest of the path). Reports throughput;
//! `cargo bench --bench ingest`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use uplink::protocol::multipart::Form;
use uplink::store::{file::FileStore, ObjectKey, Store};

const FILE: usize = 32 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn form_chunks() -> Vec<Bytes> {
    let mut body = Vec::with_capacity(FILE + 512);
    body.extend_from_slice(
        b"--B\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\nroot\r\n",
    );
    body.extend_from_slice(
        b"--B\r\nContent-Disposition: form-data; name=\"video\"; filename=\"v.mp4\"\r\n\r\n",
    );
    body.extend((0..FILE).map(|i| (i % 251) as u8));
    body.extend_from_slice(b"\r\n--B--\r\n");
    body.chunks(CHUNK).map(Bytes::copy_from_slice).collect()
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(FileStore::open(dir.path())).unwrap();
    let chunks = form_chunks();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(FILE as u64));
    group.sample_size(10);

    group.bench_function("multipart_parse", |b| {
        b.iter(|| {
            rt.block_on(async {
                let body = futures_util::stream::iter(chunks.clone()).map(Ok::<_, std::io::Error>);
                let mut form = Form::new(body, "B");
                let mut n = 0;
                while form.next_field().await.unwrap().is_some() {
                    while let Some(chunk) = form.chunk().await.unwrap() {
                        n += chunk.len();
                    }
                }
                n
            })
        });
    });

    // The parser Uplink used before its own (it copies every byte into its buffer).
    group.bench_function("multipart_parse_multer", |b| {
        b.iter(|| {
            rt.block_on(async {
                let body = futures_util::stream::iter(chunks.clone()).map(Ok::<_, std::io::Error>);
                let mut form = multer::Multipart::new(body, "B");
                let mut n = 0;
                while let Some(mut field) = form.next_field().await.unwrap() {
                    while let Some(chunk) = field.chunk().await.unwrap() {
                        n += chunk.len();
                    }
                }
                n
            })
        });
    });

    group.bench_function("parse_store", |b| {
        let key = ObjectKey::new("bench/source").unwrap();
        b.iter(|| {
            rt.block_on(async {
                let body = futures_util::stream::iter(chunks.clone()).map(Ok::<_, std::io::Error>);
                let mut form = Form::new(body, "B");
                let mut writer = store.writer(&key).await.unwrap();
                while form.next_field().await.unwrap().is_some() {
                    while let Some(chunk) = form.chunk().await.unwrap() {
                        writer.write(chunk).await.unwrap();
                    }
                }
                writer.finish().await.unwrap()
            })
        });
    });

    group.bench_function("sha256", |b| {
        b.iter(|| {
            let mut hasher = Sha256::new();
            for chunk in &chunks {
                hasher.update(chunk);
            }
            hasher.finalize()
        });
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
