//! The admin console's answers on the wire: a [`ResultSet`] writes RowDescription (each
//! column's name and type OID, as PgBouncer declares them), DataRows in text format and
//! CommandComplete `SHOW`; [`notice`] and [`empty_query`] write the other two messages the
//! console sends. Also [`timestamp`], PgBouncer's text form of a point in time.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

use crate::protocol::backend::{self, cstr, message};

/// A column's type. PgBouncer declares counts in SHOW POOLS and its like as `int4`, the
/// SHOW STATS totals as `numeric` (they outgrow `int8` in microseconds), names, modes and
/// timestamps as `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Text,
    Int4,
    Int8,
    Numeric,
    /// Only ever NULL here (SHOW FDS's SCRAM keys).
    Bytea,
}

impl Type {
    pub fn oid(self) -> u32 {
        match self {
            Type::Text => 25,
            Type::Int4 => 23,
            Type::Int8 => 20,
            Type::Numeric => 1700,
            Type::Bytea => 17,
        }
    }

    fn size(self) -> i16 {
        match self {
            Type::Text | Type::Numeric | Type::Bytea => -1,
            Type::Int4 => 4,
            Type::Int8 => 8,
        }
    }
}

/// One field of a row, already in text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

macro_rules! number_values {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Text(n.to_string())
            }
        }
    )*};
}
number_values!(u16, i32, u32, u64, usize);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A result set being written into `out`.
#[derive(Debug)]
pub struct ResultSet<'a> {
    out: &'a mut BytesMut,
}

impl<'a> ResultSet<'a> {
    /// Starts the result with its RowDescription.
    pub fn new(out: &'a mut BytesMut, columns: &[(&str, Type)]) -> Self {
        message(out, b'T', |b| {
            b.put_i16(columns.len() as i16);
            for (name, ty) in columns {
                cstr(b, name);
                b.put_u32(0); // no table
                b.put_i16(0); // no column number
                b.put_u32(ty.oid());
                b.put_i16(ty.size());
                b.put_i32(-1); // no type modifier
                b.put_i16(0); // text format
            }
        });
        ResultSet { out }
    }

    /// One DataRow, its fields in column order.
    pub fn row(&mut self, values: impl IntoIterator<Item = Value>) {
        let values: Vec<Value> = values.into_iter().collect();
        message(self.out, b'D', |b| {
            b.put_i16(values.len() as i16);
            for v in &values {
                match v {
                    Value::Null => b.put_i32(-1),
                    Value::Text(s) => {
                        b.put_i32(s.len() as i32);
                        b.put_slice(s.as_bytes());
                    }
                }
            }
        });
    }

    /// Ends the result with CommandComplete `SHOW`, as PgBouncer tags every SHOW.
    pub fn finish(self) {
        backend::command_complete(self.out, "SHOW");
    }
}

/// A NoticeResponse with a detail, as SHOW HELP answers.
pub fn notice(out: &mut BytesMut, message_text: &str, detail: &str) {
    message(out, b'N', |b| {
        for (field, value) in [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "00000"),
            (b'M', message_text),
            (b'D', detail),
        ] {
            b.put_u8(field);
            cstr(b, value);
        }
        b.put_u8(0);
    });
}

/// EmptyQueryResponse: the answer to a query with no command in it.
pub fn empty_query(out: &mut BytesMut) {
    message(out, b'I', |_| {});
}

/// `t` as PgBouncer shows connect and request times, in UTC: `2024-05-01 12:34:56 UTC`.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use postgres_protocol::message::backend::Message;

    use super::*;

    #[test]
    fn a_result_set_is_a_row_description_rows_and_show() {
        let mut out = BytesMut::new();
        let mut rs = ResultSet::new(&mut out, &[("name", Type::Text), ("n", Type::Int4)]);
        rs.row(["a".into(), 7usize.into()]);
        rs.row([Value::Null, Value::from(None::<u64>)]);
        rs.finish();
        let Ok(Some(Message::RowDescription(desc))) = Message::parse(&mut out) else {
            panic!("a RowDescription first");
        };
        let mut fields = desc.fields();
        let first = fallible_iterator::FallibleIterator::next(&mut fields)
            .unwrap()
            .unwrap();
        assert_eq!((first.name(), first.type_oid()), ("name", 25));
        let second = fallible_iterator::FallibleIterator::next(&mut fields)
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.name(), second.type_oid(), second.type_size()),
            ("n", 23, 4)
        );
        let Ok(Some(Message::DataRow(row))) = Message::parse(&mut out) else {
            panic!("a DataRow");
        };
        let ranges: Vec<_> = fallible_iterator::FallibleIterator::collect(row.ranges()).unwrap();
        let text: Vec<_> = ranges
            .iter()
            .map(|r| r.clone().map(|r| &row.buffer()[r]))
            .collect();
        assert_eq!(text, vec![Some(&b"a"[..]), Some(&b"7"[..])]);
        let Ok(Some(Message::DataRow(row))) = Message::parse(&mut out) else {
            panic!("a second DataRow");
        };
        let nulls: Vec<_> = fallible_iterator::FallibleIterator::collect(row.ranges()).unwrap();
        assert_eq!(nulls, vec![None, None]);
        let Ok(Some(Message::CommandComplete(done))) = Message::parse(&mut out) else {
            panic!("CommandComplete last");
        };
        assert_eq!(done.tag().unwrap(), "SHOW");
        assert!(out.is_empty());
    }

    #[test]
    fn timestamps_are_utc_calendar_times() {
        let at = |secs| timestamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_714_566_896), "2024-05-01 12:34:56 UTC");
        assert_eq!(at(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn a_notice_carries_its_message_and_detail() {
        let mut out = BytesMut::new();
        notice(&mut out, "Console usage", "SHOW HELP");
        let Ok(Some(Message::NoticeResponse(n))) = Message::parse(&mut out) else {
            panic!("a NoticeResponse");
        };
        let mut fields = n.fields();
        let mut seen = Vec::new();
        while let Ok(Some(f)) = fallible_iterator::FallibleIterator::next(&mut fields) {
            seen.push((
                f.type_(),
                String::from_utf8_lossy(f.value_bytes()).into_owned(),
            ));
        }
        assert!(seen.contains(&(b'M', "Console usage".to_owned())));
        assert!(seen.contains(&(b'D', "SHOW HELP".to_owned())));
    }
}
