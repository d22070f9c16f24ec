//! WAL positions ([`Lsn`]) as the monitor reads them from Postgres's `X/Y` text, and
//! [`replayed`]: whether a replica's replay position covers a primary's insert position.
//! [`super::freshness`] builds every routing answer on these two.

use std::fmt;

/// A WAL position: a byte offset into the write-ahead log.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Lsn(pub u64);

/// Postgres accepts at most 8 hex digits on each side of the `/`.
const MAX_HALF_DIGITS: usize = 8;

/// Bytes of every WAL page; each starts with a header, so no record ends inside one.
const PAGE_SIZE: u64 = 8192;
/// The short page header on every page but the first of a segment.
const SHORT_HEADER: u64 = 24;
/// The default (and the only assumed) WAL segment size.
const SEGMENT_SIZE: u64 = 16 << 20;
/// The long page header at the start of each segment.
const LONG_HEADER: u64 = 40;

impl Lsn {
    /// Reads Postgres's text form (`16/B374D848`): two hex numbers of 1 to 8 digits, upper
    /// and lower 32 bits, as the `pg_lsn` type accepts them. Anything else is None.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.split_once('/')?;
        Some(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

/// One side of the `/`; `from_str_radix` alone would also take a sign.
fn half(text: &str) -> Option<u64> {
    let digits_only = text.bytes().all(|b| b.is_ascii_hexdigit());
    if text.is_empty() || text.len() > MAX_HALF_DIGITS || !digits_only {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

impl fmt::Display for Lsn {
    /// As Postgres prints it, so logs can be compared with `pg_stat_replication`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Whether a replica that has replayed up to `replay` has everything the primary had written
/// when its insert position was `target`.
///
/// `pg_current_wal_insert_lsn()` on an idle primary whose last record ended exactly at a page
/// boundary points past the next page's header, while the replica's
/// `pg_last_wal_replay_lsn()` stops at the boundary: without this rule a caught-up replica
/// would look behind until the primary writes again. No record can end inside a header, so a
/// `target` just past one means the boundary.
pub fn replayed(replay: Lsn, target: Lsn) -> bool {
    let (replay, target) = (replay.0, target.0);
    if replay >= target {
        return true;
    }
    let past_short_header = target % PAGE_SIZE == SHORT_HEADER;
    let past_long_header = target % SEGMENT_SIZE == LONG_HEADER;
    (past_short_header && replay >= target - SHORT_HEADER)
        || (past_long_header && replay >= target - LONG_HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_text() {
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn::parse("16/B374D848"), Some(Lsn(0x16_B374_D848)));
        assert_eq!(Lsn::parse("0/3000060"), Some(Lsn(0x300_0060)));
        assert_eq!(Lsn::parse("a/bc"), Some(Lsn(0xA_0000_00BC)));
        assert_eq!(Lsn::parse("FFFFFFFF/FFFFFFFF"), Some(Lsn(u64::MAX)));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "0/0",
            "16/B374D848",
            "0/3000060",
            "FFFFFFFF/FFFFFFFF",
            "1/0",
        ] {
            let lsn = Lsn::parse(text).expect(text);
            assert_eq!(lsn.to_string(), text);
        }
        for raw in [0, 1, 0x1_0000_0000, 0xDEAD_BEEF_0000_0001, u64::MAX] {
            assert_eq!(Lsn::parse(&Lsn(raw).to_string()), Some(Lsn(raw)));
        }
    }

    #[test]
    fn rejects_bad_text() {
        let bad = [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "0/0/0",
            "g/0",
            "0/x",
            "+1/0",
            "0/-1",
            " 0/0",
            "0/0 ",
            "123456789/0",
            "0/123456789",
            "0//0",
            "é/0",
            "0x1/0",
        ];
        for text in bad {
            assert_eq!(Lsn::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn orders_by_position() {
        assert!(Lsn::parse("1/0") > Lsn::parse("0/FFFFFFFF"));
        assert!(Lsn(5) < Lsn(6));
    }

    #[test]
    fn replayed_plainly() {
        assert!(replayed(Lsn(100), Lsn(100)));
        assert!(replayed(Lsn(101), Lsn(100)));
        assert!(!replayed(Lsn(99), Lsn(100)));
        assert!(replayed(Lsn(0), Lsn(0)));
    }

    #[test]
    fn a_page_header_past_the_boundary_counts_as_replayed() {
        let boundary = 5 * PAGE_SIZE;
        let target = Lsn(boundary + SHORT_HEADER);
        assert!(replayed(Lsn(boundary), target));
        assert!(replayed(Lsn(boundary + 8), target));
        assert!(!replayed(Lsn(boundary - 8), target));
    }

    #[test]
    fn only_a_header_past_a_boundary_is_forgiven() {
        let boundary = 5 * PAGE_SIZE;
        // A record ending anywhere else must really be replayed.
        assert!(!replayed(Lsn(boundary), Lsn(boundary + 32)));
        assert!(!replayed(Lsn(boundary), Lsn(boundary + 16)));
        // A long header only exists at a segment start.
        assert!(!replayed(Lsn(boundary), Lsn(boundary + LONG_HEADER)));
    }

    #[test]
    fn a_segment_header_past_the_boundary_counts_as_replayed() {
        let boundary = 3 * SEGMENT_SIZE;
        let target = Lsn(boundary + LONG_HEADER);
        assert!(replayed(Lsn(boundary), target));
        assert!(!replayed(Lsn(boundary - 8), target));
    }

    #[test]
    fn never_underflows_near_zero() {
        assert!(replayed(Lsn(0), Lsn(SHORT_HEADER)));
        assert!(replayed(Lsn(0), Lsn(LONG_HEADER)));
        assert!(!replayed(Lsn(0), Lsn(8)));
    }
}
