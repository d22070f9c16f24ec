//! The clients of this process as a whole, where [`crate::client`] is one of them: the
//! [`ClientRegistry`] of every logged-in client (its state for SHOW CLIENTS and the metrics,
//! and its KILL switch), the [`ClientLimits`] that count clients against
//! `max_db_client_connections` and `max_user_client_connections`, the [`PinCounts`] of
//! clients pinned to their server, and the [`Stop`] each client task selects on: shutdown,
//! or its KILL switch thrown.

pub mod limits;
pub mod pins;
pub mod registry;
pub mod stop;

pub use limits::{ClientLimits, ClientSlot, Refused};
pub use pins::PinCounts;
pub use registry::{ClientEntry, ClientInfo, ClientRegistry, ClientState, Kill, KillWatch};
pub use stop::{Stop, Stopped};
