//! SQL text as far as the pooler must understand it, without a parser and without I/O.
//!
//! [`lexer`] turns bytes into tokens the way the server's scanner does, so keywords inside
//! strings, comments, quoted identifiers and dollar-quoted bodies are never seen;
//! [`statements`] splits the tokens into `;`-separated statements; [`effects`] decides what
//! a text may do to the session ([`analyze`]), which the relay asks for every simple Query
//! and every Parse text; [`settings`] names the custom settings a text sets; [`route`]
//! proves a text read-only for replica routing ([`classify`]). Nothing
//! allocates per token and all of it is linear in the input, since it runs on every query,
//! including multi-megabyte ones.

pub mod effects;
pub mod lexer;
pub mod route;
pub mod settings;
pub mod statements;
#[cfg(test)]
mod tests;
pub mod writes;

pub use effects::{analyze, Effects, PinReason, Pins};
pub use lexer::{Lexer, Token, TokenKind};
pub use route::{
    classify, route_setting, Classification, Hint, ReadOnlyFunctions, RouteSetting, Verdict,
};
pub use settings::{custom_setting_names, deallocated_name};
pub use statements::Statements;
pub use writes::{ends_transaction, may_write};
