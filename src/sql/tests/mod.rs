//! Unit tests of the SQL lexer, the statement splitter and the effects analyzer.

mod effects;
mod lexer;
mod route;
