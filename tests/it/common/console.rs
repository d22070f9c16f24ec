//! The admin console as tests talk to it: a pgweir with an admin user and a stats user,
//! console logins, and SHOW results as column names and text rows.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{within, Pgweir, PgweirBuilder};

/// A user in `admin_users`, and one in `stats_users`.
pub const ADMIN: (&str, &str) = ("console_admin", "admin-pw-7f3a");
pub const WATCHER: (&str, &str) = ("console_stats", "stats-pw-91c2");

pub fn with_console() -> PgweirBuilder {
    Pgweir::builder()
        .user(ADMIN.0, ADMIN.1)
        .user(WATCHER.0, WATCHER.1)
        .general(&format!("admin_users = [\"{}\"]", ADMIN.0))
        .general(&format!("stats_users = [\"{}\"]", WATCHER.0))
}

pub async fn console(pgweir: &Pgweir, (user, password): (&str, &str), db: &str) -> Client {
    match pgweir.try_connect(user, password, db).await {
        Ok(client) => client,
        Err(e) => panic!("console login as {user} to {db}: {e:?}\n{}", pgweir.log()),
    }
}

/// One SHOW's column names and rows (text values, None for NULL).
pub struct Shown {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Shown {
    /// The rows whose `column` is `value`.
    pub fn rows_where(&self, column: &str, value: &str) -> Vec<&Vec<Option<String>>> {
        let i = self.index(column);
        let matches = |r: &&Vec<Option<String>>| r[i].as_deref() == Some(value);
        self.rows.iter().filter(matches).collect()
    }

    /// `column` of the only row whose `key` column is `value`.
    pub fn get(&self, key: &str, value: &str, column: &str) -> Option<String> {
        let rows = self.rows_where(key, value);
        assert_eq!(
            rows.len(),
            1,
            "one row with {key} = {value}: {:?}",
            self.rows
        );
        rows[0][self.index(column)].clone()
    }

    pub fn index(&self, column: &str) -> usize {
        let found = self.columns.iter().position(|c| c == column);
        found.unwrap_or_else(|| panic!("no column {column} in {:?}", self.columns))
    }
}

pub async fn show(client: &Client, command: &str) -> Shown {
    let messages = within(10, command, client.simple_query(command))
        .await
        .unwrap_or_else(|e| panic!("{command}: {e:?}"));
    let mut shown = Shown {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                shown.columns = cols.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                shown.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    shown
}
