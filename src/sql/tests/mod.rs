//! Unit tests of the SQL lexer, the statement splitter, the effects analyzer and the replica
//! routing classifier.

mod effects;
mod lexer;
mod route;
