//! Client authentication: the server side of SCRAM-SHA-256, md5 and cleartext, driven by
//! [`crate::client`] during startup, plus the secrets they check against. All pure (no I/O):
//! [`secret`] parses what is stored, [`scram`] runs the SASL exchange and owns SCRAM key
//! derivation, [`md5`] checks md5 responses and cleartext passwords.

pub mod md5;
pub mod scram;
pub mod secret;
