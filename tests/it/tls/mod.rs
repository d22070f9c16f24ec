//! TLS (issue 7): between clients and pgweir, between pgweir and Postgres, and where TLS
//! meets authentication.

mod auth;
mod client;
mod server;
