//! The part planner: cuts an upload's contiguous bytes into storage parts that obey the
//! store's multipart rules, so parts can be forwarded while the upload is still arriving.
//!
//! S3's rules: every part but the last at least 5 MiB, none over 5 GiB, at most 10,000 parts.
//! With a declared size the part size is grown up front so the parts fit; with an unknown size
//! it doubles every [`GROWTH_INTERVAL`] parts (S3 allows unequal parts), which reaches S3's
//! 5 TiB object limit within 10,000 parts. Stores that need equal parts (R2) get one size.
//!
//! Pure: sizes in, parts out; no I/O.

/// Parts between two doublings of the part size when the total is unknown.
pub const GROWTH_INTERVAL: u32 = 1000;

const MIB: u64 = 1024 * 1024;

/// A store's multipart rules and the configured part size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRules {
    /// Smallest part but the last (S3: 5 MiB).
    pub min_part: u64,
    /// Largest part (S3: 5 GiB).
    pub max_part: u64,
    /// Most parts in one object (S3: 10,000).
    pub max_parts: u32,
    /// The part size to start from (kept within `min_part..=max_part`).
    pub part_size: u64,
    /// Every part but the last the same size (Cloudflare R2 and some others).
    pub equal_parts: bool,
    /// Grown part sizes are rounded up to a multiple of this (1 MiB).
    pub align: u64,
    /// Largest object (S3: 5 TiB).
    pub max_object: u64,
}

impl PartRules {
    /// S3's rules with an 8 MiB starting part size.
    #[must_use]
    pub fn s3() -> Self {
        Self {
            min_part: 5 * MIB,
            max_part: 5 * 1024 * MIB,
            max_parts: 10_000,
            part_size: 8 * MIB,
            equal_parts: false,
            align: MIB,
            max_object: 5 * 1024 * 1024 * MIB,
        }
    }
}

/// A part number, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartNumber(pub u32);

/// One part: its number and the byte range `[start, start + len)` of the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Its number.
    pub number: PartNumber,
    /// First byte.
    pub start: u64,
    /// Length.
    pub len: u64,
}

/// Why an upload cannot be cut into parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The declared size is over the store's object limit or cannot fit in `max_parts` parts.
    #[error("an upload of {size} bytes cannot be stored in at most {max_parts} parts")]
    TooLarge {
        /// The declared size.
        size: u64,
        /// The store's limit.
        max_parts: u32,
    },
    /// The upload grew past what the plan can hold.
    #[error("the upload needs more than {0} parts")]
    TooManyParts(u32),
}

/// Where planning stands: the next part to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The next part's number.
    pub number: PartNumber,
    /// The next part's first byte.
    pub start: u64,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            number: PartNumber(1),
            start: 0,
        }
    }
}

/// The plan for one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    base: u64,
    grows: bool,
    max_part: u64,
    max_parts: u32,
}

impl PartPlan {
    /// A plan for an upload of `declared` bytes (if known).
    ///
    /// # Errors
    /// The declared size cannot fit the store's limits.
    pub fn new(rules: &PartRules, declared: Option<u64>) -> Result<Self, PlanError> {
        // The configured size, within the store's bounds.
        let mut base = rules
            .part_size
            .clamp(rules.min_part, rules.max_part.max(rules.min_part));
        if let Some(size) = declared {
            let align = rules.align.max(1);
            let needed = size
                .div_ceil(u64::from(rules.max_parts.max(1)))
                .div_ceil(align)
                * align;
            base = base.max(needed);
            if base > rules.max_part || size > rules.max_object {
                return Err(PlanError::TooLarge {
                    size,
                    max_parts: rules.max_parts,
                });
            }
        }
        Ok(Self {
            base: base.min(rules.max_part),
            grows: declared.is_none() && !rules.equal_parts,
            max_part: rules.max_part,
            max_parts: rules.max_parts,
        })
    }

    /// The size of a full part with this number.
    #[must_use]
    pub fn size_of(&self, number: PartNumber) -> u64 {
        if !self.grows {
            return self.base;
        }
        let doublings = (number.0.saturating_sub(1) / GROWTH_INTERVAL).min(40);
        self.base.saturating_mul(1 << doublings).min(self.max_part)
    }

    /// The next part that can be cut from `available` contiguous bytes (from offset 0), or
    /// `None` if it must wait for more. When `complete`, the remainder becomes the last part
    /// (an empty upload is one empty part).
    ///
    /// # Errors
    /// The part would exceed the store's part count.
    pub fn next(
        &self,
        cursor: Cursor,
        available: u64,
        complete: bool,
    ) -> Result<Option<Part>, PlanError> {
        let remaining = available.saturating_sub(cursor.start);
        let full = self.size_of(cursor.number);
        let len = if remaining >= full {
            full
        } else if complete && (remaining > 0 || cursor.number.0 == 1) {
            // The last part, or the one empty part of an empty upload.
            remaining
        } else {
            return Ok(None);
        };
        if cursor.number.0 > self.max_parts {
            return Err(PlanError::TooManyParts(self.max_parts));
        }
        Ok(Some(Part {
            number: cursor.number,
            start: cursor.start,
            len,
        }))
    }

    /// The cursor after `part`.
    #[must_use]
    pub fn advance(part: &Part) -> Cursor {
        Cursor {
            number: PartNumber(part.number.0 + 1),
            start: part.start + part.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Cuts a whole upload, feeding `available` in the given increments.
    fn cut(plan: &PartPlan, total: u64, steps: &[u64]) -> Result<Vec<Part>, PlanError> {
        let mut parts = Vec::new();
        let mut cursor = Cursor::default();
        let mut available = 0;
        let mut steps = steps.iter().cycle();
        loop {
            let complete = available == total;
            while let Some(part) = plan.next(cursor, available, complete)? {
                cursor = PartPlan::advance(&part);
                parts.push(part);
            }
            if complete {
                return Ok(parts);
            }
            available = (available + steps.next().copied().unwrap_or(total).max(1)).min(total);
        }
    }

    #[test]
    fn s3_sizes() {
        let rules = PartRules::s3();
        let plan = PartPlan::new(&rules, Some(20 * MIB)).unwrap();
        let parts = cut(&plan, 20 * MIB, &[3 * MIB]).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.len / MIB).collect::<Vec<_>>(),
            [8, 8, 4]
        );
        // 1 TiB declared: the part size grows so 10,000 parts suffice.
        let big = PartPlan::new(&rules, Some(1024 * 1024 * MIB)).unwrap();
        assert_eq!(big.size_of(PartNumber(1)), 105 * MIB);
        assert!(PartPlan::new(&rules, Some(6 * 1024 * 1024 * MIB)).is_err());
        // Unknown size: doubles every 1000 parts, reaching 5 TiB within 10,000.
        let open = PartPlan::new(&rules, None).unwrap();
        assert_eq!(open.size_of(PartNumber(1000)), 8 * MIB);
        assert_eq!(open.size_of(PartNumber(1001)), 16 * MIB);
        let capacity: u64 = (1..=10_000).map(|n| open.size_of(PartNumber(n))).sum();
        assert!(capacity >= 5 * 1024 * 1024 * MIB, "{capacity}");
        // An empty upload is one empty part.
        assert_eq!(
            cut(&plan, 0, &[1]).unwrap(),
            [Part {
                number: PartNumber(1),
                start: 0,
                len: 0
            }]
        );
    }

    proptest! {
        #[test]
        fn plans_obey_the_store_rules(
            total in 0u64..5_000,
            declared in any::<bool>(),
            equal in any::<bool>(),
            min_part in 1u64..40,
            part_size in 0u64..80,
            max_parts in 1u32..30,
            steps in prop::collection::vec(1u64..300, 1..8),
        ) {
            let rules = PartRules {
                min_part,
                max_part: min_part * 8,
                max_parts,
                part_size,
                equal_parts: equal,
                align: 1,
                max_object: u64::MAX,
            };
            let plan = match PartPlan::new(&rules, declared.then_some(total)) {
                Ok(plan) => plan,
                Err(PlanError::TooLarge { .. }) => {
                    prop_assert!(declared && total > rules.max_part * u64::from(max_parts));
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            match cut(&plan, total, &steps) {
                Ok(parts) => {
                    prop_assert!(!parts.is_empty());
                    prop_assert!(parts.len() <= max_parts as usize);
                    let mut next = 0;
                    for (i, p) in parts.iter().enumerate() {
                        prop_assert_eq!(p.number, PartNumber(u32::try_from(i).unwrap() + 1));
                        prop_assert_eq!(p.start, next);
                        prop_assert!(p.len <= rules.max_part);
                        if i + 1 < parts.len() {
                            prop_assert!(p.len >= min_part, "part {:?} under the minimum", p);
                            if equal {
                                prop_assert_eq!(p.len, parts[0].len);
                            }
                        }
                        next += p.len;
                    }
                    prop_assert_eq!(next, total);
                    // Incremental cutting gives the same parts as cutting all at once.
                    prop_assert_eq!(parts, cut(&plan, total, &[total.max(1)]).unwrap());
                }
                Err(PlanError::TooManyParts(_)) => {
                    // Only an upload of unknown size can outgrow its plan.
                    prop_assert!(!declared);
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
    }
}
