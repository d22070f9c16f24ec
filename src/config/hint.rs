//! What to say about a key no section knows: the table it belongs in when another table
//! has it (a `[pgweir]` key written under `[pool]`), else the closest key of its own table
//! (a typo), else nothing more. Pure; [`super::reader`] collects the known keys of every
//! table and asks here once the whole file has been read.

/// The message for `key`, unknown in the table at `table` (a dotted path), given the keys
/// each table of the file knows.
pub(super) fn unknown_key(table: &str, key: &str, known: &[(String, Vec<String>)]) -> String {
    // [pgweir] and [pool] first: a key they know is more likely meant there than for
    // one database or user.
    let has = |(t, keys): &&(String, Vec<String>)| {
        t != table && !t.is_empty() && keys.iter().any(|k| k == key)
    };
    let elsewhere = (known.iter().filter(|(t, _)| !t.contains('.')).find(has))
        .or_else(|| known.iter().find(has));
    if let Some((other, _)) = elsewhere {
        return format!("unknown key here; `{key}` belongs in [{}]", generic(other));
    }
    let own = known
        .iter()
        .find(|(t, _)| t == table)
        .map_or(&[][..], |(_, keys)| keys.as_slice());
    match closest(key, own) {
        Some(near) => format!("unknown key; did you mean `{near}`?"),
        None => "unknown key".to_owned(),
    }
}

/// A table path as the reference names it: `databases.app` is `databases.NAME`.
fn generic(table: &str) -> String {
    for kind in ["databases", "users"] {
        if let Some(rest) = table.strip_prefix(kind).and_then(|r| r.strip_prefix('.')) {
            let sub = rest.find(['.', '[']).map_or("", |i| &rest[i..]);
            return format!("{kind}.NAME{sub}");
        }
    }
    table.to_owned()
}

/// The known key nearest to `key`, if a few typing slips away (two, or one in four
/// letters of a long key; a swapped pair of letters counts as two).
fn closest<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    let limit = (key.chars().count() / 4).max(2);
    known
        .iter()
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance: insertions, deletions and substitutions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<(String, Vec<String>)> {
        let table = |name: &str, keys: &[&str]| {
            (
                name.to_owned(),
                keys.iter().map(|k| k.to_string()).collect(),
            )
        };
        vec![
            table("", &["pgweir", "pool", "databases", "users"]),
            table("pgweir", &["listen_addr", "listen_port", "max_client_conn"]),
            table("pool", &["default_pool_size", "pool_mode"]),
            table("users.bob", &["password", "pool_mode"]),
            table("databases.app", &["host", "pool_size"]),
        ]
    }

    #[test]
    fn a_key_of_another_table_says_where_it_belongs() {
        let k = known();
        assert_eq!(
            unknown_key("pool", "max_client_conn", &k),
            "unknown key here; `max_client_conn` belongs in [pgweir]"
        );
        assert_eq!(
            unknown_key("pool", "pool_size", &k),
            "unknown key here; `pool_size` belongs in [databases.NAME]"
        );
        assert_eq!(
            unknown_key("pgweir", "pool_mode", &k),
            "unknown key here; `pool_mode` belongs in [pool]"
        );
        assert_eq!(
            unknown_key("", "listen_port", &k),
            "unknown key here; `listen_port` belongs in [pgweir]"
        );
    }

    #[test]
    fn a_typo_gets_the_nearest_key_and_nonsense_gets_nothing() {
        let k = known();
        assert_eq!(
            unknown_key("pool", "default_pool_sise", &k),
            "unknown key; did you mean `default_pool_size`?"
        );
        assert_eq!(
            unknown_key("pgweir", "listen_adr", &k),
            "unknown key; did you mean `listen_addr`?"
        );
        assert_eq!(
            unknown_key("databases.app", "hots", &k),
            "unknown key; did you mean `host`?"
        );
        assert_eq!(unknown_key("pgweir", "frobnicate", &k), "unknown key");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
