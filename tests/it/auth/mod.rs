//! Client and server authentication (issue 7): the login methods at both ends, SCRAM
//! pass-through, its security properties, where secrets come from, and `auth_type = "hba"`.

mod hba;
mod methods;
mod passthrough;
mod security;
mod sources;
