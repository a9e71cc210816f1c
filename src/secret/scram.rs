//! SCRAM-SHA-256 verifiers as PostgreSQL stores them (`pg_authid.rolpassword`).
//!
//! pgha sends the verifier, never the password: the plaintext does not reach the server's
//! logs (`log_statement`) or `pg_stat_activity`. Drift is found by recomputing a verifier with
//! the stored salt and iteration count and comparing, again without sending the password.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The password as PostgreSQL hashes it: normalised by SASLprep (RFC 4013), or as given when
/// SASLprep refuses it (prohibited characters), which is what the server does too
/// (`pg_saslprep`). Without this a password SASLprep changes would never authenticate.
fn prepared(password: &str) -> std::borrow::Cow<'_, str> {
    stringprep::saslprep(password).unwrap_or(std::borrow::Cow::Borrowed(password))
}

/// The verifier for `password` with the given salt and iterations.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let password = prepared(password);
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2::<Hmac<Sha256>>(password.as_bytes(), salt, iterations, &mut salted)
        .unwrap_or_else(|_| unreachable!());
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// A new verifier with a random salt.
pub fn new_verifier(password: &str) -> String {
    let mut salt = [0u8; 16];
    // Without randomness we must not invent a salt; the OS always has it on Linux.
    getrandom::fill(&mut salt).unwrap_or_else(|e| panic!("no OS randomness: {e}"));
    verifier(password, &salt, ITERATIONS)
}

/// Whether `stored` is the verifier of `password`.
pub fn matches(stored: &str, password: &str) -> bool {
    let Some(rest) = stored.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((iter_salt, _keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = iter_salt.split_once(':') else {
        return false;
    };
    let (Ok(iterations), Ok(salt)) = (iterations.parse::<u32>(), STANDARD.decode(salt)) else {
        return false;
    };
    verifier(password, &salt, iterations) == stored
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hashed_as_the_server_prepares_them() {
        let salt = b"0123456789abcdef";
        // A soft hyphen maps to nothing, a no-break space to a space (RFC 4013).
        assert_eq!(
            super::verifier("pass\u{00AD}word", salt, 4096),
            super::verifier("password", salt, 4096)
        );
        assert_eq!(
            super::verifier("a\u{00A0}b", salt, 4096),
            super::verifier("a b", salt, 4096)
        );
        // What SASLprep refuses (an unassigned or prohibited character) is used as given.
        assert_ne!(
            super::verifier("x\u{0007}y", salt, 4096),
            super::verifier("xy", salt, 4096)
        );
    }

    use super::{matches, new_verifier, verifier};

    #[test]
    fn a_new_verifier_matches_its_password_only() {
        let v = new_verifier("correct horse");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        assert!(matches(&v, "correct horse"));
        assert!(!matches(&v, "wrong horse"));
    }

    #[test]
    fn same_salt_same_verifier() {
        assert_eq!(
            verifier("pw", b"0123456789abcdef", 4096),
            verifier("pw", b"0123456789abcdef", 4096)
        );
    }
}
