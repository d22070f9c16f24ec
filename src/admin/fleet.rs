//! SHOW FLEET, pgweir's own: one row per connection limit this process coordinates with
//! the other members of its fleet ([`crate::fleet`]): the budget, how many members share
//! it, this process's fair share, the slots it holds, the servers it has open against
//! them and could use, and whether it waits for more. No rows without `fleet`.

use bytes::BytesMut;

use super::result::{ResultSet, Type};
use crate::app::App;

pub const FLEET: [(&str, Type); 12] = [
    ("fleet", Type::Text),
    ("member", Type::Text),
    ("kind", Type::Text),
    ("name", Type::Text),
    ("budget", Type::Int4),
    ("members", Type::Int4),
    ("share", Type::Int4),
    ("held", Type::Int4),
    ("used", Type::Int4),
    ("want", Type::Int4),
    ("waiting", Type::Int4),
    ("connected", Type::Int4),
];

pub fn fleet(app: &App, out: &mut BytesMut) {
    let mut rs = ResultSet::new(out, &FLEET);
    if let Some(fleet) = app.pools.fleet() {
        for r in fleet.report() {
            let s = r.status;
            rs.row([
                fleet.name.as_str().into(),
                fleet.id.as_str().into(),
                r.kind.as_str().into(),
                r.name.into(),
                r.max.into(),
                s.members.into(),
                s.share.into(),
                s.held.into(),
                r.used.into(),
                r.want.into(),
                usize::from(s.waiting).into(),
                usize::from(s.connected).into(),
            ]);
        }
    }
    rs.finish();
}
