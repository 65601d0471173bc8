//! `multipart/form-data` (RFC 7578) read as it arrives, without copying the file: a field's
//! data comes out as slices of the body's own pieces. Only the few bytes that might begin a
//! boundary across two pieces are held back, and only part headers are copied (at most
//! [`MAX_HEAD`] bytes each). [`Parser`] is the pure core (pieces in, events out); [`Form`]
//! drives it from a body stream, one piece at a time, so memory per form is one piece.
//!
//! Must not depend on any HTTP server, the ingest core or storage.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use memchr::memmem;
use std::pin::Pin;

/// The most bytes one part's headers may take.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most bytes all text fields of one form may take together (each has its own limit too).
pub const MAX_TEXT: u64 = 1024 * 1024;

/// The most transport padding (spaces, tabs) after a boundary.
const MAX_PADDING: usize = 256;

/// Why a form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The body ended before the closing boundary.
    #[error("the body ended before the form's closing boundary")]
    Truncated,
    /// A boundary line had something other than padding after it.
    #[error("a boundary line is followed by something other than a line break")]
    BadBoundaryLine,
    /// A part's headers could not be parsed.
    #[error("a part's headers are malformed")]
    BadHeaders,
    /// A part's headers were longer than [`MAX_HEAD`].
    #[error("a part's headers are longer than {MAX_HEAD} bytes")]
    HeadersTooLong,
    /// A text field was longer than its limit.
    #[error("field `{name}` is longer than {limit} bytes")]
    FieldTooLong {
        /// The field's name.
        name: String,
        /// Its limit.
        limit: u64,
    },
    /// The form's text fields together were longer than [`MAX_TEXT`].
    #[error("the form's text fields are longer than {MAX_TEXT} bytes in all")]
    TooMuchText,
    /// A text field was not UTF-8.
    #[error("field `{0}` is not UTF-8 text")]
    NotText(String),
    /// Reading the body failed.
    #[error("reading the body failed: {0}")]
    Body(String),
}

/// A part's headers, as far as a form needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Part {
    /// `Content-Disposition`'s `name`.
    pub name: Option<String>,
    /// `Content-Disposition`'s `filename*` (RFC 5987, UTF-8), else its `filename`.
    pub file_name: Option<String>,
    /// `Content-Type`.
    pub content_type: Option<String>,
}

/// What the parser found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins; its data follows.
    Part(Part),
    /// A piece of the current part's data (a slice of the input).
    Data(Bytes),
    /// The closing boundary: the form is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the next delimiter; what comes before it is the current part's data, or,
    /// before the first part, the preamble (discarded).
    Data { preamble: bool },
    /// Just past a delimiter: `--` ends the form, padding and CRLF start a part.
    AfterDelimiter,
    /// Gathering a part's headers up to their blank line.
    Head,
    /// Past the closing delimiter: the epilogue, ignored.
    Done,
}

/// The pure parser: [`push`](Parser::push) a piece whenever [`next_event`](Parser::next_event) answers
/// `None`.
#[derive(Debug)]
pub struct Parser {
    /// `CRLF--boundary`. The boundary has no CR, so CR occurs only at its start.
    delimiter: memmem::Finder<'static>,
    state: State,
    /// Input not yet consumed.
    input: Bytes,
    /// In `Data`: a suffix of earlier input that is a proper prefix of the delimiter.
    held: Bytes,
    /// In `AfterDelimiter` and `Head`: the bytes gathered so far.
    head: BytesMut,
}

impl Parser {
    /// A parser for `boundary` (as [`boundary`] returns it: no CR or LF).
    #[must_use]
    pub fn new(boundary: &str) -> Self {
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        Self {
            delimiter: memmem::Finder::new(&delimiter).into_owned(),
            state: State::Data { preamble: true },
            input: Bytes::new(),
            // As if a line break came first: the first delimiter may open the body.
            held: Bytes::from_static(b"\r\n"),
            head: BytesMut::new(),
        }
    }

    /// Gives the parser the next piece of the body; only once it has used up the last.
    pub fn push(&mut self, piece: Bytes) {
        debug_assert!(
            self.input.is_empty(),
            "push before the last piece was used up"
        );
        self.input = piece;
    }

    /// The next event; `None` when it needs another piece.
    ///
    /// # Errors
    /// The form is malformed; the error is final.
    pub fn next_event(&mut self) -> Result<Option<Event>, FormError> {
        loop {
            let event = match self.state {
                State::Data { preamble } => Ok(self.data().filter(|_| !preamble).map(Event::Data)),
                State::AfterDelimiter => self.after_delimiter(),
                State::Head => self.part_head().map(|part| part.map(Event::Part)),
                State::Done => {
                    self.input.clear();
                    return Ok(Some(Event::End));
                }
            };
            match event? {
                Some(event) => return Ok(Some(event)),
                None if self.input.is_empty() && self.state != State::Done => return Ok(None),
                None => {}
            }
        }
    }

    fn delimiter(&self) -> &[u8] {
        self.delimiter.needle()
    }

    /// Data up to the next delimiter, or as much as cannot begin one. `None`: nothing to give.
    fn data(&mut self) -> Option<Bytes> {
        if !self.held.is_empty() {
            let want = &self.delimiter.needle()[self.held.len()..];
            let n = want.len().min(self.input.len());
            if self.input[..n] != want[..n] {
                // Not a delimiter after all; and no other can start inside it (one CR only).
                return Some(std::mem::take(&mut self.held));
            }
            let complete = n == want.len();
            let matched = self.input.split_to(n);
            if complete {
                self.held.clear();
                self.state = State::AfterDelimiter;
            } else {
                let mut longer = BytesMut::from(&self.held[..]);
                longer.extend_from_slice(&matched);
                self.held = longer.freeze();
            }
            return None;
        }
        if self.input.is_empty() {
            return None;
        }
        if let Some(at) = self.delimiter.find(&self.input) {
            let data = self.input.split_to(at);
            self.input.advance(self.delimiter().len());
            self.state = State::AfterDelimiter;
            return (!data.is_empty()).then_some(data);
        }
        // Hold back a tail that may be the start of a delimiter split across pieces.
        let from = self.input.len().saturating_sub(self.delimiter().len() - 1);
        let tail = memchr::memrchr(b'\r', &self.input[from..])
            .map(|r| from + r)
            .filter(|&at| self.delimiter().starts_with(&self.input[at..]));
        let data = match tail {
            Some(at) => {
                let data = self.input.split_to(at);
                self.held = std::mem::take(&mut self.input);
                data
            }
            None => std::mem::take(&mut self.input),
        };
        (!data.is_empty()).then_some(data)
    }

    /// After a delimiter: `--` (the end), or padding then CRLF (a part's headers follow).
    fn after_delimiter(&mut self) -> Result<Option<Event>, FormError> {
        if self.head.len() < 2 {
            let n = (2 - self.head.len()).min(self.input.len());
            self.head.extend_from_slice(&self.input.split_to(n));
            if self.head.len() < 2 {
                return Ok(None);
            }
        }
        if self.head[..2] == *b"--" {
            self.head.clear();
            self.state = State::Done;
            return Ok(Some(Event::End));
        }
        if !self.head.ends_with(b"\n") {
            let room = (MAX_PADDING + 2).saturating_sub(self.head.len());
            let window = self.input.len().min(room);
            let n = memchr::memchr(b'\n', &self.input[..window]).map_or(window, |i| i + 1);
            self.head.extend_from_slice(&self.input.split_to(n));
            if !self.head.ends_with(b"\n") {
                return if self.head.len() >= MAX_PADDING + 2 {
                    Err(FormError::BadBoundaryLine)
                } else {
                    Ok(None)
                };
            }
        }
        let line = &self.head[..];
        let padding = &line[..line.len() - 2];
        if !line.ends_with(b"\r\n") || padding.iter().any(|&b| b != b' ' && b != b'\t') {
            return Err(FormError::BadBoundaryLine);
        }
        // Headers are found by their blank line: start them with the line break just read.
        self.head.clear();
        self.head.extend_from_slice(b"\r\n");
        self.state = State::Head;
        Ok(None)
    }

    /// A part's headers, once their blank line is in.
    fn part_head(&mut self) -> Result<Option<Part>, FormError> {
        let old = self.head.len();
        let take = self.input.len().min(MAX_HEAD + 2 - old);
        self.head.extend_from_slice(&self.input[..take]);
        let from = old.saturating_sub(3);
        let Some(at) = memmem::find(&self.head[from..], b"\r\n\r\n") else {
            self.input.advance(take);
            return if self.head.len() >= MAX_HEAD + 2 {
                Err(FormError::HeadersTooLong)
            } else {
                Ok(None)
            };
        };
        let end = from + at + 4;
        self.input.advance(end - old);
        let part = parse_head(&self.head[2..end])?;
        self.head.clear();
        self.state = State::Data { preamble: false };
        Ok(Some(part))
    }
}

/// The headers of one part (ending with their blank line).
fn parse_head(block: &[u8]) -> Result<Part, FormError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let httparse::Status::Complete((_, headers)) =
        httparse::parse_headers(block, &mut headers).map_err(|_| FormError::BadHeaders)?
    else {
        return Err(FormError::BadHeaders);
    };
    let mut part = Part::default();
    for header in headers.iter() {
        if header.name.eq_ignore_ascii_case("content-disposition") {
            let (_, params) = with_params(header.value);
            part.name = param(&params, "name").map(str::to_owned);
            part.file_name = param(&params, "filename*")
                .and_then(ext_value)
                .or_else(|| param(&params, "filename").map(str::to_owned));
        } else if header.name.eq_ignore_ascii_case("content-type") {
            part.content_type = std::str::from_utf8(header.value)
                .ok()
                .map(|v| v.trim().to_owned());
        }
    }
    Ok(part)
}

/// A header value's leading token (`form-data`, `multipart/form-data`) and its parameters
/// (`; name="a"; filename="b"`), values unquoted; parameters that are not UTF-8 are left out.
fn with_params(value: &[u8]) -> (&[u8], Vec<(String, String)>) {
    let mut params = Vec::new();
    let (token, mut rest) = match memchr::memchr(b';', value) {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    while !rest.is_empty() {
        let Some(eq) = memchr::memchr2(b'=', b';', rest) else {
            break;
        };
        if rest[eq] == b';' {
            rest = &rest[eq + 1..];
            continue;
        }
        let key = rest[..eq].trim_ascii();
        let after = rest[eq + 1..].trim_ascii_start();
        let (raw, next) = if let Some(quoted) = after.strip_prefix(b"\"") {
            let mut value = Vec::new();
            let mut i = 0;
            while i < quoted.len() && quoted[i] != b'"' {
                if quoted[i] == b'\\' && i + 1 < quoted.len() {
                    i += 1;
                }
                value.push(quoted[i]);
                i += 1;
            }
            let next = quoted.get(i + 1..).unwrap_or_default();
            (value, next)
        } else {
            let end = memchr::memchr(b';', after).unwrap_or(after.len());
            (after[..end].trim_ascii().to_vec(), &after[end..])
        };
        if let (Ok(key), Ok(value)) = (std::str::from_utf8(key), String::from_utf8(raw)) {
            params.push((key.to_owned(), value));
        }
        rest = match memchr::memchr(b';', next) {
            Some(i) => &next[i + 1..],
            None => b"",
        };
    }
    (token.trim_ascii(), params)
}

/// The value of parameter `key` (case-insensitive).
fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// An RFC 5987 extended value (`UTF-8''%e2%82%ac.mp4`), decoded; only UTF-8 is taken.
fn ext_value(value: &str) -> Option<String> {
    let mut parts = value.splitn(3, '\'');
    let charset = parts.next()?;
    let _language = parts.next()?;
    let encoded = parts.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The boundary of a `multipart/form-data` content type, if it is one with a valid boundary
/// (1 to 70 characters, no line breaks).
#[must_use]
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = with_params(content_type.as_bytes());
    if !mime.eq_ignore_ascii_case(b"multipart/form-data") {
        return None;
    }
    let boundary = param(&params, "boundary")?;
    let valid = (1..=70).contains(&boundary.len()) && !boundary.contains(['\r', '\n']);
    valid.then(|| boundary.to_owned())
}

/// A form read from a body stream: fields in order, each field's data in pieces.
pub struct Form<'r> {
    body: Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + 'r>>,
    parser: Parser,
    /// An event read past the end of a field's data: the next part, or the end.
    next: Option<Event>,
    /// The current field's name (for errors).
    current: Option<String>,
    /// Bytes of text fields read so far.
    text: u64,
}

impl<'r> Form<'r> {
    /// A form over `body`, delimited by `boundary`.
    pub fn new<S>(body: S, boundary: &str) -> Self
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'r,
    {
        Self {
            body: Box::pin(body),
            parser: Parser::new(boundary),
            next: None,
            current: None,
            text: 0,
        }
    }

    async fn event(&mut self) -> Result<Event, FormError> {
        if let Some(event) = self.next.take() {
            return Ok(event);
        }
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(event);
            }
            match self.body.next().await {
                Some(Ok(piece)) => self.parser.push(piece),
                Some(Err(e)) => return Err(FormError::Body(e.to_string())),
                None => return Err(FormError::Truncated),
            }
        }
    }

    /// The next field's headers, skipping what is left of the current one; `None` after the
    /// closing boundary.
    ///
    /// # Errors
    /// The form is malformed, or the body failed.
    pub async fn next_field(&mut self) -> Result<Option<Part>, FormError> {
        loop {
            match self.event().await? {
                Event::Data(_) => {}
                Event::Part(part) => {
                    self.current.clone_from(&part.name);
                    return Ok(Some(part));
                }
                Event::End => {
                    self.next = Some(Event::End);
                    return Ok(None);
                }
            }
        }
    }

    /// The next piece of the current field's data; `None` at its end.
    ///
    /// # Errors
    /// The form is malformed, or the body failed.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FormError> {
        match self.event().await? {
            Event::Data(data) => Ok(Some(data)),
            other => {
                self.next = Some(other);
                Ok(None)
            }
        }
    }

    /// The rest of the current field as text of at most `limit` bytes.
    ///
    /// # Errors
    /// Longer than `limit`, the form's text longer than [`MAX_TEXT`], not UTF-8, or as
    /// [`chunk`](Form::chunk).
    pub async fn text(&mut self, limit: u64) -> Result<String, FormError> {
        let mut text = Vec::new();
        while let Some(piece) = self.chunk().await? {
            let len = piece.len() as u64;
            if text.len() as u64 + len > limit {
                return Err(FormError::FieldTooLong {
                    name: self.current.clone().unwrap_or_default(),
                    limit,
                });
            }
            self.text += len;
            if self.text > MAX_TEXT {
                return Err(FormError::TooMuchText);
            }
            text.extend_from_slice(&piece);
        }
        String::from_utf8(text)
            .map_err(|_| FormError::NotText(self.current.clone().unwrap_or_default()))
    }

    /// The rest of the current field as a stream of pieces.
    pub fn data(
        &mut self,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + use<'_, 'r> {
        futures_util::stream::unfold(Some(self), |form| async move {
            let form = form?;
            match form.chunk().await {
                Ok(Some(piece)) => Some((Ok(piece), Some(form))),
                Ok(None) => None,
                // End the stream after an error: the consumer sees it once.
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every event of `body` cut into `pieces`, data merged per part, or the first error.
    fn parse(boundary: &str, pieces: &[&[u8]]) -> Result<Vec<(Part, Vec<u8>)>, FormError> {
        let mut parser = Parser::new(boundary);
        let mut parts: Vec<(Part, Vec<u8>)> = Vec::new();
        let mut pieces = pieces.iter();
        loop {
            match parser.next_event()? {
                Some(Event::Part(p)) => parts.push((p, Vec::new())),
                Some(Event::Data(d)) => {
                    assert!(!d.is_empty(), "empty data event");
                    parts
                        .last_mut()
                        .expect("data before a part")
                        .1
                        .extend_from_slice(&d);
                }
                Some(Event::End) => return Ok(parts),
                None => match pieces.next() {
                    Some(piece) => parser.push(Bytes::copy_from_slice(piece)),
                    None => return Err(FormError::Truncated),
                },
            }
        }
    }

    fn named(name: &str) -> Part {
        Part {
            name: Some(name.into()),
            ..Part::default()
        }
    }

    #[test]
    fn reads_fields_and_files() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"folder\"\r\n\r\nroot\r\n\
            --B\r\nContent-Disposition: form-data; name=\"video\"; filename=\"v.mp4\"\r\n\
            Content-Type: video/mp4\r\n\r\na--B\r\n-B\r\n--\r\n--B--\r\n";
        let parts = parse("B", &[body]).unwrap();
        assert_eq!(parts[0], (named("folder"), b"root".to_vec()));
        let video = Part {
            name: Some("video".into()),
            file_name: Some("v.mp4".into()),
            content_type: Some("video/mp4".into()),
        };
        // A boundary not at a line start, or half of one, is data.
        assert_eq!(parts[1], (video, b"a--B\r\n-B\r\n--".to_vec()));
    }

    #[test]
    fn preamble_padding_and_epilogue() {
        let body = b"preamble\r\n--B  \t\r\n\r\nx\r\n--B--epilogue";
        assert_eq!(
            parse("B", &[body]).unwrap(),
            vec![(Part::default(), b"x".to_vec())]
        );
    }

    #[test]
    fn malformed_forms_are_errors() {
        let cases: &[(&[u8], FormError)] = &[
            (b"--B\r\n\r\nno end", FormError::Truncated),
            (b"--B\r\n\r\nx\r\n--B", FormError::Truncated),
            (b"--Bjunk\r\n\r\n", FormError::BadBoundaryLine),
            (b"--B\r\nno colon\r\n\r\n", FormError::BadHeaders),
            (b"nothing here", FormError::Truncated),
        ];
        for (body, error) in cases {
            assert_eq!(parse("B", &[body]).unwrap_err(), *error, "{body:?}");
        }
        let long = format!("--B\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse("B", &[long.as_bytes()]).unwrap_err(),
            FormError::HeadersTooLong
        );
        let padded = format!("--B{}\r\n\r\n", " ".repeat(MAX_PADDING + 1));
        assert_eq!(
            parse("B", &[padded.as_bytes()]).unwrap_err(),
            FormError::BadBoundaryLine
        );
    }

    #[test]
    fn disposition_parameters() {
        let head = |cd: &str| parse_head(format!("Content-Disposition: {cd}\r\n\r\n").as_bytes());
        let part =
            head(r#"form-data; name="a\"b"; filename*=UTF-8''%E2%82%AC.mp4; filename="e.mp4""#)
                .unwrap();
        assert_eq!(part.name.as_deref(), Some("a\"b"));
        assert_eq!(part.file_name.as_deref(), Some("€.mp4"));
        let part = head("form-data; NAME = plain ; filename=\"x;y.mp4\"").unwrap();
        assert_eq!(part.name.as_deref(), Some("plain"));
        assert_eq!(part.file_name.as_deref(), Some("x;y.mp4"));
        assert_eq!(head("form-data").unwrap(), Part::default());
    }

    #[test]
    fn boundaries_from_content_types() {
        assert_eq!(
            boundary("multipart/form-data; boundary=B").as_deref(),
            Some("B")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("text/plain; boundary=B"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None
        );
    }

    /// Data that is hard on a boundary search: line breaks, dashes and the boundary's own
    /// letters.
    fn tricky() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b'\r'),
                Just(b'\n'),
                Just(b'-'),
                Just(b'B'),
                Just(b'o'),
                any::<u8>()
            ],
            0..300,
        )
    }

    /// Fields by name, with their data.
    type Fields = Vec<(Option<String>, Vec<u8>)>;

    /// A valid form of named fields with the boundary `Bo-B`, and its cut points.
    fn form_and_cuts() -> impl Strategy<Value = (Fields, Vec<u8>, Vec<usize>)> {
        // Data may not hold the delimiter itself (RFC 2046); dashes and line breaks it may.
        let data = tricky().prop_filter("holds the delimiter", |d| {
            memmem::find(d, b"\r\n--Bo-B").is_none()
        });
        proptest::collection::vec(("[a-z]{1,8}", data), 0..5).prop_flat_map(|fields| {
            let mut body = b"pre\r\n".to_vec();
            for (name, data) in &fields {
                body.extend_from_slice(b"--Bo-B\r\n");
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"--Bo-B--\r\n");
            let len = body.len();
            let fields: Fields = fields.into_iter().map(|(n, d)| (Some(n), d)).collect();
            (
                Just(fields),
                Just(body),
                proptest::collection::vec(0..=len, 0..12),
            )
        })
    }

    fn cut(body: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
        cuts.push(0);
        cuts.push(body.len());
        cuts.sort_unstable();
        cuts.windows(2).map(|w| &body[w[0]..w[1]]).collect()
    }

    /// multer's reading of the same pieces: each field's name and data.
    fn multer_fields(pieces: &[&[u8]]) -> Result<Fields, String> {
        let owned: Vec<Result<Bytes, std::io::Error>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        block_on(async move {
            let mut form = multer::Multipart::new(futures_util::stream::iter(owned), "Bo-B");
            let mut out = Vec::new();
            while let Some(mut field) = form.next_field().await.map_err(|e| e.to_string())? {
                let name = field.name().map(str::to_owned);
                let mut data = Vec::new();
                while let Some(piece) = field.chunk().await.map_err(|e| e.to_string())? {
                    data.extend_from_slice(&piece);
                }
                out.push((name, data));
            }
            Ok(out)
        })
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    proptest! {
        /// However the body is cut, every field comes back whole, and multer agrees.
        #[test]
        fn any_cut_gives_the_fields((fields, body, cuts) in form_and_cuts()) {
            let pieces = cut(&body, cuts);
            let parts = parse("Bo-B", &pieces).unwrap();
            let ours: Fields = parts.into_iter().map(|(p, d)| (p.name, d)).collect();
            prop_assert_eq!(&ours, &fields);
            prop_assert_eq!(multer_fields(&pieces).unwrap(), fields);
        }

        /// Arbitrary bytes, cut anywhere, end in fields or an error: never a panic or a hang.
        #[test]
        fn garbage_never_panics(body in tricky(), cuts in proptest::collection::vec(0..300usize, 0..8)) {
            let cuts = cuts.into_iter().filter(|&c| c <= body.len()).collect();
            let _ = parse("Bo-B", &cut(&body, cuts));
        }
    }

    #[tokio::test]
    async fn form_reads_fields_text_and_data() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n\
            --B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n0123456789\r\n\
            --B\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nlong text\r\n--B--\r\n";
        let pieces: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut form = Form::new(futures_util::stream::iter(pieces), "B");
        assert_eq!(form.next_field().await.unwrap(), Some(named("a")));
        assert_eq!(form.text(5).await.unwrap(), "hello");
        assert_eq!(form.next_field().await.unwrap(), Some(named("file")));
        let data: Vec<Bytes> = form.data().map(Result::unwrap).collect().await;
        assert_eq!(data.concat(), b"0123456789");
        assert_eq!(form.next_field().await.unwrap(), Some(named("b")));
        assert_eq!(
            form.text(4).await.unwrap_err(),
            FormError::FieldTooLong {
                name: "b".into(),
                limit: 4
            }
        );
    }

    #[tokio::test]
    async fn form_text_is_bounded_in_all() {
        let field = format!(
            "--B\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n{}\r\n",
            "x".repeat(1000)
        );
        let body = field.repeat(MAX_TEXT as usize / 1000 + 1) + "--B--\r\n";
        let mut form = Form::new(futures_util::stream::iter([Ok(Bytes::from(body))]), "B");
        let mut error = None;
        while form.next_field().await.unwrap().is_some() {
            if let Err(e) = form.text(1000).await {
                error = Some(e);
                break;
            }
        }
        assert_eq!(error, Some(FormError::TooMuchText));
    }
}
