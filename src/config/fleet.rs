//! `fleet` in `[pgweir]`: the name that tells pgweir processes they share one server
//! connection budget ([`crate::fleet`]). Checked here so the name can go into an
//! `application_name` (at most 63 bytes, with pgweir's own words around it) and into the
//! hash of every advisory lock key without quoting.

use std::fmt;

/// The longest fleet name: `pgweir fleet=<name> id=<6 hex>` must fit the 63 bytes
/// Postgres keeps of an `application_name`.
pub const MAX_FLEET_NAME: usize = 40;

/// A fleet's name: 1 to [`MAX_FLEET_NAME`] ASCII letters, digits, `.`, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetName(String);

impl FleetName {
    pub fn parse(text: &str) -> Result<FleetName, String> {
        if text.is_empty() || text.len() > MAX_FLEET_NAME {
            return Err(format!("must be 1 to {MAX_FLEET_NAME} characters long"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "{c:?} is not allowed: use letters, digits, '.', '_' and '-'"
            ));
        }
        Ok(FleetName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FleetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fit_an_application_name_pass() {
        assert_eq!(
            FleetName::parse("orders-poolers").map(|n| n.to_string()),
            Ok("orders-poolers".to_owned())
        );
        assert!(FleetName::parse(&"a".repeat(MAX_FLEET_NAME)).is_ok());
        assert!(FleetName::parse(&"a".repeat(MAX_FLEET_NAME + 1)).is_err());
        assert!(FleetName::parse("").is_err());
        assert!(FleetName::parse("it's").is_err());
        assert!(FleetName::parse("two words").is_err());
    }
}
