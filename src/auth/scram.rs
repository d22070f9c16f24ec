//! Server side of SCRAM-SHA-256 (RFC 5802/7677) as Postgres speaks it. Placeholder: being written.
