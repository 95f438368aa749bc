//! Tokens of the Rules language, each with its byte offset so errors can point at it.

use std::net::IpAddr;

use super::RuleError;

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A field or function name, or a word operator (`eq`, `and`, `contains`, ...).
    Ident(String),
    /// `"..."` or `r"..."` / `r#"..."#`.
    Str(String),
    /// An integer.
    Int(i64),
    /// An IP address, with a prefix length for CIDR notation.
    Ip(IpAddr, Option<u8>),
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `~`, `&&`, `||`, `^^`, `!`.
    Sym(&'static str),
    /// `(`, `)`, `{`, `}`, `[`, `]`, `,`, `..`, `*`.
    Punct(char),
    /// `..` in ranges.
    Range,
    /// End of input.
    End,
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Byte offset in the expression.
    pub pos: usize,
}

fn err(pos: usize, message: impl Into<String>) -> RuleError {
    RuleError {
        pos,
        message: message.into(),
    }
}

/// Splits an expression into tokens.
pub fn lex(src: &str) -> Result<Vec<Token>, RuleError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Raw strings: r"..." and r#"..."# (no escapes inside).
        if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) == Some(&b'"') {
                let body_start = j + 1;
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let Some(end) = src[body_start..].find(&close) else {
                    return Err(err(start, "unterminated raw string"));
                };
                out.push(Token {
                    tok: Tok::Str(src[body_start..body_start + end].to_string()),
                    pos: start,
                });
                i = body_start + end + close.len();
                continue;
            }
        }
        if c == b'"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let Some(&d) = b.get(j) else {
                    return Err(err(start, "unterminated string"));
                };
                match d {
                    b'"' => break,
                    b'\\' => {
                        match b.get(j + 1) {
                            Some(b'"') => s.push('"'),
                            Some(b'\\') => s.push('\\'),
                            _ => {
                                return Err(err(
                                    j,
                                    "only \\\" and \\\\ escapes are allowed in strings",
                                ))
                            }
                        }
                        j += 2;
                    }
                    _ => {
                        // Copy one UTF-8 character.
                        let ch = src[j..].chars().next().expect("in bounds");
                        s.push(ch);
                        j += ch.len_utf8();
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos: start,
            });
            i = j + 1;
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        if let Some(sym) = ["==", "!=", "<=", ">=", "&&", "||", "^^"]
            .iter()
            .find(|s| **s == two)
        {
            out.push(Token {
                tok: Tok::Sym(sym),
                pos: start,
            });
            i += 2;
            continue;
        }
        if two == ".." {
            out.push(Token {
                tok: Tok::Range,
                pos: start,
            });
            i += 2;
            continue;
        }
        match c {
            b'<' | b'>' | b'~' | b'!' => {
                let sym = match c {
                    b'<' => "<",
                    b'>' => ">",
                    b'~' => "~",
                    _ => "!",
                };
                out.push(Token {
                    tok: Tok::Sym(sym),
                    pos: start,
                });
                i += 1;
                continue;
            }
            b'(' | b')' | b'{' | b'}' | b'[' | b']' | b',' | b'*' => {
                out.push(Token {
                    tok: Tok::Punct(c as char),
                    pos: start,
                });
                i += 1;
                continue;
            }
            _ => {}
        }
        // A word: identifier (with dots), number, or IP address / CIDR.
        let mut j = i;
        while j < b.len()
            && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.' | b':' | b'/'))
        {
            // `..` ends a word (ranges like 80..443).
            if b[j] == b'.' && b.get(j + 1) == Some(&b'.') {
                break;
            }
            j += 1;
        }
        if j == i {
            return Err(err(
                start,
                format!(
                    "unexpected character {:?}",
                    src[i..].chars().next().unwrap_or('?')
                ),
            ));
        }
        let word = &src[i..j];
        i = j;
        let tok = if word.bytes().all(|d| d.is_ascii_digit()) {
            Tok::Int(
                word.parse()
                    .map_err(|_| err(start, format!("{word} is too large")))?,
            )
        } else if let Some(ip) = parse_ip(word) {
            ip
        } else if word
            .bytes()
            .next()
            .is_some_and(|d| d.is_ascii_alphabetic() || d == b'_')
            && !word.contains(['/', ':'])
        {
            Tok::Ident(word.to_string())
        } else {
            return Err(err(
                start,
                format!("{word:?} is not a field, number or IP address"),
            ));
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::End,
        pos: src.len(),
    });
    Ok(out)
}

fn parse_ip(word: &str) -> Option<Tok> {
    let (addr, len) = match word.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (word, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_some_and(|l| l > max) {
        return None;
    }
    Some(Tok::Ip(ip, len))
}
