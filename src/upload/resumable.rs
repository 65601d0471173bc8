//! The state machine of an offset-based resumable upload, which tus 1.0 and the IETF draft
//! share: where an upload stands (offset, declared length, complete), which append a request
//! may make, and when the upload is complete. This is the one place "complete" is decided; the
//! ingest core acts on its answers and the protocol adapters render them.
//!
//! The client's metadata (tus `Upload-Metadata`, `key base64` pairs) is read here too, since
//! the upload record keeps it whichever protocol continued the upload.
//!
//! Pure: no I/O, no clock; must not depend on HTTP, the spool or the store.

use super::Offset;
use base64::Engine;
use serde_json::{json, Map, Value};

/// How a request says the upload is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// When its declared length is reached (tus).
    AtLength,
    /// The request says whether it completes the upload (the IETF draft's `Upload-Complete`);
    /// its bytes then are the whole upload.
    Declared(bool),
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    /// Bytes received and kept.
    pub offset: Offset,
    /// The declared length, once known.
    pub length: Option<Offset>,
    /// Stored: every byte is in storage and the origin recorded it.
    pub complete: bool,
    /// A partial upload of a concatenation: stored with its final upload, never on its own.
    pub partial: bool,
}

/// An append, as a request asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Append {
    /// The offset the request writes at.
    pub offset: Offset,
    /// A length the request declares, if any.
    pub length: Option<Offset>,
    /// Whether it completes the upload.
    pub completion: Completion,
}

/// Why an append is refused; nothing of its body is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The upload is complete already, at this offset.
    AlreadyComplete {
        /// Its offset (its length).
        offset: Offset,
    },
    /// The request's offset is not the upload's.
    OffsetMismatch {
        /// The upload's offset.
        current: Offset,
    },
    /// The declared length contradicts the known one, the offset, or the bytes sent.
    InconsistentLength,
    /// Over the largest upload allowed (bytes).
    TooLarge {
        /// The limit.
        max: u64,
    },
}

/// An append the upload accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// A length to record before any byte is written (it was open until this request).
    pub declare: Option<Offset>,
    /// The most bytes the body may carry; a longer body keeps nothing.
    pub limit: u64,
}

/// What follows an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The upload waits for more bytes.
    Continue,
    /// Every byte is in: store the upload (of this length) before answering.
    Store(Offset),
}

impl Upload {
    /// Whether a request may append, and how much, when uploads are at most `max` bytes.
    ///
    /// # Errors
    /// Why not.
    pub fn accept(&self, req: &Append, max: u64) -> Result<Accepted, Refused> {
        if self.complete {
            return Err(Refused::AlreadyComplete {
                offset: self.offset,
            });
        }
        if req.offset != self.offset {
            return Err(Refused::OffsetMismatch {
                current: self.offset,
            });
        }
        let declare = match (req.length, self.length) {
            (Some(new), Some(known)) if new != known => return Err(Refused::InconsistentLength),
            (Some(new), None) if new < self.offset => return Err(Refused::InconsistentLength),
            (Some(new), None) if new.bytes() > max => return Err(Refused::TooLarge { max }),
            (Some(new), None) => Some(new),
            _ => None,
        };
        let length = declare.or(self.length);
        Ok(Accepted {
            declare,
            limit: length
                .map_or(max, Offset::bytes)
                .min(max)
                .saturating_sub(self.offset.bytes()),
        })
    }

    /// The upload after an accepted append kept bytes up to `offset` (`whole`: its body was not
    /// cut off), and what follows.
    ///
    /// # Errors
    /// [`Refused::InconsistentLength`] when the request said it completes the upload and the
    /// bytes do not make its declared length (what arrived is kept).
    pub fn appended(
        &mut self,
        accepted: &Accepted,
        offset: Offset,
        whole: bool,
        completion: Completion,
    ) -> Result<Next, Refused> {
        if let Some(l) = accepted.declare {
            self.length = Some(l);
        }
        self.offset = offset;
        if completion == Completion::Declared(true) && whole {
            if self.length.is_some_and(|l| l != offset) {
                return Err(Refused::InconsistentLength);
            }
            self.length = Some(offset);
        }
        Ok(self.next(completion))
    }

    /// What an upload that is not being appended to needs (a status request, an adoption):
    /// one whose every byte is in but that was not stored (its last append could not store it)
    /// is stored first, so that an offset equal to the length always means stored.
    #[must_use]
    pub fn settle(&self) -> Next {
        self.next(Completion::AtLength)
    }

    fn next(&self, completion: Completion) -> Next {
        let at_length = self.length == Some(self.offset);
        let says_complete = matches!(
            completion,
            Completion::AtLength | Completion::Declared(true)
        );
        if !self.complete && !self.partial && at_length && says_complete {
            Next::Store(self.offset)
        } else {
            Next::Continue
        }
    }
}

/// tus `Upload-Metadata` (`key base64,key2 base64`) as a JSON object; `None` if malformed.
#[must_use]
pub fn parse_metadata(raw: &str) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, ' ');
        let key = parts.next()?;
        let value = match parts.next() {
            Some(b64) => String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()?,
            )
            .into_owned(),
            None => String::new(),
        };
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        out.insert(key.to_owned(), Value::String(value));
    }
    Some(out)
}

/// `Upload-Metadata` as the upload record keeps it (JSON text), if any and well-formed.
#[must_use]
pub fn metadata_record(raw: Option<&str>) -> Option<String> {
    raw.and_then(parse_metadata)
        .map(|m| json!({ "tus_metadata": m }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 1_000;

    fn o(bytes: u64) -> Offset {
        Offset::new(bytes)
    }

    fn fresh(length: Option<u64>) -> Upload {
        Upload {
            offset: Offset::ZERO,
            length: length.map(o),
            complete: false,
            partial: false,
        }
    }

    #[test]
    fn metadata() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert!(parse_metadata("filename !!!").is_none());
        assert_eq!(
            metadata_record(Some("a YQ==")).as_deref(),
            Some(r#"{"tus_metadata":{"a":"a"}}"#)
        );
    }

    #[test]
    fn tus_completes_at_its_length() {
        let mut u = fresh(Some(10));
        let req = Append {
            offset: o(0),
            length: None,
            completion: Completion::AtLength,
        };
        let a = u.accept(&req, MAX).unwrap();
        assert_eq!(a.limit, 10);
        assert_eq!(
            u.appended(&a, o(4), true, Completion::AtLength),
            Ok(Next::Continue)
        );
        let req = Append {
            offset: o(4),
            ..req
        };
        let a = u.accept(&req, MAX).unwrap();
        assert_eq!(
            u.appended(&a, o(10), false, Completion::AtLength),
            Ok(Next::Store(o(10)))
        );
    }

    #[test]
    fn ietf_completes_when_told() {
        let mut u = fresh(None);
        let req = Append {
            offset: o(0),
            length: None,
            completion: Completion::Declared(false),
        };
        let a = u.accept(&req, MAX).unwrap();
        assert_eq!(a.limit, MAX);
        assert_eq!(
            u.appended(&a, o(6), true, Completion::Declared(false)),
            Ok(Next::Continue)
        );
        let req = Append {
            offset: o(6),
            length: Some(o(9)),
            completion: Completion::Declared(true),
        };
        let a = u.accept(&req, MAX).unwrap();
        assert_eq!((a.declare, a.limit), (Some(o(9)), 3));
        // Cut off: not complete, whatever the request said.
        assert_eq!(
            u.appended(&a, o(8), false, Completion::Declared(true)),
            Ok(Next::Continue)
        );
        let req = Append {
            offset: o(8),
            ..req
        };
        let a = u.accept(&req, MAX).unwrap();
        assert_eq!(
            u.appended(&a, o(9), true, Completion::Declared(true)),
            Ok(Next::Store(o(9)))
        );
    }

    #[test]
    fn refusals() {
        let u = fresh(Some(10));
        let at = |offset, length: Option<u64>| Append {
            offset: o(offset),
            length: length.map(o),
            completion: Completion::AtLength,
        };
        assert_eq!(
            u.accept(&at(3, None), MAX),
            Err(Refused::OffsetMismatch { current: o(0) })
        );
        assert_eq!(
            u.accept(&at(0, Some(11)), MAX),
            Err(Refused::InconsistentLength)
        );
        assert_eq!(
            fresh(None).accept(&at(0, Some(MAX + 1)), MAX),
            Err(Refused::TooLarge { max: MAX })
        );
        let done = Upload {
            offset: o(10),
            complete: true,
            ..u
        };
        assert_eq!(
            done.accept(&at(10, None), MAX),
            Err(Refused::AlreadyComplete { offset: o(10) })
        );
        let mut short = fresh(Some(10));
        let req = Append {
            offset: o(0),
            length: None,
            completion: Completion::Declared(true),
        };
        let a = short.accept(&req, MAX).unwrap();
        assert_eq!(
            short.appended(&a, o(7), true, Completion::Declared(true)),
            Err(Refused::InconsistentLength)
        );
        let partial = Upload {
            offset: o(10),
            partial: true,
            ..u
        };
        assert_eq!(partial.settle(), Next::Continue);
    }

    /// One request of a client, as proptest draws it.
    #[derive(Debug, Clone)]
    struct Request {
        /// Where it writes: the upload's offset, or another.
        stale: Option<u64>,
        declares: Option<u64>,
        completion: Completion,
        /// Bytes in its body, and how many arrive before it is cut off (if it is).
        body: u64,
        cut_at: Option<u64>,
    }

    fn request() -> impl Strategy<Value = Request> {
        (
            proptest::option::weighted(0.1, 0..MAX),
            proptest::option::weighted(0.2, 0..MAX + 50),
            prop_oneof![
                Just(Completion::AtLength),
                any::<bool>().prop_map(Completion::Declared)
            ],
            0..MAX / 3,
            proptest::option::weighted(0.2, 0..MAX / 3),
        )
            .prop_map(|(stale, declares, completion, body, cut_at)| Request {
                stale,
                declares,
                completion,
                body,
                cut_at,
            })
    }

    proptest! {
        /// Never a success for bytes that are not all in: an upload is stored only when its
        /// offset is its length and every byte up to it arrived, at most once; its offset never
        /// goes back nor past its length. And an upload whose every byte arrived is always
        /// stored: by the request that brought the last byte when it completes by length,
        /// otherwise by the next status request.
        #[test]
        fn stored_exactly_when_every_byte_is_in(
            length in proptest::option::of(1..MAX),
            requests in proptest::collection::vec(request(), 1..40),
        ) {
            let mut upload = fresh(length);
            let mut received = 0u64; // bytes the spool holds, as a model
            let mut stored = 0;
            for r in requests {
                let req = Append {
                    offset: r.stale.map_or(upload.offset, o),
                    length: r.declares.map(o),
                    completion: r.completion,
                };
                let before = upload;
                let Ok(accepted) = upload.accept(&req, MAX) else {
                    prop_assert_eq!(upload, before);
                    continue;
                };
                if r.body > accepted.limit {
                    // A body longer than allowed keeps nothing (the spool refuses it whole).
                    continue;
                }
                let arrived = r.cut_at.map_or(r.body, |c| c.min(r.body));
                let whole = arrived == r.body;
                received += arrived;
                let next = upload.appended(&accepted, upload.offset.after(arrived), whole, r.completion);
                prop_assert_eq!(upload.offset, o(received));
                prop_assert!(upload.length.is_none_or(|l| upload.offset <= l));
                prop_assert!(upload.offset >= before.offset);
                if let Ok(Next::Store(len)) = next {
                    prop_assert_eq!(len, o(received));
                    prop_assert_eq!(upload.length, Some(o(received)));
                    upload.complete = true;
                    stored += 1;
                } else if r.completion == Completion::AtLength {
                    prop_assert!(upload.length != Some(upload.offset));
                }
            }
            prop_assert!(stored <= 1);
            if upload.length == Some(o(received)) && !upload.complete {
                prop_assert_eq!(upload.settle(), Next::Store(o(received)));
            }
            if upload.complete {
                prop_assert_eq!(upload.settle(), Next::Continue);
            }
        }
    }
}
