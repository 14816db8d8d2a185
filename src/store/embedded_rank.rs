//! Positions in the embedded listing order without a walk from the start.
//!
//! A directory page is "entries `offset .. offset + limit` of the tenant's
//! order table" (keys `(tenant, created ms, id)`). redb has no rank query,
//! so a plain skip reads every entry before the page: 500,000 of them for
//! the middle page of a million users. This table counts the live entries
//! per time bucket at four levels (buckets of 2^10, 2^18, 2^26 and 2^34 ms:
//! about 1 s, 4.4 min, 18.6 h and 200 days), each bucket holding at most
//! 256 buckets of the level below. Finding the bucket of position `offset`
//! reads at most a few hundred counts per level, top down, and leaves only
//! the entries of one ~1 s bucket to skip; a write updates four counts.
//!
//! `dir_order_buckets`: (tenant, kind, level << 56 | bucket) → live entries.

use redb::{ReadableTable, Table, TableDefinition};

use super::{StoreError, StoreResult};

type Node = (&'static str, &'static str, u64);
pub(super) const BUCKETS: TableDefinition<Node, u64> = TableDefinition::new("dir_order_buckets");

/// Bit shift of the bucket number per level, finest first; each level
/// groups 2^8 buckets of the one below.
const SHIFTS: [u32; 4] = [10, 18, 26, 34];
const FANOUT_BITS: u32 = 8;
const LEVEL_BITS: u32 = 56;
const BUCKET_MASK: u64 = (1 << LEVEL_BITS) - 1;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

/// The key of `created_ms`'s bucket at `level` (0 = finest).
fn node(level: usize, created_ms: u64) -> u64 {
    ((level as u64) << LEVEL_BITS) | ((created_ms >> SHIFTS[level]) & BUCKET_MASK)
}

/// Every (level key, +1) an entry created at `created_ms` contributes.
pub(super) fn nodes(created_ms: u64) -> impl Iterator<Item = u64> {
    (0..SHIFTS.len()).map(move |level| node(level, created_ms))
}

/// Adds `delta` to the counts of every bucket holding `created_ms`
/// (a count that reaches 0 is removed, so empty buckets cost no reads).
pub(super) fn adjust(
    table: &mut Table<'_, Node, u64>,
    tenant: &str,
    kind: &str,
    created_ms: u64,
    delta: i64,
) -> StoreResult<()> {
    for n in nodes(created_ms) {
        let now = table
            .get((tenant, kind, n))
            .map_err(err)?
            .map(|v| v.value())
            .unwrap_or(0);
        let next = now.checked_add_signed(delta).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "listing bucket {n:#x} of {tenant}/{kind} below zero"
            ))
        })?;
        if next == 0 {
            table.remove((tenant, kind, n)).map_err(err)?;
        } else {
            table.insert((tenant, kind, n), next).map_err(err)?;
        }
    }
    Ok(())
}

/// Where position `offset` (0-based, in listing order) lies: the first
/// created-ms of its finest bucket and how many entries of that bucket's
/// range come before it. `None` when the tenant has `offset` entries or
/// fewer.
pub(super) fn seek(
    table: &impl ReadableTable<Node, u64>,
    tenant: &str,
    kind: &str,
    offset: u64,
) -> StoreResult<Option<(u64, u64)>> {
    let mut remaining = offset;
    // The top level spans every bucket; a lower one the children of the
    // bucket found above it.
    let (mut from, mut to) = (0u64, BUCKET_MASK);
    let mut found = 0u64;
    for level in (0..SHIFTS.len()).rev() {
        let lo = ((level as u64) << LEVEL_BITS) | from;
        let hi = ((level as u64) << LEVEL_BITS) | to;
        let mut hit = None;
        for entry in table
            .range((tenant, kind, lo)..=(tenant, kind, hi))
            .map_err(err)?
        {
            let (k, v) = entry.map_err(err)?;
            let n = v.value();
            if remaining < n {
                hit = Some(k.value().2 & BUCKET_MASK);
                break;
            }
            remaining -= n;
        }
        let Some(bucket) = hit else {
            return Ok(None);
        };
        found = bucket;
        from = bucket << FANOUT_BITS;
        to = from | ((1 << FANOUT_BITS) - 1);
    }
    Ok(Some((found << SHIFTS[0], remaining)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableTableMetadata, TableDefinition};

    type Ordered = (&'static str, u64, &'static str);
    const ORDER: TableDefinition<Ordered, ()> = TableDefinition::new("order");

    /// Ids at `offset..offset+limit` found through `seek`, as the store does.
    fn page(db: &Database, t: &str, offset: u64, limit: usize) -> Vec<(u64, String)> {
        let txn = db.begin_read().unwrap();
        let buckets = txn.open_table(BUCKETS).unwrap();
        let order = txn.open_table(ORDER).unwrap();
        let Some((start, skip)) = seek(&buckets, t, "users", offset).unwrap() else {
            return Vec::new();
        };
        order
            .range((t, start, "")..=(t, u64::MAX, "\u{10FFFF}"))
            .unwrap()
            .skip(skip as usize)
            .take(limit)
            .map(|e| {
                let (k, _) = e.unwrap();
                (k.value().1, k.value().2.to_string())
            })
            .collect()
    }

    /// The same page by walking the whole order from the start.
    fn naive(db: &Database, t: &str, offset: u64, limit: usize) -> Vec<(u64, String)> {
        let txn = db.begin_read().unwrap();
        let order = txn.open_table(ORDER).unwrap();
        order
            .range((t, 0u64, "")..=(t, u64::MAX, "\u{10FFFF}"))
            .unwrap()
            .skip(offset as usize)
            .take(limit)
            .map(|e| {
                let (k, _) = e.unwrap();
                (k.value().1, k.value().2.to_string())
            })
            .collect()
    }

    fn put(db: &Database, t: &str, created: u64, id: &str, add: bool) {
        let txn = db.begin_write().unwrap();
        {
            let mut order = txn.open_table(ORDER).unwrap();
            let mut buckets = txn.open_table(BUCKETS).unwrap();
            if add {
                assert!(order.insert((t, created, id), ()).unwrap().is_none());
                adjust(&mut buckets, t, "users", created, 1).unwrap();
            } else {
                assert!(order.remove((t, created, id)).unwrap().is_some());
                adjust(&mut buckets, t, "users", created, -1).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    /// Every offset, across bursts in one millisecond, entries spread over
    /// years (every level's boundaries), a second tenant interleaved and
    /// deletions, agrees with a walk from the start.
    #[test]
    fn seek_agrees_with_a_walk_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("r.redb")).unwrap();
        let base = 1_764_000_000_000u64;
        let mut created = Vec::new();
        // A burst in one millisecond, one per second, one per hour, one
        // per 100 days, and bucket-boundary values.
        for i in 0..40 {
            created.push(base);
            created.push(base + i * 1_000);
            created.push(base + i * 3_600_000);
            created.push(base + i * 8_640_000_000);
        }
        for s in SHIFTS {
            created.push((base >> s << s) - 1);
            created.push(base >> s << s);
        }
        created.push(0);
        for (i, c) in created.iter().enumerate() {
            put(&db, "t1", *c, &format!("u{i:04}"), true);
            put(&db, "t0", *c, &format!("v{i:04}"), true);
        }
        let mut removed = 0;
        for (i, c) in created.iter().enumerate().filter(|(i, _)| i % 7 == 3) {
            put(&db, "t1", *c, &format!("u{i:04}"), false);
            removed += 1;
        }
        let live = naive(&db, "t1", 0, usize::MAX).len() as u64;
        assert_eq!(live, (created.len() - removed) as u64);
        for offset in 0..=live + 2 {
            for limit in [1, 3, 100] {
                assert_eq!(
                    page(&db, "t1", offset, limit),
                    naive(&db, "t1", offset, limit),
                    "offset {offset} limit {limit}"
                );
            }
        }
        assert!(page(&db, "t1", live, 5).is_empty());
        assert!(page(&db, "nobody", 0, 5).is_empty());
    }

    /// Removing the last entry of a bucket removes its counts: an emptied
    /// tenant leaves no rows behind.
    #[test]
    fn emptied_buckets_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("r.redb")).unwrap();
        put(&db, "t", 5_000_000, "a", true);
        put(&db, "t", 5_000_001, "b", true);
        put(&db, "t", 5_000_000, "a", false);
        put(&db, "t", 5_000_001, "b", false);
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(BUCKETS).unwrap().len().unwrap(), 0);
    }

    /// A count below zero (a record removed twice) is reported, not
    /// wrapped around.
    #[test]
    fn a_count_below_zero_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("r.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let mut buckets = txn.open_table(BUCKETS).unwrap();
        assert!(adjust(&mut buckets, "t", "users", 7, -1).is_err());
    }
}
