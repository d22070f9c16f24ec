//! The end of a transaction in transaction and statement mode: what the client's
//! statements changed is read back from the server ([`super::state`]), and the server goes
//! back to the pool, stays with a client that holds state there, or is closed. Called by
//! the relay loop once the release point is reached.

use crate::pool::PooledServer;
use crate::protocol::framer::OutQueue;
use crate::server::{ServerConn, ServerError};
use crate::sql::PinReason;

use super::relay::Session;
use super::reset::{self, CLEANUP_TIMEOUT};
use super::state::{check_sql, read_check, Watch};
use super::ClientError;

/// What becomes of a server at the end of a transaction.
pub(super) enum AfterTransaction {
    /// Back to the pool, once any cancel on its way has arrived.
    Release(PooledServer),
    /// The client holds state there and keeps it.
    Pinned(PooledServer),
    /// It could not be made clean and was closed; the client carries on.
    Closed,
    /// Closed, and the client, which may have had state there, ends with this error.
    Failed(ClientError),
}

/// Rolls back what statement mode caught, then settles the client's session state.
pub(super) async fn after_transaction(
    s: &mut Session,
    mut server: PooledServer,
    watch: &Watch,
    rollback: bool,
    to_client: &mut OutQueue,
) -> AfterTransaction {
    if rollback && !reset::rolled_back(&mut server).await {
        return AfterTransaction::Closed;
    }
    if let Err(e) = settle_state(s, &mut server, watch, to_client).await {
        // The server's state is unknown now: close it. A client that may have had state
        // there loses it, as with a server that dies; others carry on.
        tracing::warn!(server = server.id.0, error = %e, "session state check failed");
        let had_state = !s.pins.is_empty() || !s.sticky.is_empty() || watch.pins;
        return if had_state {
            AfterTransaction::Failed(e)
        } else {
            AfterTransaction::Closed
        };
    }
    if s.pins.is_empty() {
        AfterTransaction::Release(server)
    } else {
        AfterTransaction::Pinned(server)
    }
}

/// At the end of a transaction that may have changed session state, reads back what the
/// server now holds for the client: its settings (which then follow it to other servers)
/// and the state that pins it here.
async fn settle_state(
    s: &mut Session,
    server: &mut ServerConn,
    watch: &Watch,
    to_client: &mut OutQueue,
) -> Result<(), ClientError> {
    if !watch.any() {
        return Ok(());
    }
    let sql = check_sql(watch, &s.custom_names);
    let got = tokio::time::timeout(CLEANUP_TIMEOUT, server.query_rows(&sql))
        .await
        .map_err(|_| ServerError::Protocol("session state check (timed out)"))??;
    to_client.push(got.notifications.freeze());
    let checked = read_check(watch, &got.rows);
    if let Some(settings) = checked.settings {
        server.applied.clone_from(&settings);
        s.params.other = settings;
    }
    let pins = checked.pins.unwrap_or(s.pins).union(s.sticky);
    if pins != s.pins {
        match (s.pins.is_empty(), pins.is_empty()) {
            (true, false) => s.shared.pinned(),
            (false, true) => s.shared.unpinned(),
            _ => {}
        }
        let reasons: Vec<&str> = pins.iter().map(PinReason::as_str).collect();
        tracing::debug!(
            server = server.id.0,
            pinned_by = ?reasons,
            pinned_clients = s.shared.pinned_now(),
            pinned_since_start = s.shared.pinned_total(),
            "client pinning changed"
        );
        s.pins = pins;
    }
    Ok(())
}
