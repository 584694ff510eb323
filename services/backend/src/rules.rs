//! Rules for registration fields (see the crate docs).

use crate::error::Error;

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;

/// A username is 3 to 32 characters: a lower-case letter, then lower-case letters, digits or
/// `_` (`^[a-z][a-z0-9_]{2,31}$`).
pub fn check_username(username: &str) -> Result<(), Error> {
    let mut chars = username.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let len = username.chars().count();
    if !(first_ok && rest_ok && (3..=32).contains(&len)) {
        return Err(Error::invalid(
            "username",
            "username must be 3 to 32 characters: a lower-case letter, then lower-case letters, digits or _",
        ));
    }
    Ok(())
}

/// An email has exactly one `@` with something on both sides, no spaces, at most 254 bytes.
pub fn check_email(email: &str) -> Result<(), Error> {
    let parts: Vec<&str> = email.split('@').collect();
    let ok = parts.len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && !email.chars().any(char::is_whitespace)
        && email.len() <= 254;
    if !ok {
        return Err(Error::invalid("email", "email must look like name@example.org (one @, no spaces)"));
    }
    Ok(())
}

/// A password has at least [`MIN_PASSWORD_LEN`] characters, at least one letter and one
/// digit, and does not contain the username (ignoring case). At most 72 bytes (bcrypt's limit).
pub fn check_password(password: &str, username: &str) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::invalid("password", m));
    if password.chars().count() < MIN_PASSWORD_LEN {
        return bad("password must be at least 10 characters long");
    }
    if password.len() > 72 {
        return bad("password must be at most 72 bytes long");
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        return bad("password must contain at least one letter and one digit");
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return bad("password must not contain the username");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<(), Error>) -> Option<&'static str> {
        match r {
            Err(Error::Invalid { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn usernames() {
        for ok in ["jake", "amy_santiago", "abc", "a12", "x".repeat(32).as_str()] {
            assert!(check_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "ab", "Jake", "1jake", "_jake", "jake-p", "jake p", "jäke", "x".repeat(33).as_str()] {
            assert_eq!(field(check_username(bad)), Some("username"), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in ["jake@99.precinct", "a@b"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "jake", "@b", "a@", "a@b@c", "a b@c"] {
            assert_eq!(field(check_email(bad)), Some("email"), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("correcthorse9", "jake").is_ok());
        assert!(check_password("ümlautpass1", "jake").is_ok());
        let cases = [
            ("short1", "too short"),
            ("abcdefghijk", "no digit"),
            ("12345678901", "no letter"),
            ("myjake12345", "contains the username"),
            ("MyJAKE12345", "contains the username, other case"),
        ];
        for (pw, why) in cases {
            assert_eq!(field(check_password(pw, "jake")), Some("password"), "{why}");
        }
        let long = format!("a1{}", "b".repeat(80));
        assert_eq!(field(check_password(&long, "jake")), Some("password"), "too long for bcrypt");
    }
}
