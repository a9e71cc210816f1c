//! pg_hba.conf lines as PostgreSQL 15 reads them (hba.c: `next_token`, `parse_hba_line`,
//! `parse_hba_auth_opt`), for a Debian build on Linux (SSL, GSSAPI, PAM, LDAP; no SSPI, no BSD
//! authentication): the tokenizer, and every refusal that does not depend on the host.
//!
//! `check_line` says what the server would say of one line of the file; `check_rule` of a rule
//! of the model, written out the way pgha's template writes it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::HbaRule;

/// One token of a field: its text without the quotes, and whether it was quoted (a quoted
/// `"all"` is a database named all, not the keyword).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub quoted: bool,
}

impl Token {
    /// An unquoted keyword: PostgreSQL compares them case-sensitively.
    pub fn is_keyword(&self, word: &str) -> bool {
        !self.quoted && self.text == word
    }
}

/// The field of a line a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Type,
    Database,
    User,
    Address,
    Method,
    Options,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: Field,
    pub message: String,
}

fn refuse<T>(field: Field, message: impl Into<String>) -> Result<T, Problem> {
    Err(Problem {
        field,
        message: message.into(),
    })
}

/// The connection types PostgreSQL 15 knows.
pub const TYPES: [&str; 6] = [
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];

/// The authentication methods PostgreSQL 15 knows (`sspi` and `bsd` only on Windows and BSD).
pub const METHODS: [&str; 14] = [
    "scram-sha-256",
    "md5",
    "password",
    "peer",
    "ident",
    "cert",
    "reject",
    "trust",
    "gss",
    "sspi",
    "ldap",
    "radius",
    "pam",
    "bsd",
];

/// Blanks as `pg_isblank` sees them; a line break ends the line before the tokenizer runs.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

/// The next token from `at`, and whether a comma ended it (the field's list goes on); None at
/// the end of the line or of what is left before a comment.
fn next_token(chars: &[char], at: &mut usize) -> Option<(Token, bool)> {
    // Blanks and commas before a token are skipped: `a,,b` is `a,b`.
    while *at < chars.len() && (is_blank(chars[*at]) || chars[*at] == ',') {
        *at += 1;
    }
    let mut text = String::new();
    let (mut in_quote, mut was_quote, mut saw_quote, mut quoted, mut comma) =
        (false, false, false, false, false);
    while *at < chars.len() && (!is_blank(chars[*at]) || in_quote) {
        let c = chars[*at];
        if c == '#' && !in_quote {
            *at = chars.len();
            break;
        }
        if c == ',' && !in_quote {
            comma = true;
            break;
        }
        if c != '"' || was_quote {
            text.push(c);
        }
        // A literal double quote is two of them.
        was_quote = in_quote && c == '"' && !was_quote;
        if c == '"' {
            in_quote = !in_quote;
            saw_quote = true;
            if text.is_empty() {
                quoted = true;
            }
        }
        *at += 1;
    }
    (saw_quote || !text.is_empty()).then_some((Token { text, quoted }, comma))
}

/// A line's fields, each a list of tokens (`app,other` is one field of two); none for a
/// blank or comment line. A comma at the end of a field carries the list on into the next
/// word, as the server reads it.
pub fn fields(line: &str) -> Vec<Vec<Token>> {
    let chars: Vec<char> = line.chars().collect();
    let mut at = 0;
    let mut out = Vec::new();
    while at < chars.len() {
        let mut field = Vec::new();
        while let Some((token, comma)) = next_token(&chars, &mut at) {
            field.push(token);
            if !comma {
                break;
            }
        }
        if !field.is_empty() {
            out.push(field);
        }
    }
    out
}

/// The one token of a field that takes one value.
fn single<'a>(
    field: Option<&'a Vec<Token>>,
    which: Field,
    what: &str,
) -> Result<&'a Token, Problem> {
    match field.map(Vec::as_slice) {
        None | Some([]) => refuse(which, format!("the line ends before its {what}")),
        Some([one]) => Ok(one),
        Some(_) => refuse(
            which,
            format!("several values where the {what} takes one (a comma list)"),
        ),
    }
}

/// What PostgreSQL would refuse in one line of pg_hba.conf, or Ok for a good, blank or
/// comment line.
pub fn check_line(line: &str) -> Result<(), Problem> {
    let fields = fields(line);
    let mut rest = fields.iter();
    let Some(first) = rest.next() else {
        return Ok(());
    };
    let kind = single(Some(first), Field::Type, "connection type")?;
    if !TYPES.contains(&kind.text.as_str()) {
        return refuse(
            Field::Type,
            format!("`{}` is not a connection type", kind.text),
        );
    }
    let local = kind.text == "local";
    single_list(rest.next(), Field::Database, "database")?;
    single_list(rest.next(), Field::User, "user")?;
    if !local {
        let address = single(rest.next(), Field::Address, "address")?;
        check_address(address, &mut rest)?;
    }
    let method = single(rest.next(), Field::Method, "authentication method")?;
    let method = check_method(&method.text, &kind.text)?;
    let mut options = BTreeMap::new();
    for token in rest.flatten() {
        let Some((name, value)) = token.text.split_once('=') else {
            return refuse(
                Field::Options,
                format!("`{}` is not an option (name=value)", token.text),
            );
        };
        check_option(name, value, &kind.text, method)?;
        options.insert(name.to_owned(), value.to_owned());
    }
    required_options(method, &options)
}

/// A list field (database, user) that must be there.
fn single_list(field: Option<&Vec<Token>>, which: Field, what: &str) -> Result<(), Problem> {
    match field {
        Some(tokens) if !tokens.is_empty() => Ok(()),
        _ => refuse(which, format!("the line ends before its {what}")),
    }
}

/// A CIDR mask's bit count, when it fits the address's family.
pub fn mask_bits(mask: &str, ip: IpAddr) -> Option<u8> {
    let most = if ip.is_ipv4() { 32 } else { 128 };
    if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    mask.parse::<u8>().ok().filter(|bits| *bits <= most)
}

fn check_address<'a>(
    address: &Token,
    rest: &mut impl Iterator<Item = &'a Vec<Token>>,
) -> Result<(), Problem> {
    if ["all", "samehost", "samenet"]
        .iter()
        .any(|k| address.is_keyword(k))
    {
        return Ok(());
    }
    let text = &address.text;
    let (host, mask) = match text.split_once('/') {
        Some((host, mask)) => (host, Some(mask)),
        None => (text.as_str(), None),
    };
    match (host.parse::<IpAddr>(), mask) {
        // Anything that is not an IP address is a host name to the server.
        (Err(_), None) => Ok(()),
        (Err(_), Some(_)) => refuse(
            Field::Address,
            format!("`{text}` gives a CIDR mask to a host name"),
        ),
        (Ok(ip), Some(mask)) => match mask_bits(mask, ip) {
            Some(_) => Ok(()),
            None => refuse(
                Field::Address,
                format!(
                    "`{text}` has an invalid CIDR mask: an {} mask is /0 to /{}",
                    if ip.is_ipv4() { "IPv4" } else { "IPv6" },
                    if ip.is_ipv4() { 32 } else { 128 }
                ),
            ),
        },
        // An address without a mask: the next field is its netmask.
        (Ok(ip), None) => {
            let mask = single(rest.next(), Field::Address, "netmask")?;
            match mask.text.parse::<IpAddr>() {
                Ok(m) if m.is_ipv4() == ip.is_ipv4() => Ok(()),
                Ok(_) => refuse(
                    Field::Address,
                    format!(
                        "`{text}` and its netmask `{}` are not of one family",
                        mask.text
                    ),
                ),
                Err(_) => refuse(
                    Field::Address,
                    format!(
                        "`{text}` has no CIDR mask, and `{}` after it is no netmask",
                        mask.text
                    ),
                ),
            }
        }
    }
}

/// The method as the server runs it (`ident` on a local rule is `peer`), or its refusal.
fn check_method<'m>(method: &'m str, kind: &str) -> Result<&'m str, Problem> {
    let local = kind == "local";
    match method {
        "sspi" => refuse(
            Field::Method,
            "`sspi` exists only in PostgreSQL for Windows: use gss for Kerberos",
        ),
        "bsd" => refuse(
            Field::Method,
            "`bsd` exists only in PostgreSQL for OpenBSD",
        ),
        m if !METHODS.contains(&m) => refuse(
            Field::Method,
            format!("`{m}` is not an authentication method"),
        ),
        "ident" if local => Ok("peer"),
        "gss" if local => refuse(
            Field::Method,
            "`gss` does not work on `local` rules (Unix sockets): use peer",
        ),
        "peer" if !local => refuse(
            Field::Method,
            "`peer` works only for `local` rules: it asks the kernel who is at the other end of a Unix socket",
        ),
        "cert" if kind != "hostssl" => refuse(
            Field::Method,
            format!("`cert` works only for `hostssl` rules (a client certificate needs SSL), not `{kind}`"),
        ),
        m => Ok(m),
    }
}

/// The methods each option belongs to (parse_hba_auth_opt).
fn option_methods(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "map" => &["ident", "peer", "gss", "sspi", "cert"],
        "clientcert" | "clientname" => &METHODS,
        "pamservice" | "pam_use_hostname" => &["pam"],
        "ldapurl"
        | "ldaptls"
        | "ldapscheme"
        | "ldapserver"
        | "ldapport"
        | "ldapbinddn"
        | "ldapbindpasswd"
        | "ldapsearchattribute"
        | "ldapsearchfilter"
        | "ldapbasedn"
        | "ldapprefix"
        | "ldapsuffix" => &["ldap"],
        "krb_realm" | "include_realm" => &["gss", "sspi"],
        "compat_realm" | "upn_username" => &["sspi"],
        "radiusservers" | "radiussecrets" | "radiusidentifiers" | "radiusports" => &["radius"],
        _ => return None,
    })
}

fn check_option(name: &str, value: &str, kind: &str, method: &str) -> Result<(), Problem> {
    let Some(methods) = option_methods(name) else {
        return refuse(
            Field::Options,
            format!("`{name}` is not an authentication option"),
        );
    };
    if !methods.contains(&method) {
        return refuse(
            Field::Options,
            format!(
                "option `{name}` is only for the methods {}, not `{method}`",
                methods.join(", ")
            ),
        );
    }
    match name {
        "clientcert" | "clientname" if kind != "hostssl" => refuse(
            Field::Options,
            format!("option `{name}` works only on `hostssl` rules"),
        ),
        "clientcert" if value == "verify-ca" && method == "cert" => refuse(
            Field::Options,
            "`cert` authentication takes only clientcert=verify-full",
        ),
        "clientcert" if value != "verify-full" && value != "verify-ca" => refuse(
            Field::Options,
            format!("clientcert is verify-ca or verify-full, not `{value}`"),
        ),
        "clientname" if value != "CN" && value != "DN" => refuse(
            Field::Options,
            format!("clientname is CN or DN, not `{value}`"),
        ),
        "ldapscheme" if value != "ldap" && value != "ldaps" => refuse(
            Field::Options,
            format!("ldapscheme is ldap or ldaps, not `{value}`"),
        ),
        "ldapurl" if !value.starts_with("ldap://") && !value.starts_with("ldaps://") => refuse(
            Field::Options,
            format!("`{value}` is not an ldap:// or ldaps:// URL"),
        ),
        "ldapport" if !value.parse::<u16>().is_ok_and(|p| p > 0) => refuse(
            Field::Options,
            format!("`{value}` is not an LDAP port number"),
        ),
        _ => Ok(()),
    }
}

/// Options a method cannot work without, and LDAP's two modes that do not mix.
fn required_options(method: &str, options: &BTreeMap<String, String>) -> Result<(), Problem> {
    let has = |name: &str| options.contains_key(name);
    match method {
        "ldap" => {
            let search = [
                "ldapbasedn",
                "ldapbinddn",
                "ldapbindpasswd",
                "ldapsearchattribute",
                "ldapsearchfilter",
                "ldapurl",
            ];
            if has("ldapprefix") || has("ldapsuffix") {
                if search.iter().any(|o| has(o)) {
                    return refuse(Field::Options, "ldap's simple bind (ldapprefix, ldapsuffix) does not mix with search and bind (ldapbasedn, ldapbinddn, ldapbindpasswd, ldapsearchattribute, ldapsearchfilter, ldapurl)");
                }
            } else if !has("ldapbasedn") && !has("ldapurl") {
                return refuse(
                    Field::Method,
                    "`ldap` needs the option ldapbasedn, ldapprefix or ldapsuffix (and ldapserver)",
                );
            }
            if has("ldapsearchattribute") && has("ldapsearchfilter") {
                return refuse(
                    Field::Options,
                    "ldapsearchattribute and ldapsearchfilter do not go together",
                );
            }
            Ok(())
        }
        "radius" => match ["radiusservers", "radiussecrets"].iter().find(|o| !has(o)) {
            Some(missing) => refuse(
                Field::Method,
                format!("`radius` needs the option {missing} (radiusservers and radiussecrets)"),
            ),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// A rule of the model as pgha's template writes it: `type database user [address] method`.
pub fn line_of(rule: &HbaRule) -> String {
    format!(
        "{} {} {} {} {}",
        rule.kind,
        rule.database,
        rule.user,
        rule.address.as_deref().unwrap_or(""),
        rule.method
    )
}

/// What PostgreSQL would refuse in a rule of the model.
pub fn check_rule(rule: &HbaRule) -> Result<(), Problem> {
    check_line(&line_of(rule))
}

/// Every line of a pg_hba.conf PostgreSQL would refuse: (line number, problem).
pub fn check_file(text: &str) -> Vec<(usize, Problem)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| check_line(line).err().map(|p| (i + 1, p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{check_line, fields, Field};

    fn refused(line: &str) -> Field {
        match check_line(line) {
            Err(p) => p.field,
            Ok(()) => panic!("{line:?} passes"),
        }
    }

    #[test]
    fn tokens_split_as_the_server_splits_them() {
        let f = fields("host  app,\"all\" all 10.0.0.0/8 md5 # a comment, \"here\"");
        let texts: Vec<Vec<(&str, bool)>> = f
            .iter()
            .map(|f| f.iter().map(|t| (t.text.as_str(), t.quoted)).collect())
            .collect();
        assert_eq!(
            texts,
            vec![
                vec![("host", false)],
                vec![("app", false), ("all", true)],
                vec![("all", false)],
                vec![("10.0.0.0/8", false)],
                vec![("md5", false)],
            ]
        );
        // A trailing comma carries the list into the next word.
        assert_eq!(fields("host app, all 10.0.0.0/8 md5").len(), 4);
        assert_eq!(fields("\"a\"\"b\"")[0][0].text, "a\"b");
        assert!(fields("   # only a comment").is_empty());
    }

    #[test]
    fn accepts_what_the_server_accepts() {
        for line in [
            "",
            "local all postgres peer",
            "local all all ident",
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
            "host all all 10.0.0.0 255.0.0.0 md5",
            "host all all db.example.com md5",
            "hostssl all all 0.0.0.0/0 cert",
            "hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=verify-ca",
            "host all all samenet reject",
            "host all all 10.0.0.0/8 ldap ldapserver=ldap.example.com ldapbasedn=\"dc=example, dc=com\"",
            "host all all 10.0.0.0/8 ldap ldapserver=ldap.example.com ldapprefix=cn=",
            "host all all 10.0.0.0/8 radius radiusservers=r.example.com radiussecrets=x",
            "local all all peer map=admins",
        ] {
            assert_eq!(check_line(line), Ok(()), "{line}");
        }
    }

    #[test]
    fn refuses_what_the_server_refuses() {
        for (line, field) in [
            ("hots all all 10.0.0.0/8 md5", Field::Type),
            ("local,host all all peer", Field::Type),
            ("host", Field::Database),
            ("host all", Field::User),
            ("host all all", Field::Address),
            ("host all all 10.0.0.0/33 md5", Field::Address),
            ("host all all fd00::/129 md5", Field::Address),
            ("host all all 10.0.0.0/ md5", Field::Address),
            ("host all all db.example.com/24 md5", Field::Address),
            ("host all all 10.0.0.1 md5", Field::Address),
            ("host all all 10.0.0.0 ffff:: md5", Field::Address),
            ("host all all 10.0.0.0/8", Field::Method),
            ("host all all 10.0.0.0/8 scram", Field::Method),
            ("host all all 10.0.0.0/8 peer", Field::Method),
            ("host all all 10.0.0.0/8 cert", Field::Method),
            ("local all all gss", Field::Method),
            ("host all all 10.0.0.0/8 sspi", Field::Method),
            ("host all all 10.0.0.0/8 ldap", Field::Method),
            (
                "host all all 10.0.0.0/8 radius radiusservers=r",
                Field::Method,
            ),
            ("host all all 10.0.0.0/8 md5 map=x", Field::Options),
            (
                "host all all 10.0.0.0/8 md5 clientcert=verify-full",
                Field::Options,
            ),
            (
                "hostssl all all 10.0.0.0/8 cert clientcert=verify-ca",
                Field::Options,
            ),
            ("host all all 10.0.0.0/8 md5 nonsense", Field::Options),
            (
                "host all all 10.0.0.0/8 ldap ldapprefix=a ldapbasedn=b",
                Field::Options,
            ),
        ] {
            assert_eq!(refused(line), field, "{line}");
        }
    }
}
