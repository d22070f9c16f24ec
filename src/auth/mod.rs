//! Client authentication: the server side of SCRAM-SHA-256, md5 and cleartext, driven by
//! [`crate::client`] during startup, plus the secrets they check against.

pub mod md5;
pub mod scram;
pub mod secret;
