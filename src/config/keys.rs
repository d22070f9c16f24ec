//! What a `[pgweir]` or `[pool]` key is: its section, the kind of value it takes, whether a
//! reload applies it, the PgBouncer setting it stands for, and how it is read from the file
//! and its value taken back out of a [`Config`]. The keys themselves are listed once, in
//! [`super::table`]; the loader, the reload's restart notes, SHOW CONFIG, the console's SET,
//! `pgweir convert` and the check of the README's reference all go through [`Key`], so no
//! two of them can disagree about a key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::reader::{self, Reader};
use super::table::KEYS;
use super::{
    AuthType, ClientTlsMode, Config, FileMode, FleetName, GeneralConfig, Histograms, ListenAddr,
    LogFormat, PoolMode, PoolSettings, ServerTlsMode,
};

/// The table of the file a key is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Pgweir,
    Pool,
}

impl Section {
    /// The table's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Section::Pgweir => "pgweir",
            Section::Pool => "pool",
        }
    }
}

/// Whether a reload puts a new value in force. Sockets, threads and the log are set up once
/// at start; existing pools keep the connect settings, shared limits and replica monitor they
/// were created with; and a client's pool mode and prepared-statement renaming must not
/// change under it. So those keys wait for a restart, and the reload says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A reload (or the console's SET) applies it.
    Live,
    /// A change waits for the next restart (or takeover).
    Restart,
}

/// The kind of value a key takes: how PgBouncer's spelling of it becomes pgweir's (for
/// `pgweir convert` and SET) and how SHOW CONFIG prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
    /// Seconds in PgBouncer's forms, a duration in the file.
    Duration,
    /// Milliseconds in PgBouncer's forms (`tcp_user_timeout`), a duration in the file.
    Millis,
    Str,
    /// A file or directory name.
    Path,
    /// A comma-separated list in PgBouncer's forms, an array in the file.
    List,
    /// One of these names.
    Choice(&'static [&'static str]),
}

/// A key's value, typed, so the reload compares durations as durations and each consumer
/// prints it in its own form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(u64),
    Bool(bool),
    Duration(Duration),
    Text(String),
    List(Vec<String>),
    /// Not set, and no default either.
    Unset,
}

impl Value {
    /// As the config file spells it, unquoted: SHOW CONFIG's form for pgweir's own keys.
    fn file_form(&self, kind: Kind) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Duration(d) if kind == Kind::Millis => d.as_millis().to_string(),
            Value::Duration(d) => duration(*d),
            Value::Text(text) => text.clone(),
            Value::List(items) => items.join(","),
            Value::Unset => String::new(),
        }
    }
}

/// One key of `[pgweir]` or `[pool]`; every one is in [`Key::all`].
pub struct Key {
    pub name: &'static str,
    pub section: Section,
    pub kind: Kind,
    pub reload: Reload,
    /// The `[pgbouncer]` setting of PgBouncer's this key carries over; `None` for pgweir's
    /// own. The console shows and takes the values of PgBouncer's keys in PgBouncer's forms.
    pub pgbouncer: Option<&'static str>,
    /// Takes the key from its table into the configuration being built, if set.
    pub(super) read: fn(&mut Reader<'_>, &mut reader::Section<'_>, &mut Config),
    /// The key's value in a configuration.
    pub(super) value: fn(&Config) -> Value,
}

impl Key {
    /// Every key, in SHOW CONFIG's order.
    pub fn all() -> &'static [Key] {
        KEYS
    }

    /// The key called `name`.
    pub fn named(name: &str) -> Option<&'static Key> {
        KEYS.iter().find(|k| k.name == name)
    }

    /// The key PgBouncer's `[pgbouncer]` setting `setting` becomes.
    pub fn for_pgbouncer(setting: &str) -> Option<&'static Key> {
        KEYS.iter().find(|k| k.pgbouncer == Some(setting))
    }

    /// The key's value in `config`.
    pub fn value(&self, config: &Config) -> Value {
        (self.value)(config)
    }

    /// The key's value when the file does not set it.
    pub fn default_value(&self) -> Value {
        (self.value)(&Config::defaults())
    }

    /// `value` as SHOW CONFIG prints it: PgBouncer's forms for PgBouncer's keys, which
    /// scripts parse (seconds as bare numbers, `0.5` for half of one; booleans as 0/1), the
    /// config file's for pgweir's own (`"100ms"`, `true`); lists comma-separated, unset empty.
    pub fn shown(&self, value: &Value) -> String {
        match value {
            _ if self.pgbouncer.is_none() => value.file_form(self.kind),
            Value::Bool(b) => u8::from(*b).to_string(),
            Value::Duration(d) if self.kind == Kind::Duration => seconds(*d),
            _ => value.file_form(self.kind),
        }
    }
}

impl Config {
    /// Every `[pgweir]` and `[pool]` default, and no database or user yet: where the loader
    /// starts, and what SHOW CONFIG's defaults are read from.
    pub(super) fn defaults() -> Config {
        Config {
            pgweir: GeneralConfig::default(),
            pool: PoolSettings::default(),
            databases: BTreeMap::new(),
            users: BTreeMap::new(),
        }
    }

    /// The restart-only keys whose values differ from `self` in `new`, which a reload to
    /// `new` cannot apply.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        KEYS.iter()
            .filter(|k| k.reload == Reload::Restart && k.value(self) != k.value(new))
            .map(|k| k.name)
            .collect()
    }
}

/// Reads every key of `section` from `sec` into `config`.
pub(super) fn read(
    r: &mut Reader<'_>,
    sec: &mut reader::Section<'_>,
    section: Section,
    config: &mut Config,
) {
    // `admin_users` and `stats_users` may name users of the auth file, so it comes first.
    let (first, rest): (Vec<&Key>, Vec<&Key>) = KEYS
        .iter()
        .filter(|k| k.section == section)
        .partition(|k| k.name == "auth_file");
    for key in first.into_iter().chain(rest) {
        (key.read)(r, sec, config);
    }
}

/// Seconds as PgBouncer writes them: `30`, or `0.5` for less than whole ones.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        d.as_secs_f64().to_string()
    }
}

/// A duration as the config file would spell it: `0`, whole seconds as `30s`, anything finer
/// in milliseconds.
fn duration(d: Duration) -> String {
    match d.as_millis() {
        0 => "0".to_owned(),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A configuration field's [`Value`], so a table line needs only the field's path.
pub(super) trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Unset, T::to_value)
    }
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(u64::from(*self))
            }
        }
    )*};
}
int_values!(u16, u32);

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(*self as u64)
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl ToValue for Duration {
    fn to_value(&self) -> Value {
        Value::Duration(*self)
    }
}

impl ToValue for Vec<String> {
    fn to_value(&self) -> Value {
        Value::List(self.clone())
    }
}

impl ToValue for PathBuf {
    fn to_value(&self) -> Value {
        Value::Text(self.display().to_string())
    }
}

macro_rules! text_values {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Text(self.to_string())
            }
        }
    )*};
}
text_values!(String, ListenAddr, SocketAddr, FleetName, FileMode);

macro_rules! choice_values {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Text(self.as_str().to_owned())
            }
        }
    )*};
}
choice_values!(
    AuthType,
    PoolMode,
    LogFormat,
    Histograms,
    ClientTlsMode,
    ServerTlsMode
);
