//! A database's servers as one client user sees them: the primary's pool and one pool per
//! streaming replica, sharing a prepared-statement registry, with the routing settings and
//! the WAL monitor ([`crate::route::Monitor`]) the relay consults to choose among them.
//! Built by [`super::Pools`]; the relay asks [`PoolGroup::choose`] for a node per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Pool;
use crate::config::{DatabaseConfig, Node, ReadRouting, ReplicaConfig, Secret, Target};
use crate::route::{pick, Candidate, Monitor};
use crate::server::ServerTarget;
use crate::sql::ReadOnlyFunctions;
use crate::stats::GroupStats;

/// Where a database's reads may go, from its configuration.
#[derive(Debug)]
pub struct Routing {
    pub read_routing: ReadRouting,
    pub target: Target,
    pub read_your_writes: bool,
    /// Functions the operator declared read-only, on top of the built-in list.
    pub functions: ReadOnlyFunctions,
}

/// What a group's servers and routing were built from: if a reload changes any of it, the
/// group is replaced rather than changed under its clients.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    target: (String, u16, String, String, Option<Secret>),
    replicas: Vec<ReplicaConfig>,
    routing: (ReadRouting, Target, Duration, bool, Vec<String>),
}

impl Origin {
    /// `primary` is the server the group logs in to, with the password it uses.
    pub fn of(db: &DatabaseConfig, primary: &ServerTarget) -> Origin {
        let p = primary;
        Origin {
            target: (
                p.host.clone(),
                p.port,
                p.dbname.clone(),
                p.user.clone(),
                p.password.clone(),
            ),
            replicas: db.replicas.clone(),
            routing: (
                db.read_routing,
                db.target,
                db.max_replica_lag,
                db.read_your_writes,
                db.read_only_functions.clone(),
            ),
        }
    }
}

/// A replica's pool and its share of the reads.
#[derive(Debug)]
pub struct ReplicaPool {
    pub pool: Arc<Pool>,
    pub weight: u32,
}

#[derive(Debug)]
pub struct PoolGroup {
    pub primary: Arc<Pool>,
    pub replicas: Vec<ReplicaPool>,
    pub routing: Routing,
    /// Present when there are replicas.
    pub monitor: Option<Arc<Monitor>>,
    /// What its clients did, over all nodes (shared with the groups that replace it).
    pub stats: Arc<GroupStats>,
    /// The configuration its servers and routing came from, to tell after a reload
    /// whether it still describes them.
    pub origin: Origin,
    /// Rotates among equally loaded candidates.
    turn: AtomicU64,
}

impl PoolGroup {
    pub fn new(
        primary: Arc<Pool>,
        replicas: Vec<ReplicaPool>,
        routing: Routing,
        monitor: Option<Arc<Monitor>>,
        origin: Origin,
        stats: Arc<GroupStats>,
    ) -> Self {
        PoolGroup {
            origin,
            stats,
            primary,
            replicas,
            routing,
            monitor,
            turn: AtomicU64::new(0),
        }
    }

    /// Every node's pool with its node, primary first.
    pub fn pools(&self) -> impl Iterator<Item = (Node, &Arc<Pool>)> {
        let replicas = (self.replicas.iter().enumerate()).map(|(i, r)| (Node::Replica(i), &r.pool));
        std::iter::once((Node::Primary, &self.primary)).chain(replicas)
    }

    /// The pool of `node`; the primary's for an index out of range.
    pub fn pool(&self, node: Node) -> &Arc<Pool> {
        match node {
            Node::Replica(i) => self.replicas.get(i).map_or(&self.primary, |r| &r.pool),
            Node::Primary => &self.primary,
        }
    }

    /// Whether reads can be routed at all.
    pub fn routes(&self) -> bool {
        self.monitor.is_some() && !self.replicas.is_empty()
    }

    /// Whether transactions are routed one by one by what they do (`read_routing = "auto"`).
    pub fn auto(&self) -> bool {
        self.routes() && self.routing.read_routing == ReadRouting::Auto
    }

    /// The least loaded replica (by weight) that is healthy, within the lag limit and, for
    /// a client whose last write ended at `wrote_at`, has replayed it; the primary competes
    /// when `with_primary`. The primary when no replica qualifies.
    pub fn choose(&self, with_primary: bool, wrote_at: Option<Instant>) -> Node {
        let Some(monitor) = &self.monitor else {
            return Node::Primary;
        };
        let wrote_at = wrote_at.filter(|_| self.routing.read_your_writes);
        let mut candidates: Vec<Candidate> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, _)| monitor.usable(*i, wrote_at))
            .map(|(i, r)| Candidate {
                index: i + 1,
                weight: r.weight,
                outstanding: r.pool.outstanding(),
            })
            .collect();
        if candidates.is_empty() {
            return Node::Primary;
        }
        if with_primary {
            candidates.push(Candidate {
                index: 0,
                weight: 1,
                outstanding: self.primary.outstanding(),
            });
        }
        match pick(&candidates, self.turn.fetch_add(1, Ordering::Relaxed)) {
            Some(i) if i > 0 => Node::Replica(i - 1),
            _ => Node::Primary,
        }
    }

    /// Takes a replica out of rotation after a failure the relay saw (a connect or a read).
    pub fn ban(&self, node: Node) {
        if let (Node::Replica(i), Some(m)) = (node, &self.monitor) {
            m.ban(i);
        }
    }

    /// What the configuration says about routing, for the relay's decisions.
    pub fn policy(&self) -> Policy {
        Policy {
            routes: self.routes(),
            forced_target: match self.routing.target {
                Target::Primary => None,
                Target::Replica => Some(false),
                Target::Any => Some(true),
            },
            auto: self.auto(),
        }
    }
}

/// A group's routing configuration reduced to what a decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// There are replicas to route to.
    pub routes: bool,
    /// `target` sends everything to replicas: `Some(true)` lets the primary compete
    /// (`any`), `Some(false)` does not (`replica`); `None` for `primary`.
    pub forced_target: Option<bool>,
    /// `read_routing = "auto"`.
    pub auto: bool,
}
