//! HTTP range requests (RFC 9110 §14) on a stored object of known size: which bytes one
//! `Range` header asks for. Pure; one range per request (a multi-range request gets the
//! whole object, which the RFC allows).

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The whole object, 200.
    Whole,
    /// Bytes `start..=end`, 206 with `Content-Range`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Nothing the object has, 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// The span `header` asks for in an object of `size` bytes.
#[must_use]
pub fn span(header: Option<&str>, size: u64) -> Span {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Span::Whole;
    };
    if spec.contains(',') {
        return Span::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Span::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parsed(last) {
            Some(0) => Span::Unsatisfiable,
            Some(n) if size > 0 => Span::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => Span::Unsatisfiable,
            None => Span::Whole,
        },
        (false, _) => {
            let Some(start) = parsed(first) else {
                return Span::Whole;
            };
            let end = if last.is_empty() {
                Some(u64::MAX)
            } else {
                parsed(last)
            };
            match end {
                None => Span::Whole,
                Some(end) if end < start => Span::Whole,
                Some(_) if start >= size => Span::Unsatisfiable,
                Some(end) => Span::Part {
                    start,
                    end: end.min(size - 1),
                },
            }
        }
        (true, true) => Span::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rfcs_forms() {
        assert_eq!(span(None, 100), Span::Whole);
        assert_eq!(
            span(Some("bytes=0-9"), 100),
            Span::Part { start: 0, end: 9 }
        );
        assert_eq!(
            span(Some("bytes=90-"), 100),
            Span::Part { start: 90, end: 99 }
        );
        assert_eq!(
            span(Some("bytes=-10"), 100),
            Span::Part { start: 90, end: 99 }
        );
        assert_eq!(
            span(Some("bytes=-500"), 100),
            Span::Part { start: 0, end: 99 }
        );
        assert_eq!(
            span(Some("bytes=50-500"), 100),
            Span::Part { start: 50, end: 99 }
        );
        assert_eq!(span(Some("bytes=100-"), 100), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=-0"), 100), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=0-1,5-6"), 100), Span::Whole);
        assert_eq!(span(Some("bytes=9-3"), 100), Span::Whole);
        assert_eq!(span(Some("items=0-1"), 100), Span::Whole);
        assert_eq!(span(Some("bytes=x-1"), 100), Span::Whole);
        assert_eq!(span(Some("bytes=0-"), 0), Span::Unsatisfiable);
    }

    proptest! {
        #[test]
        fn a_part_is_always_inside_the_object(header in "bytes=[0-9-]{0,12}", size in 0u64..1000) {
            if let Span::Part { start, end } = span(Some(&header), size) {
                prop_assert!(start <= end && end < size);
            }
        }
    }
}
