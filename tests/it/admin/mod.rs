//! The admin console (issues 6 and 16): SHOW commands, control commands, PAUSE and
//! friends, and a PgBouncer operator's console habits.

mod console;
mod control;
mod pause;
mod pgbouncer;
