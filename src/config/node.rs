//! Which server of a database a pool, a metric or a console row is about: the primary or
//! one of its replicas. Named here, with the `[databases]` it indexes, so the pools, the
//! metrics and the console agree on the names (`replica0`, `db/replica0`).

/// One server of a database: its primary, or the replica at this index of `replicas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Node {
    #[default]
    Primary,
    Replica(usize),
}

impl Node {
    /// The `node` label of metrics: `primary`, `replica0`, `replica1`, ...
    pub fn label(self) -> String {
        match self {
            Node::Primary => "primary".to_owned(),
            Node::Replica(i) => format!("replica{i}"),
        }
    }

    /// The `database` column of the console's per-node rows: the database for its primary,
    /// `database/replica0` for a replica, so the rows of one (database, user) stay apart for
    /// tools that key on those two columns (the Prometheus pgbouncer_exporter).
    pub fn console_name(self, database: &str) -> String {
        match self {
            Node::Primary => database.to_owned(),
            Node::Replica(_) => format!("{database}/{}", self.label()),
        }
    }
}
