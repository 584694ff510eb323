//! Splitting batch inputs into requests that stay well under the gRPC message limit.
//!
//! tonic and SPIRE (grpc-go) both refuse messages over 4 MiB by default. A batch request is
//! one repeated field, so its size is the sum of each item's field encoding (tag, length
//! prefix, body) plus whatever else the request carries (masks). [`plan_chunks`] walks the
//! items in order and cuts a new request whenever the next item would cross
//! [`ChunkLimits::max_bytes`] or [`ChunkLimits::max_items`]. An item that does not fit even
//! alone is never sent; it gets its own [`Planned::TooLarge`] slot so that the caller can give
//! it a per-item error instead of having the whole request rejected.

use std::ops::Range;

/// Per-request limits for batch calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Maximum encoded request size in bytes (default 1 MiB, a quarter of the 4 MiB limit).
    pub max_bytes: usize,
    /// Maximum number of items per request (default 500, SPIRE's own list page size).
    pub max_items: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self { max_bytes: 1024 * 1024, max_items: 500 }
    }
}

/// One step of a plan, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Send items `range` (indices into the input) in one request.
    Send(Range<usize>),
    /// Item `index` is larger than a whole request may be; do not send it.
    TooLarge {
        /// Index into the input.
        index: usize,
        /// The item's encoded size, for the error message.
        size: usize,
    },
}

/// Plans requests for items of the given encoded `sizes` (each the item's full field encoding
/// in the request, e.g. `prost::encoding::message::encoded_len(1, &entry)`), with `overhead`
/// bytes of other request fields. The steps cover every index exactly once, in order; every
/// `Send` range is non-empty and within both limits (`max_items` of 0 is treated as 1).
pub fn plan_chunks(sizes: &[usize], overhead: usize, limits: ChunkLimits) -> Vec<Planned> {
    let budget = limits.max_bytes.saturating_sub(overhead);
    let max_items = limits.max_items.max(1);
    let mut plan = Vec::new();
    let mut start = 0;
    let mut used = 0;
    let flush = |plan: &mut Vec<Planned>, start: usize, end: usize| {
        if end > start {
            plan.push(Planned::Send(start..end));
        }
    };
    for (i, &size) in sizes.iter().enumerate() {
        if size > budget {
            flush(&mut plan, start, i);
            plan.push(Planned::TooLarge { index: i, size });
            start = i + 1;
            used = 0;
            continue;
        }
        if i - start == max_items || used + size > budget {
            flush(&mut plan, start, i);
            start = i;
            used = 0;
        }
        used += size;
    }
    flush(&mut plan, start, sizes.len());
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entry, Selector, SpiffeId};
    use prost::Message;

    fn entry(i: usize, dns: usize) -> Entry {
        Entry {
            id: format!("ztlab.{i:08}"),
            spiffe_id: SpiffeId::parse(&format!("spiffe://ztlab.test/w/{i}")),
            parent_id: SpiffeId::parse("spiffe://ztlab.test/ztlab/nodes/local"),
            selectors: vec![Selector::new("unix", format!("path:/bin/w{i}"))],
            x509_svid_ttl: 300,
            dns_names: (0..dns).map(|d| format!("n{d}.w{i}.ztlab.test")).collect(),
            ..Entry::default()
        }
    }

    fn sizes(entries: &[Entry]) -> Vec<usize> {
        entries.iter().map(|e| prost::encoding::message::encoded_len(1, e)).collect()
    }

    fn sends(plan: &[Planned]) -> Vec<Range<usize>> {
        plan.iter()
            .filter_map(|p| match p {
                Planned::Send(r) => Some(r.clone()),
                Planned::TooLarge { .. } => None,
            })
            .collect()
    }

    #[test]
    fn many_entries_split_by_bytes_under_limit_in_order() {
        // ~3.5 KiB per entry, 2000 entries: ~7 MiB in total, far over one request.
        let entries: Vec<Entry> = (0..2000).map(|i| entry(i, 100)).collect();
        let sizes = sizes(&entries);
        let limits = ChunkLimits::default();
        let plan = plan_chunks(&sizes, 0, limits);
        let ranges = sends(&plan);
        assert_eq!(ranges.len(), plan.len(), "nothing is too large");
        let total: usize = sizes.iter().sum();
        assert!(total > 4 * 1024 * 1024, "the input is over the 4 MiB gRPC limit: {total}");
        assert!(ranges.len() >= total.div_ceil(limits.max_bytes), "split into several requests: {ranges:?}");
        // Order preserved and every index covered exactly once.
        let flat: Vec<usize> = ranges.iter().flat_map(Clone::clone).collect();
        assert_eq!(flat, (0..entries.len()).collect::<Vec<_>>());
        // Each real request encodes under the limit.
        for r in &ranges {
            let req = crate::spire::api::server::entry::v1::BatchCreateEntryRequest {
                entries: entries[r.clone()].to_vec(),
                output_mask: None,
            };
            assert!(req.encoded_len() <= limits.max_bytes, "{r:?}: {}", req.encoded_len());
            assert!(r.len() <= limits.max_items);
        }
    }

    #[test]
    fn many_small_entries_split_by_count() {
        let entries: Vec<Entry> = (0..1234).map(|i| entry(i, 0)).collect();
        let plan = plan_chunks(&sizes(&entries), 0, ChunkLimits::default());
        assert_eq!(sends(&plan), vec![0..500, 500..1000, 1000..1234], "500 per request");
    }

    #[test]
    fn overhead_counts_against_the_budget() {
        let plan = plan_chunks(&[40, 40, 40], 30, ChunkLimits { max_bytes: 110, max_items: 10 });
        assert_eq!(plan, vec![Planned::Send(0..2), Planned::Send(2..3)]);
    }

    #[test]
    fn oversized_item_is_isolated_and_order_kept() {
        let plan = plan_chunks(&[10, 10, 500, 10, 10, 10], 0, ChunkLimits { max_bytes: 25, max_items: 10 });
        assert_eq!(
            plan,
            vec![
                Planned::Send(0..2),
                Planned::TooLarge { index: 2, size: 500 },
                Planned::Send(3..5),
                Planned::Send(5..6),
            ]
        );
    }

    #[test]
    fn empty_input_plans_nothing() {
        assert!(plan_chunks(&[], 0, ChunkLimits::default()).is_empty());
    }

    #[test]
    fn exact_fit_stays_in_one_request() {
        let plan = plan_chunks(&[5, 5, 5], 0, ChunkLimits { max_bytes: 15, max_items: 3 });
        assert_eq!(plan, vec![Planned::Send(0..3)]);
    }
}
