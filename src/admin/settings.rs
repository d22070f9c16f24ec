//! SHOW CONFIG: every `[pgweir]` and `[pool]` key, in the order of the configuration's key
//! table ([`Key::all`]), with its value, its default and whether it can change without a
//! restart (`changeable`: whether a reload applies it). Values are printed as
//! [`Key::shown`] says: PgBouncer's forms for PgBouncer's keys, which scripts parse, the
//! config file's for pgweir's own. The per-database and per-user tables are not listed
//! (SHOW DATABASES and SHOW USERS show them), so no password is ever shown: the only
//! secrets are in those tables.

use bytes::BytesMut;

use super::result::{ResultSet, Type};
use crate::app::App;
use crate::config::{Key, Reload};

pub const CONFIG: [(&str, Type); 4] = [
    ("key", Type::Text),
    ("value", Type::Text),
    ("default", Type::Text),
    ("changeable", Type::Text),
];

pub fn config(app: &App, out: &mut BytesMut) {
    let config = app.config();
    let mut rs = ResultSet::new(out, &CONFIG);
    for key in Key::all() {
        let value = key.shown(&key.value(&config));
        let default = key.shown(&key.default_value());
        let changeable = match key.reload {
            Reload::Live => "yes",
            Reload::Restart => "no",
        };
        rs.row([
            key.name.into(),
            value.into(),
            default.into(),
            changeable.into(),
        ]);
    }
    rs.finish();
}
