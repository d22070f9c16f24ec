//! Where a client's conversation with its server stands, from the tags flowing each way:
//! how many ReadyForQuery are still owed, whether an extended-protocol batch is open, COPY
//! state and the last transaction status. The relay asks it one question: may the server go
//! back to the pool now?

use crate::protocol::{be, fe, TxStatus};

/// Request/response accounting for one linked client and server.
#[derive(Debug, Clone)]
pub struct TxnTracker {
    /// ReadyForQuery messages the server still owes (one per Query, Sync, FunctionCall).
    pending: u32,
    /// Extended-protocol messages were sent after the last Sync.
    in_batch: bool,
    /// The server is in COPY FROM STDIN (or COPY BOTH).
    copy_in: bool,
    /// Syncs sent since the last Query or Execute: a server in COPY FROM STDIN ignores them.
    syncs_since_start: u32,
    status: TxStatus,
}

impl Default for TxnTracker {
    fn default() -> Self {
        TxnTracker {
            pending: 0,
            in_batch: false,
            copy_in: false,
            syncs_since_start: 0,
            status: TxStatus::Idle,
        }
    }
}

impl TxnTracker {
    /// A message from the client, forwarded to the server. Returns how many of the Syncs
    /// sent earlier the server ignored (it was in COPY FROM STDIN), normally zero.
    pub fn client_sent(&mut self, tag: u8) -> u32 {
        match tag {
            fe::QUERY => {
                self.pending += 1;
                self.syncs_since_start = 0;
            }
            fe::FUNCTION_CALL => self.pending += 1,
            fe::SYNC => {
                self.pending += 1;
                self.in_batch = false;
                self.syncs_since_start += 1;
            }
            fe::EXECUTE => {
                self.in_batch = true;
                self.syncs_since_start = 0;
            }
            fe::PARSE | fe::BIND | fe::DESCRIBE | fe::CLOSE => self.in_batch = true,
            fe::COPY_DONE | fe::COPY_FAIL if self.copy_in => {
                self.pending = self.pending.saturating_sub(self.syncs_since_start);
                self.copy_in = false;
                return std::mem::take(&mut self.syncs_since_start);
            }
            _ => {}
        }
        0
    }

    /// A message from the server; `body` is needed only for ReadyForQuery.
    pub fn server_sent(&mut self, tag: u8, body: Option<&[u8]>) {
        match tag {
            be::READY_FOR_QUERY => {
                self.pending = self.pending.saturating_sub(1);
                self.copy_in = false;
                if let Some(s) = body
                    .and_then(|b| b.first())
                    .and_then(|&b| TxStatus::from_byte(b))
                {
                    self.status = s;
                }
            }
            be::COPY_IN_RESPONSE | be::COPY_BOTH_RESPONSE => self.copy_in = true,
            _ => {}
        }
    }

    /// Nothing is owed either way: the server is between requests.
    pub fn quiet(&self) -> bool {
        self.pending == 0 && !self.in_batch && !self.copy_in
    }

    /// ReadyForQuery messages the server still owes.
    pub fn owed(&self) -> u32 {
        self.pending
    }

    /// Whether the server waits for the client's COPY data.
    pub fn copy_in(&self) -> bool {
        self.copy_in
    }

    /// Extended-protocol messages were sent since the last Sync.
    pub fn in_batch(&self) -> bool {
        self.in_batch
    }

    pub fn status(&self) -> TxStatus {
        self.status
    }

    /// Transaction mode's release point: between requests and outside a transaction.
    pub fn transaction_done(&self) -> bool {
        self.quiet() && self.status == TxStatus::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfq(t: &mut TxnTracker, s: u8) {
        t.server_sent(be::READY_FOR_QUERY, Some(&[s]));
    }

    #[test]
    fn simple_query_in_and_out_of_a_transaction() {
        let mut t = TxnTracker::default();
        t.client_sent(fe::QUERY);
        assert!(!t.transaction_done());
        rfq(&mut t, b'T');
        assert!(t.quiet() && !t.transaction_done());
        t.client_sent(fe::QUERY);
        rfq(&mut t, b'I');
        assert!(t.transaction_done());
    }

    #[test]
    fn pipelined_syncs_release_only_after_the_last() {
        let mut t = TxnTracker::default();
        for tag in [
            fe::PARSE,
            fe::BIND,
            fe::EXECUTE,
            fe::SYNC,
            fe::BIND,
            fe::EXECUTE,
            fe::SYNC,
        ] {
            t.client_sent(tag);
        }
        rfq(&mut t, b'I');
        assert!(!t.transaction_done());
        rfq(&mut t, b'I');
        assert!(t.transaction_done());
    }

    #[test]
    fn open_batch_without_sync_holds_the_server() {
        let mut t = TxnTracker::default();
        t.client_sent(fe::SYNC);
        t.client_sent(fe::PARSE);
        t.client_sent(fe::FLUSH);
        rfq(&mut t, b'I');
        assert!(!t.transaction_done());
        t.client_sent(fe::SYNC);
        rfq(&mut t, b'I');
        assert!(t.transaction_done());
    }

    #[test]
    fn extended_copy_in_discounts_the_ignored_sync() {
        let mut t = TxnTracker::default();
        for tag in [fe::BIND, fe::EXECUTE, fe::SYNC] {
            t.client_sent(tag);
        }
        t.server_sent(be::COPY_IN_RESPONSE, None);
        t.client_sent(fe::COPY_DATA);
        t.client_sent(fe::COPY_DONE);
        t.client_sent(fe::SYNC);
        assert!(!t.transaction_done());
        rfq(&mut t, b'I');
        assert!(t.transaction_done());
    }

    #[test]
    fn simple_copy_in_counts_one_ready_for_query() {
        let mut t = TxnTracker::default();
        t.client_sent(fe::QUERY);
        t.server_sent(be::COPY_IN_RESPONSE, None);
        t.client_sent(fe::COPY_DATA);
        t.client_sent(fe::COPY_DONE);
        assert!(!t.quiet());
        rfq(&mut t, b'I');
        assert!(t.transaction_done());
    }
}
