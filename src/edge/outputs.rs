//! Serves processed outputs (renditions, thumbnails, HLS playlists and segments) from the store
//! at `GET|HEAD /v1/outputs/SIGNATURE/KEY`, the links status records and notifications give.
//! The signature (by the token keyring) covers a directory, an upload's outputs, so the
//! relative links inside an HLS playlist carry it too; it is checked against the key's
//! directories, then the object is streamed in pieces with single-range support, so players
//! can seek. Must not depend on the origin or the database.

use super::exchange::Exchange;
use super::range::{self, Span};
use crate::store::{ObjectKey, Store};
use crate::token::Keyring;
use bytes::BytesMut;
use pingora::http::ResponseHeader;
use serde_json::json;
use tokio::io::AsyncReadExt;

/// The path prefix of output links.
pub const PREFIX: &str = "/v1/outputs/";

/// Bytes read from the store per piece written to the client.
const PIECE: usize = 256 * 1024;

/// The signature and object key (percent-decoded) an output link's path names.
#[must_use]
pub fn link_of(path: &str) -> Option<(String, String)> {
    let (signature, rest) = path.strip_prefix(PREFIX)?.split_once('/')?;
    let key = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!signature.is_empty() && !key.is_empty()).then(|| (signature.to_owned(), key))
}

/// Whether `signature` signs one of the directories `key` is in.
fn signed(keyring: &Keyring, key: &str, signature: &str) -> bool {
    key.match_indices('/')
        .any(|(at, _)| keyring.verify_output(&key[..at], signature))
}

fn content_type(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("mp4") => "video/mp4",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        _ => "application/octet-stream",
    }
}

async fn refuse(x: &mut dyn Exchange, status: u16, message: &str) -> pingora::Result<()> {
    let reply = crate::protocol::Reply::json(status, &json!({ "error": message }));
    super::exchange::write_reply(x, reply, &[]).await
}

/// Answers one output request.
///
/// # Errors
/// The client connection fails.
pub async fn serve(
    x: &mut dyn Exchange,
    store: &dyn Store,
    keyring: &Keyring,
    signature: &str,
    key: &str,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let req = x.head();
    let head = req.method == http::Method::HEAD;
    let range_header = req
        .headers
        .get(http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if key.split('/').any(|segment| segment == "..") || !signed(keyring, key, signature) {
        return refuse(
            x,
            403,
            "this output link is not valid: its signature is missing or does not match",
        )
        .await;
    }
    let Ok(object) = ObjectKey::new(key) else {
        return refuse(x, 404, "no such output").await;
    };
    let size = match store.size(&object).await {
        Ok(Some(size)) => size,
        Ok(None) => return refuse(x, 404, "no such output").await,
        Err(e) => {
            tracing::error!(key, error = %e, "Cannot read an output's size.");
            return refuse(x, 503, "storage is unavailable; try again").await;
        }
    };
    let (status, start, len) = match range::span(range_header.as_deref(), size) {
        Span::Whole => (200, 0, size),
        Span::Part { start, end } => (206, start, end - start + 1),
        Span::Unsatisfiable => {
            let mut header = ResponseHeader::build(416, Some(2))?;
            header.insert_header(http::header::CONTENT_RANGE, format!("bytes */{size}"))?;
            header.insert_header(http::header::CONTENT_LENGTH, "0")?;
            return x.respond(header, true).await;
        }
    };
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header(http::header::CONTENT_TYPE, content_type(key))?;
    header.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    header.insert_header(http::header::ACCEPT_RANGES, "bytes")?;
    for (name, value) in extra {
        header.insert_header(*name, value)?;
    }
    if status == 206 {
        header.insert_header(
            http::header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        )?;
    }
    if head || len == 0 {
        return x.respond(header, true).await;
    }
    let mut reader = match store.read_range(&object, start, len).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(key, error = %e, "Cannot read an output.");
            return refuse(x, 503, "storage is unavailable; try again").await;
        }
    };
    x.respond(header, false).await?;
    stream(x, &mut *reader, len).await
}

/// Sends `len` bytes of `reader` as the body, in pieces.
async fn stream(
    x: &mut dyn Exchange,
    reader: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
    len: u64,
) -> pingora::Result<()> {
    let mut sent = 0u64;
    while sent < len {
        let mut piece = BytesMut::with_capacity(PIECE);
        let n = reader.read_buf(&mut piece).await.map_err(|e| {
            pingora::Error::because(pingora::ErrorType::ReadError, "reading an output", e)
        })?;
        if n == 0 {
            // The object shrank under us: end the connection rather than send a short body.
            return Err(pingora::Error::explain(
                pingora::ErrorType::ReadError,
                "an output ended before its size",
            ));
        }
        sent += n as u64;
        x.send(piece.freeze(), sent >= len).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_signature_and_key() {
        let link = |s: &str, k: &str| Some((s.to_owned(), k.to_owned()));
        assert_eq!(
            link_of("/v1/outputs/k1.ab/accounts/a/uploads/u/outputs/720p.mp4"),
            link("k1.ab", "accounts/a/uploads/u/outputs/720p.mp4")
        );
        assert_eq!(
            link_of("/v1/outputs/k1.ab/a%20b/x.jpg"),
            link("k1.ab", "a b/x.jpg")
        );
        assert_eq!(link_of("/v1/outputs/k1.ab"), None);
        assert_eq!(link_of("/v1/outputs//x"), None);
        assert_eq!(link_of("/v1/uploads"), None);
        assert_eq!(content_type("x/720p.mp4"), "video/mp4");
        assert_eq!(content_type("x/thumbnail.jpg"), "image/jpeg");
    }

    #[test]
    fn a_signature_covers_its_directory_only() {
        use base64::Engine;
        let line = format!(
            "k1:{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let ring = Keyring::parse(&line).unwrap();
        let sig = ring.sign_output("acc/uploads/u1/outputs");
        assert!(signed(&ring, "acc/uploads/u1/outputs/720p.mp4", &sig));
        assert!(signed(
            &ring,
            "acc/uploads/u1/outputs/hls/720p_001.ts",
            &sig
        ));
        assert!(!signed(&ring, "acc/uploads/u1/source", &sig));
        assert!(!signed(&ring, "acc/uploads/u2/outputs/720p.mp4", &sig));
        assert!(!signed(&ring, "acc/uploads/u1/outputs", &sig));
    }
}
