//! The `key=value` lists PgBouncer writes in `[databases]`, `[users]` and `[peers]`, in
//! libpq's connection-string form: pairs separated by spaces, spaces allowed around `=`,
//! a value in single quotes may hold spaces, and a backslash escapes the next character.

/// The pairs of one list, in order, or why it could not be read.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("expected key=value at {rest:?}"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("expected key=value at {rest:?}"));
        }
        let (value, after) = value(rest[eq + 1..].trim_start())?;
        pairs.push((key.to_ascii_lowercase(), value));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// One value (quoted or bare) at the start of `text`, and what follows it.
fn value(text: &str) -> Result<(String, &str), String> {
    let quoted = text.starts_with('\'');
    let body = if quoted { &text[1..] } else { text };
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => return Err("a backslash ends the value".to_owned()),
            },
            '\'' if quoted => return Ok((out, &body[i + 1..])),
            c if c.is_whitespace() && !quoted => return Ok((out, &body[i..])),
            c => out.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quote in {text:?}"));
    }
    Ok((out, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    #[test]
    fn reads_bare_quoted_and_escaped_values() {
        let got = pairs(r"host=db1 port = 5433 password='it\'s' dbname='my db' user=a\ b");
        let want = [
            ("host", "db1"),
            ("port", "5433"),
            ("password", "it's"),
            ("dbname", "my db"),
            ("user", "a b"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_empty_list_is_fine_and_junk_is_refused() {
        assert!(pairs("  ").is_empty());
        assert!(parse("host").is_err());
        assert!(parse("host='open").is_err());
        assert!(parse("=x").is_err());
    }
}
