//! `synchronous_standby_names` as PostgreSQL 15 reads it (syncrep_scanner.l, syncrep_gram.y):
//! `FIRST n (a, b)`, `ANY n (a, b)`, `n (a, b)` (FIRST) or a plain list `a, b` (FIRST 1).
//! Names are identifiers, numbers, `*` or double-quoted text; a host name with a `-` must be
//! quoted. The server matches them to each standby's application_name ignoring case.

/// A parsed setting: how many standbys a commit waits for, among which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStandbys {
    pub quorum: bool,
    pub count: u32,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Name(String),
    Num(String),
    Any,
    First,
    Comma,
    Open,
    Close,
}

fn scan(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
    let ident_cont = |c: char| ident_start(c) || c.is_ascii_digit() || c == '$';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let mut name = String::new();
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (None, _) => return Err("a double quote is not closed".to_owned()),
                    (Some('"'), Some('"')) => {
                        name.push('"');
                        i += 2;
                    }
                    (Some('"'), _) => {
                        i += 1;
                        break;
                    }
                    (Some(c), _) => {
                        name.push(*c);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Name(name));
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_cont(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.to_ascii_lowercase().as_str() {
                "any" => Tok::Any,
                "first" => Tok::First,
                _ => Tok::Name(word),
            });
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else {
            out.push(match c {
                '*' => Tok::Name("*".to_owned()),
                ',' => Tok::Comma,
                '(' => Tok::Open,
                ')' => Tok::Close,
                other => {
                    return Err(format!(
                        "`{other}` cannot stand there unquoted (write a name with it in double quotes, as in \"pg-2\")"
                    ))
                }
            });
            i += 1;
        }
    }
    Ok(out)
}

/// The names of `a, b, c` up to the end of `toks`.
fn list(toks: &[Tok]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match (i % 2, t) {
            (0, Tok::Name(n) | Tok::Num(n)) => names.push(n.clone()),
            (1, Tok::Comma) => {}
            _ => return Err("it is not a comma-separated list of names".to_owned()),
        }
    }
    if names.is_empty() || toks.len() % 2 == 0 {
        return Err("a list of names is empty or ends with a comma".to_owned());
    }
    Ok(names)
}

/// The setting, None when it is empty (no synchronous standby), or why the server refuses it.
pub fn parse(text: &str) -> Result<Option<SyncStandbys>, String> {
    let toks = scan(text)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let (quorum, rest) = match toks.first() {
        Some(Tok::Any) => (true, &toks[1..]),
        Some(Tok::First) => (false, &toks[1..]),
        _ => (false, &toks[..]),
    };
    let explicit = rest.len() != toks.len();
    let setting = match rest {
        [Tok::Num(n), Tok::Open, inner @ .., Tok::Close] => SyncStandbys {
            quorum,
            count: n
                .parse()
                .map_err(|_| format!("{n} standbys is more than PostgreSQL counts"))?,
            names: list(inner)?,
        },
        _ if explicit => {
            return Err(
                "ANY and FIRST take a number and a list in parentheses: FIRST 1 (pg2, pg3)"
                    .to_owned(),
            )
        }
        plain => SyncStandbys {
            quorum: false,
            count: 1,
            names: list(plain)?,
        },
    };
    if setting.count == 0 {
        return Err("the number of synchronous standbys must be at least 1".to_owned());
    }
    Ok(Some(setting))
}

#[cfg(test)]
mod tests {
    use super::{parse, SyncStandbys};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_every_form() {
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(
            parse("pg2, pg3"),
            Ok(Some(SyncStandbys {
                quorum: false,
                count: 1,
                names: names(&["pg2", "pg3"])
            }))
        );
        assert_eq!(
            parse("ANY 2 (pg2, \"pg-3\", *)"),
            Ok(Some(SyncStandbys {
                quorum: true,
                count: 2,
                names: names(&["pg2", "pg-3", "*"])
            }))
        );
        assert_eq!(
            parse("first 1 (pg2)").map(|s| s.map(|s| s.count)),
            Ok(Some(1))
        );
        assert_eq!(
            parse("2 (a, b)").map(|s| s.map(|s| s.quorum)),
            Ok(Some(false))
        );
    }

    #[test]
    fn refuses_what_the_server_refuses() {
        for bad in [
            "pg-2",
            "FIRST (pg2)",
            "FIRST 0 (pg2)",
            "pg2,",
            "ANY 1 pg2",
            "1 (pg2",
            "\"pg2",
            "pg2 pg3",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
