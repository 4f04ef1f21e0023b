//! OpenVPN config syntax: lines, tokens, quoting, comments and inline blocks.
//!
//! The rules follow OpenVPN 2.6's `parse_line`/`check_inline_file` so a config that stock
//! OpenVPN reads is split into the same words here:
//!
//! - words are separated by whitespace; `#` or `;` at the start of a word starts a comment;
//! - `"..."` quotes a word; inside it `\\`, `\"` and `\<space>` are escapes;
//! - `'...'` quotes a word with no escapes at all;
//! - outside quotes a backslash escapes the next character, which must be `\`, `"` or
//!   whitespace (anything else is an error, as in OpenVPN);
//! - a line holding only `<tag>` opens an inline block that runs to the first line starting
//!   (after leading whitespace) with `</tag>`; the block becomes the option `tag` with the
//!   block's text as its argument;
//! - a leading `--` on the option name is dropped, so `--verb 3` works in files too;
//! - a UTF-8 byte order mark at the start of the file is skipped.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{ConfigError, ConfigErrorKind, Location};

/// The text of an inline block (`<key>...</key>`). It may hold a private key, so it is
/// wiped on drop and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct InlineBlock(Zeroizing<String>);

impl InlineBlock {
    /// Wraps block text.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The block's text, lines joined with `\n` (each line keeps its newline).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for InlineBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineBlock({} bytes)", self.0.len())
    }
}

/// One word of a config line with the column (1-based, in characters) where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The unquoted, unescaped text.
    pub text: String,
    /// Column of the word's first character (the opening quote for quoted words).
    pub column: u32,
}

/// One option as written: its name, its arguments and, for `<tag>` blocks, the block text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// Option name without a leading `--`.
    pub name: String,
    /// Arguments after the name (empty for inline blocks).
    pub args: Vec<Word>,
    /// The text of an inline block, when the option came from `<name>...</name>`.
    pub inline: Option<InlineBlock>,
    /// Where the option name starts.
    pub loc: Location,
}

impl Directive {
    /// Location of argument `i` (0-based), or of the option name when there is no such
    /// argument.
    pub fn arg_loc(&self, i: usize) -> Location {
        match self.args.get(i) {
            Some(w) => Location {
                column: w.column,
                ..self.loc.clone()
            },
            None => self.loc.clone(),
        }
    }

    /// Argument `i` as text, if present.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(|w| w.text.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Initial,
    Unquoted,
    Quoted,
    SingleQuoted,
}

/// OpenVPN's notion of whitespace (C `isspace` in the C locale, plus NUL).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\0')
}

/// Splits one config line into words. `line` must not contain the line's `\n`; the
/// tokenizer behaves as if it were there, as OpenVPN sees lines from `fgets`.
/// Text after a NUL byte is ignored, as in C.
pub fn tokenize_line(line: &str, file: &Arc<str>, line_no: u32) -> Result<Vec<Word>, ConfigError> {
    let line = match line.find('\0') {
        Some(i) => &line[..i],
        None => line,
    };
    let mut words = Vec::new();
    let mut state = State::Initial;
    let mut backslash = false;
    let mut backslash_col = 0u32;
    let mut current = String::new();
    let mut start_col = 0u32;
    let mut col = 0u32;
    let loc = |column: u32| Location {
        file: file.clone(),
        line: line_no,
        column,
    };

    // The virtual newline makes an unquoted word end at the end of the line, as with fgets.
    for ch in line.chars().chain(std::iter::once('\n')) {
        col = col.saturating_add(1);
        if !backslash && ch == '\\' && state != State::SingleQuoted {
            backslash = true;
            backslash_col = col;
            continue;
        }
        let mut out: Option<char> = None;
        let mut done = false;
        match state {
            State::Initial => {
                if !is_space(ch) {
                    if ch == ';' || ch == '#' {
                        // A comment: the rest of the line is ignored.
                        break;
                    }
                    start_col = if backslash { backslash_col } else { col };
                    if !backslash && ch == '"' {
                        state = State::Quoted;
                    } else if !backslash && ch == '\'' {
                        state = State::SingleQuoted;
                    } else {
                        out = Some(ch);
                        state = State::Unquoted;
                    }
                }
            }
            State::Unquoted => {
                if !backslash && is_space(ch) {
                    done = true;
                } else {
                    out = Some(ch);
                }
            }
            State::Quoted => {
                if !backslash && ch == '"' {
                    done = true;
                } else {
                    out = Some(ch);
                }
            }
            State::SingleQuoted => {
                if ch == '\'' {
                    done = true;
                } else {
                    out = Some(ch);
                }
            }
        }
        if done {
            words.push(Word {
                text: std::mem::take(&mut current),
                column: start_col,
            });
            state = State::Initial;
        }
        if backslash
            && let Some(o) = out
            && !(o == '\\' || o == '"' || is_space(o))
        {
            return Err(ConfigError::new(
                loc(backslash_col),
                ConfigErrorKind::BadBackslash,
            ));
        }
        backslash = false;
        if let Some(o) = out {
            current.push(o);
        }
    }
    match state {
        State::Initial => Ok(words),
        State::Quoted => Err(ConfigError::new(
            loc(start_col),
            ConfigErrorKind::UnclosedQuote,
        )),
        State::SingleQuoted => Err(ConfigError::new(
            loc(start_col),
            ConfigErrorKind::UnclosedSingleQuote,
        )),
        // Only reachable if the virtual newline was escaped; OpenVPN keeps the newline in
        // the word then, and so do we.
        State::Unquoted => {
            words.push(Word {
                text: current,
                column: start_col,
            });
            Ok(words)
        }
    }
}

/// Splits a whole config text into directives, reading inline blocks.
pub fn directives(text: &str, file: &Arc<str>) -> Result<Vec<Directive>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((idx, raw)) = lines.next() {
        let line_no = u32::try_from(idx + 1).unwrap_or(u32::MAX);
        let mut words = tokenize_line(raw, file, line_no)?;
        if words.is_empty() {
            continue;
        }
        if let Some(name) = words[0].text.strip_prefix("--")
            && words[0].text.len() >= 3
        {
            words[0].text = name.to_string();
            words[0].column = words[0].column.saturating_add(2);
        }
        let first = words.remove(0);
        let loc = Location {
            file: file.clone(),
            line: line_no,
            column: first.column,
        };
        // `<tag>` alone on a line opens an inline block.
        if words.is_empty()
            && first.text.len() >= 2
            && first.text.starts_with('<')
            && first.text.ends_with('>')
        {
            let tag = first.text[1..first.text.len() - 1].to_string();
            if tag.starts_with('/') {
                return Err(ConfigError::new(
                    loc,
                    ConfigErrorKind::StrayEndTag { tag: first.text },
                ));
            }
            let close = format!("</{tag}>");
            let mut block = String::new();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                if l.trim_start_matches(is_space).starts_with(&close) {
                    closed = true;
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            if !closed {
                return Err(ConfigError::new(
                    loc,
                    ConfigErrorKind::MissingEndTag { tag: close },
                ));
            }
            out.push(Directive {
                name: tag,
                args: Vec::new(),
                inline: Some(InlineBlock::new(block)),
                loc,
            });
            continue;
        }
        out.push(Directive {
            name: first.text,
            args: words,
            inline: None,
            loc,
        });
    }
    Ok(out)
}

/// Turns a command line (`--opt a b --opt2 ...`) into directives, as OpenVPN's
/// `parse_argv` does: every `--name` starts an option that takes the following words up to
/// the next `--word`. A single word without `--` means `--config word`.
pub fn directives_from_args<S: AsRef<str>>(args: &[S]) -> Result<Vec<Directive>, ConfigError> {
    let file: Arc<str> = Arc::from("[command line]");
    let mut out = Vec::new();
    if args.len() == 1 && !args[0].as_ref().starts_with("--") {
        let word = args[0].as_ref().to_string();
        out.push(Directive {
            name: "config".into(),
            args: vec![Word {
                text: word,
                column: 1,
            }],
            inline: None,
            loc: Location {
                file,
                line: 1,
                column: 1,
            },
        });
        return Ok(out);
    }
    let mut i = 0usize;
    while i < args.len() {
        let a = args[i].as_ref();
        let pos = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let loc = Location {
            file: file.clone(),
            line: pos,
            column: 1,
        };
        let Some(name) = a.strip_prefix("--").filter(|n| !n.is_empty()) else {
            return Err(ConfigError::new(
                loc,
                ConfigErrorKind::BadCommandLine {
                    word: a.to_string(),
                },
            ));
        };
        let mut words = Vec::new();
        i += 1;
        while i < args.len() && !args[i].as_ref().starts_with("--") {
            let col = u32::try_from(i + 1).unwrap_or(u32::MAX);
            words.push(Word {
                text: args[i].as_ref().to_string(),
                column: col,
            });
            i += 1;
        }
        out.push(Directive {
            name: name.to_string(),
            args: words,
            inline: None,
            loc,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Result<Vec<String>, ConfigErrorKind> {
        let f: Arc<str> = Arc::from("t");
        tokenize_line(line, &f, 1)
            .map(|w| w.into_iter().map(|w| w.text).collect())
            .map_err(|e| e.kind)
    }

    #[test]
    fn plain_words_and_whitespace() {
        assert_eq!(
            words("remote  vpn.example.net\t1194 udp\r").unwrap(),
            ["remote", "vpn.example.net", "1194", "udp"]
        );
        assert!(words("   ").unwrap().is_empty());
        assert!(words("").unwrap().is_empty());
    }

    #[test]
    fn comments_only_at_word_start() {
        assert!(words("# comment").unwrap().is_empty());
        assert!(words("  ; comment").unwrap().is_empty());
        assert_eq!(words("verb 3 # trailing").unwrap(), ["verb", "3"]);
        assert_eq!(words("verb 3 ;trailing").unwrap(), ["verb", "3"]);
        assert_eq!(words("dev tun#0").unwrap(), ["dev", "tun#0"]);
        // OpenVPN treats an escaped '#' at the start of a word as a comment too.
        assert_eq!(words("a \\#b").unwrap(), ["a"]);
    }

    #[test]
    fn double_quotes_and_escapes() {
        assert_eq!(
            words(r#"push "route 10.0.0.0 255.0.0.0""#).unwrap(),
            ["push", "route 10.0.0.0 255.0.0.0"]
        );
        assert_eq!(words(r#"x "a \"b\" \\ c""#).unwrap(), ["x", r#"a "b" \ c"#]);
        assert_eq!(words(r#"x "a"b"#).unwrap(), ["x", "a", "b"]);
        assert_eq!(words(r#"x """#).unwrap(), ["x", ""]);
        assert_eq!(
            words(r##"x "# not a comment""##).unwrap(),
            ["x", "# not a comment"]
        );
        assert_eq!(words(r#"x a"b"#).unwrap(), ["x", "a\"b"]);
    }

    #[test]
    fn single_quotes_have_no_escapes() {
        assert_eq!(
            words(r"x 'c:\dir\file' y").unwrap(),
            ["x", r"c:\dir\file", "y"]
        );
        assert_eq!(words("x 'a \"b\"'").unwrap(), ["x", "a \"b\""]);
    }

    #[test]
    fn backslash_outside_quotes() {
        assert_eq!(words(r"x a\ b").unwrap(), ["x", "a b"]);
        assert_eq!(words(r"x c:\\dir").unwrap(), ["x", r"c:\dir"]);
        assert_eq!(words(r#"x \"q"#).unwrap(), ["x", "\"q"]);
        assert_eq!(words(r"x a\").unwrap(), ["x", "a\n"]);
    }

    #[test]
    fn errors_have_columns() {
        let f: Arc<str> = Arc::from("f.conf");
        let e = tokenize_line(r"ca c:\dir", &f, 7).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::BadBackslash);
        assert_eq!((e.loc.line, e.loc.column), (7, 6));
        let e = tokenize_line(r#"push "route 1.2.3.4"#, &f, 2).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnclosedQuote);
        assert_eq!(e.loc.column, 6);
        assert!(e.to_string().starts_with("f.conf:2:6: "), "{e}");
        let e = tokenize_line("x 'abc", &f, 1).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnclosedSingleQuote);
    }

    #[test]
    fn nul_ends_the_line() {
        assert_eq!(words("verb 3\0junk \"").unwrap(), ["verb", "3"]);
    }

    #[test]
    fn inline_blocks_and_double_dash() {
        let f: Arc<str> = Arc::from("f");
        let text = "\u{feff}--verb 4\n<ca>\n-----BEGIN X-----\n  abc\n  </ca>\nport 1194\n";
        let d = directives(text, &f).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].name, "verb");
        assert_eq!(d[0].loc.column, 3);
        assert_eq!(d[1].name, "ca");
        assert_eq!(
            d[1].inline.as_ref().unwrap().as_str(),
            "-----BEGIN X-----\n  abc\n"
        );
        assert_eq!(d[1].loc.line, 2);
        assert_eq!(d[2].name, "port");
        assert_eq!(d[2].loc.line, 6);
        let e = directives("<key>\nabc\n", &f).unwrap_err();
        assert_eq!(
            e.kind,
            ConfigErrorKind::MissingEndTag {
                tag: "</key>".into()
            }
        );
        assert_eq!(e.loc.line, 1);
        let e = directives("</key>\n", &f).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::StrayEndTag { .. }));
        // "--" alone is not stripped (OpenVPN needs at least 3 characters).
        assert_eq!(directives("--\n", &f).unwrap()[0].name, "--");
    }

    #[test]
    fn inline_block_debug_hides_text() {
        let b = InlineBlock::new("secret key".into());
        assert_eq!(format!("{b:?}"), "InlineBlock(10 bytes)");
    }

    #[test]
    fn command_line() {
        let d = directives_from_args(&["--dev", "tun", "--verb", "3", "--nobind"]).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[0].name, "dev");
        assert_eq!(d[0].arg(0), Some("tun"));
        assert_eq!(d[2].name, "nobind");
        assert!(d[2].args.is_empty());
        let d = directives_from_args(&["server.conf"]).unwrap();
        assert_eq!(d[0].name, "config");
        assert_eq!(d[0].arg(0), Some("server.conf"));
        let e = directives_from_args(&["--dev", "tun", "stray", "x"]).unwrap();
        assert_eq!(e[0].args.len(), 3);
        assert!(directives_from_args(&["stray", "--dev"]).is_err());
    }
}
