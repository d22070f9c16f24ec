//! md5 password checks as Postgres does them. Placeholder: being written.
