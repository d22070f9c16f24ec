//! The SQL lexer and everything that reads statements with it: the read/write classifier
//! and `SET pgweir.route`, session-state effects, custom setting names, DEALLOCATE names,
//! writes and transaction ends, as tests/it/fuzz.rs calls them. Input: the query text, bytes
//! as a client sends them (not necessarily UTF-8).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgweir::sql::route::{classify, route_setting, ReadOnlyFunctions};
use pgweir::sql::{Lexer, Statements};

fn functions() -> &'static ReadOnlyFunctions {
    static F: OnceLock<ReadOnlyFunctions> = OnceLock::new();
    F.get_or_init(|| ReadOnlyFunctions::new(["f".to_owned(), "app.lookup".to_owned()]))
}

fuzz_target!(|data: &[u8]| {
    // Every token covers at least one byte, so a lexer that stops advancing is caught here
    // instead of as a time-out.
    let mut tokens = 0usize;
    for token in Lexer::new(data) {
        assert!(!token.text.is_empty(), "empty token {token:?}");
        let _ = token.ident_text();
        tokens += 1;
        assert!(tokens <= data.len(), "more tokens than bytes");
    }
    let mut statements = Statements::new(data);
    let mut n = 0usize;
    while statements.next_statement() {
        while statements.next_token().is_some() {}
        n += 1;
        assert!(n <= data.len() + 1, "more statements than bytes");
    }

    let _ = classify(data, functions());
    let _ = route_setting(data);
    let _ = pgweir::sql::effects::analyze(data);
    let _ = pgweir::sql::settings::custom_setting_names(data);
    let _ = pgweir::sql::settings::deallocated_name(data);
    let _ = pgweir::sql::writes::may_write(data);
    let _ = pgweir::sql::writes::ends_transaction(data);
});
