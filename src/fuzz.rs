//! Fuzz targets: every parser that reads bytes a client sends, each behind one function of
//! bytes, with the properties it must keep for any input (beyond not panicking). `fuzz/` runs
//! them under AFL++ (`cargo afl`); the unit tests below replay the kept corpora and a short
//! seeded mutation run of each, so CI exercises every target on every change.
//!
//! Pure, like the parsers it drives: no I/O, no clock, no randomness (the tests' mutations are
//! seeded). Not part of the public API.

use crate::edge::limits::HeaderClock;
use crate::edge::range::{self, Span};
use crate::geo::client;
use crate::protocol::multipart::{self, Event, Parser};
use crate::protocol::s3_post::{self, Fields};
use crate::protocol::{ietf, movingimage, tus};
use crate::s3_policy;
use crate::token::{Claims, Keyring};
use crate::upload::chunk_set::MAX_CHUNKS;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;
use tokio::time::Instant;

/// A target: a name (`fuzz/corpus/NAME`) and the function it drives.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("tus", tus),
    ("ietf", ietf),
    ("chunk_headers", chunk_headers),
    ("token", token),
    ("multipart", multipart),
    ("s3_post", s3_post),
    ("forwarded", forwarded),
    ("range", range),
    ("http1_head", http1_head),
];

/// The target named `name`.
#[must_use]
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Request headers from `NAME: VALUE` lines, as a server hands them on: lines a server would
/// refuse (no colon, an invalid name or value) are left out.
fn headers(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// tus creation headers (`Upload-Length`, `Upload-Defer-Length`, `Upload-Concat`,
/// `Upload-Metadata`), `Upload-Checksum`, and `Upload-Metadata` alone: metadata that parses
/// re-encodes to the same fields; a creation never has both a length and a final concatenation.
pub fn tus(data: &[u8]) {
    let h = headers(data);
    if let Ok(c) = tus::creation(&h) {
        assert!(
            !(c.length.is_some()
                && matches!(
                    c.concat,
                    Some(crate::ingest::offset_spool::Concat::Final(_))
                )),
            "a final concatenation's length comes from its parts"
        );
    }
    let _ = tus::checksum(&h);
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(fields) = crate::upload::resumable::parse_metadata(raw) {
        let again: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().unwrap_or_default();
                format!(
                    "{k} {}",
                    base64::engine::general_purpose::STANDARD.encode(v)
                )
            })
            .collect();
        assert_eq!(
            crate::upload::resumable::parse_metadata(&again.join(",")).as_ref(),
            Some(&fields),
            "metadata re-encoded reads back the same"
        );
    }
}

/// The IETF draft's headers: the draft version, `Upload-Complete`/`Upload-Incomplete` (a
/// structured-field boolean) and the declared length, which never contradicts an explicit
/// `Upload-Length`.
pub fn ietf(data: &[u8]) {
    let h = headers(data);
    let Some(draft) = ietf::draft(&h) else {
        return;
    };
    let completes = draft.completes(&h);
    let offset = crate::upload::Offset::new(u64::from(data.first().copied().unwrap_or(0)));
    let explicit = h
        .get("upload-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if let Ok(Some(length)) = ietf::declared_length(&h, offset, completes.unwrap_or(false)) {
        if let Some(explicit) = explicit {
            assert_eq!(length, explicit, "the declared length is the one sent");
        }
    }
}

/// Chunk headers: movingimage's `Mi24-Upload-Total-Chunks`/`-Current-Chunk` and plupload's
/// `chunk`/`chunks` form fields; a chunk accepted is always within its total.
pub fn chunk_headers(data: &[u8]) {
    let h = headers(data);
    if let Ok(Some((total, index))) = movingimage::chunk_headers(&h) {
        assert!((1..=MAX_CHUNKS).contains(&total) && index < total);
    }
    let fields = Fields(
        h.iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    );
    if let Ok(Some((chunk, chunks))) = s3_post::plupload_chunk(&fields) {
        assert!(chunk < chunks && chunks <= MAX_CHUNKS);
    }
}

/// The keyring the token target signs with (its one key, `k1`, signs).
fn keyring() -> Keyring {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    Keyring::parse(&format!("k1:{key}")).unwrap_or_else(|e| unreachable!("a valid key: {e}"))
}

/// Tokens: the input as a token, and as a token body signed with the right key (so the fields'
/// decoder is reached). A token that verifies grants what its claims say, and signing those
/// claims again gives a token that verifies to the same claims. Also `__token__` in a query.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ring = keyring();
    let _ = crate::token::from_query(Some(text));
    let _ = ring.verify(text, 0, 30);
    let Ok(signed) = ring.seal(text) else {
        return;
    };
    let Ok(claims) = ring.verify(&signed, 0, 30) else {
        return;
    };
    let _ = claims.permits(text, Some(text), Some(data.len() as u64));
    let _ = claims.permits_region(Some(text));
    if let Ok(again) = ring.sign(&claims) {
        let reread: Claims = ring
            .verify(&again, 0, 30)
            .unwrap_or_else(|e| panic!("a token signed from verified claims is refused: {e}"));
        assert_eq!(reread, claims, "claims survive signing again");
    }
}

/// The multipart parser: the content type's boundary, then the body fed in pieces of a size
/// the input chooses. Any split gives the same parts, data and outcome as the whole body at
/// once, and the data given never exceeds the body.
pub fn multipart(data: &[u8]) {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (content_type, rest) = (&data[..newline], &data[newline + 1..]);
    let boundary = std::str::from_utf8(content_type)
        .ok()
        .and_then(multipart::boundary)
        .unwrap_or_else(|| "XyZ".to_owned());
    let Some((&size, body)) = rest.split_first() else {
        return;
    };
    let whole = parse_form(&boundary, body, body.len().max(1));
    let pieces = parse_form(&boundary, body, usize::from(size % 64) + 1);
    assert_eq!(
        whole, pieces,
        "a form's reading does not depend on how it is cut"
    );
    let data_len: usize = whole.0.iter().map(|(_, d)| d.len()).sum();
    assert!(data_len <= body.len());
}

/// What a form gave: each part with its data, and how it ended (`Ok(true)`: closing boundary).
type Parsed = (Vec<(multipart::Part, Vec<u8>)>, Result<bool, String>);

fn parse_form(boundary: &str, body: &[u8], piece: usize) -> Parsed {
    let mut parser = Parser::new(boundary);
    let mut parts: Vec<(multipart::Part, Vec<u8>)> = vec![];
    let mut chunks = body.chunks(piece);
    loop {
        match parser.next_event() {
            Ok(Some(Event::Part(p))) => parts.push((p, vec![])),
            Ok(Some(Event::Data(d))) => match parts.last_mut() {
                Some((_, data)) => data.extend_from_slice(&d),
                None => panic!("data before any part"),
            },
            Ok(Some(Event::End)) => return (parts, Ok(true)),
            Ok(None) => match chunks.next() {
                Some(c) => parser.push(Bytes::copy_from_slice(c)),
                None => return (parts, Ok(false)),
            },
            Err(e) => return (parts, Err(e.to_string())),
        }
    }
}

/// S3 browser POST: the form's signature fields (V2, V4 credential scope) and a policy checked
/// against the fields, both as sent (base64) and with the input as the policy's JSON itself.
/// A policy never accepts a form whose fields it does not cover.
pub fn s3_post(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let policy = lines.next().unwrap_or_default();
    let fields: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let form = Fields(fields.clone());
    if let Ok(s3_post::Signature::V4 {
        credential,
        signature,
    }) = s3_post::signature(&form)
    {
        let _ = s3_policy::verify_v4(
            "secret",
            credential.date,
            credential.region,
            credential.service,
            policy,
            signature,
        );
    }
    let _ = s3_policy::verify_v2("secret", policy, policy);
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let as_json = base64::engine::general_purpose::STANDARD.encode(policy);
    for policy in [policy, as_json.as_str()] {
        if let Ok(accepted) = s3_policy::check(policy, &fields, "bucket", now) {
            if let Some((min, max)) = accepted.length_range {
                assert!(min <= max, "an accepted length range is not empty");
            }
        }
    }
}

/// `Forwarded` and `X-Forwarded-For` from a peer through trusted proxies, and the control APIs'
/// address forms. Without a trusted peer the address is always the peer's.
pub fn forwarded(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let forwarded = lines.next().filter(|l| !l.is_empty());
    let xff = lines.next().filter(|l| !l.is_empty());
    let peer: IpAddr = [10, 0, 0, 1].into();
    let trusted = ["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())];
    let _ = client::address(peer, forwarded, xff, &trusted);
    assert_eq!(client::address(peer, forwarded, xff, &[]), peer);
    for line in text.split('\n') {
        let _ = client::parse_address(line);
    }
}

/// `Range` on an object whose size the input's first bytes give: a part is always inside it.
pub fn range(data: &[u8]) {
    let Some((size_bytes, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let size = u64::from(u16::from_le_bytes(*size_bytes));
    let Ok(header) = std::str::from_utf8(rest) else {
        return;
    };
    if let Span::Part { start, end } = range::span(Some(header), size) {
        assert!(start <= end && end < size, "{start}-{end} of {size}");
    }
}

/// The HTTP/1.1 head watch (slowloris clock, smuggling check): fed a head in pieces of a size
/// the input chooses, it finds the head complete exactly when httparse (Pingora's parser)
/// does, and a head that has both `Content-Length` and `Transfer-Encoding` is ambiguous.
pub fn http1_head(data: &[u8]) {
    let Some((&size, head)) = data.split_first() else {
        return;
    };
    let mut clock = HeaderClock::default();
    let now = Instant::now();
    // Whether the clock has seen a whole head (a head begun whose deadline is gone).
    let ended = |c: &HeaderClock| c.in_request() && c.deadline(std::time::Duration::ZERO).is_none();
    let mut consumed = 0;
    for piece in head.chunks(usize::from(size % 16) + 1) {
        clock.read(piece, now);
        consumed += piece.len();
        if ended(&clock) {
            break;
        }
    }
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut fields);
    let parsed = request.parse(head);
    if ended(&clock) {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let seen = httparse::Request::new(&mut fields).parse(&head[..consumed]);
        assert!(
            !matches!(seen, Ok(httparse::Status::Partial)),
            "the clock ended a head at {consumed} bytes that httparse is still reading"
        );
    }
    let Ok(httparse::Status::Complete(len)) = parsed else {
        return;
    };
    assert!(
        ended(&clock) && consumed >= len,
        "httparse read a complete head of {len} bytes the clock still waits on"
    );
    let has = |name: &str| {
        request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if has("content-length") && has("transfer-encoding") {
        assert!(
            clock.ambiguous(),
            "both framing headers, not seen as ambiguous"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::path::PathBuf;

    fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    /// Every kept input of every target still passes (what AFL++ found stays fixed).
    #[test]
    fn every_corpus_input_passes() {
        for (name, run) in TARGETS {
            let inputs = corpus(name);
            assert!(!inputs.is_empty(), "fuzz/corpus/{name} is empty");
            for (path, bytes) in inputs {
                if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                    panic!("fuzz target {name} fails on {}", path.display());
                }
            }
        }
    }

    /// A short, seeded mutation run of each target from its corpus: a few thousand inputs each,
    /// bytes flipped, inserted, removed, spliced, so CI exercises the targets beyond the corpus.
    #[test]
    fn seeded_mutations_pass() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for (name, run) in TARGETS {
            let inputs = corpus(name);
            for _ in 0..3_000 {
                let mut input = inputs[rng.random_range(0..inputs.len())].1.clone();
                for _ in 0..rng.random_range(1..5) {
                    let at = rng.random_range(0..=input.len());
                    match rng.random_range(0..4) {
                        0 if at < input.len() => input[at] ^= 1 << rng.random_range(0..8),
                        1 => input.insert(at, rng.random()),
                        2 if at < input.len() => {
                            input.remove(at);
                        }
                        _ => {
                            let other = &inputs[rng.random_range(0..inputs.len())].1;
                            let from = rng.random_range(0..=other.len());
                            input.splice(at..at, other[from..].iter().copied().take(16));
                        }
                    }
                }
                if std::panic::catch_unwind(|| run(&input)).is_err() {
                    panic!(
                        "fuzz target {name} fails on {:?}",
                        String::from_utf8_lossy(&input)
                    );
                }
            }
        }
    }
}
