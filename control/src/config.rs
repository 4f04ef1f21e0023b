//! OpenVPN configuration files: the syntax (OpenVPN's own quoting, comments, inline blocks,
//! `--opt` command lines) and a typed [`Options`] for the subset a DCO server or client
//! needs.
//!
//! Anything outside the subset stops the start with `file:line:column: option X is not
//! supported: why (what to use instead)`; options DCO forbids (compression, TAP, non-AEAD
//! ciphers, static keys, fragmentation, TCP for now) say so explicitly. Nothing is silently
//! ignored except the options listed as accepted no-ops in the table of [`options`].
//!
//! Entry points: [`parse_str`] (text, no file access: what the fuzz target uses),
//! [`load_file`] and [`load_args`] (a command line, `--config` files included).

pub mod lexer;
pub mod options;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

pub use lexer::{Directive, InlineBlock, Word};
pub use options::*;

/// Where something is in a config: file, line (1-based; 0 = the config as a whole) and
/// column (1-based; 0 = the whole line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// File name as given, or `[command line]`, or the name passed to [`parse_str`].
    pub file: Arc<str>,
    /// 1-based line (for a command line: the word's position). 0 means "the whole config".
    pub line: u32,
    /// 1-based column in characters. 0 means "the whole line".
    pub column: u32,
}

impl Location {
    /// A location meaning "this config as a whole".
    pub fn whole(file: &Arc<str>) -> Self {
        Self {
            file: file.clone(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (l, 0) => write!(f, "{}:{l}", self.file),
            (l, c) => write!(f, "{}:{l}:{c}", self.file),
        }
    }
}

/// A config error with its location. `Display` gives `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{loc}: {kind}")]
pub struct ConfigError {
    /// Where the problem is.
    pub loc: Location,
    /// What the problem is.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// Builds an error.
    pub fn new(loc: Location, kind: ConfigErrorKind) -> Self {
        Self { loc, kind }
    }
}

/// What is wrong with a config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// A backslash outside single quotes escaped something other than `\`, `"` or space.
    #[error(
        "bad backslash ('\\') usage: a backslash escapes only '\\', '\"' or a space; write paths as \"c:\\\\dir\\\\file\" or in single quotes"
    )]
    BadBackslash,
    /// A `"` was not closed on the same line.
    #[error("no closing quotation (\")")]
    UnclosedQuote,
    /// A `'` was not closed on the same line.
    #[error("no closing single quotation (')")]
    UnclosedSingleQuote,
    /// An inline block `<tag>` was not closed.
    #[error("end tag {tag} missing for this inline block")]
    MissingEndTag {
        /// The expected end tag, e.g. `</ca>`.
        tag: String,
    },
    /// `</tag>` without a matching `<tag>`.
    #[error("{tag} without an opening tag")]
    StrayEndTag {
        /// The stray tag.
        tag: String,
    },
    /// A command-line word that is neither an option nor an option's argument.
    #[error("'{word}' is not an option; options on the command line start with --")]
    BadCommandLine {
        /// The word.
        word: String,
    },
    /// The file is not UTF-8 text.
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The OS error text.
        error: String,
    },
    /// `config` files include each other too deeply (or in a loop).
    #[error("config files are nested more than 10 deep (does a file include itself?)")]
    IncludeTooDeep,
    /// `config` used where files cannot be read.
    #[error("'config {path}' cannot be followed here (no file access)")]
    IncludeNotAllowed {
        /// The path that was to be included.
        path: String,
    },
    /// An option this implementation does not know at all.
    #[error(
        "option {name} is not supported: unknown option (see the supported options table in dco's README)"
    )]
    UnknownOption {
        /// The option name.
        name: String,
    },
    /// A known option that is deliberately not supported, with the reason and the way out.
    #[error("option {option} is not supported: {why} ({instead})")]
    Unsupported {
        /// The option as written (with its argument when the argument is the problem).
        option: String,
        /// Why not.
        why: String,
        /// What to use instead.
        instead: String,
    },
    /// Wrong number of arguments.
    #[error("wrong arguments for {option}; usage: {usage}")]
    WrongArgs {
        /// The option.
        option: String,
        /// Its usage line.
        usage: &'static str,
    },
    /// An argument has a bad value.
    #[error("{option}: bad value '{value}': {why}")]
    BadValue {
        /// The option.
        option: String,
        /// The value as written.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// An inline block for an option that takes no file.
    #[error("option {option} cannot be given as an inline <{option}> block")]
    InlineNotAllowed {
        /// The option.
        option: String,
    },
    /// Two options that cannot be combined.
    #[error("{option} cannot be used together with {other}: {why}")]
    Conflict {
        /// This option.
        option: String,
        /// The option it conflicts with.
        other: String,
        /// Why.
        why: String,
    },
    /// Something required is missing.
    #[error("{what} is missing: {why}")]
    Missing {
        /// What is missing.
        what: String,
        /// Why it is needed.
        why: String,
    },
    /// An option that belongs in another kind of file (e.g. `iroute` outside a ccd file).
    #[error("option {option} is not allowed here: {why}")]
    NotAllowedHere {
        /// The option.
        option: String,
        /// Where it belongs.
        why: String,
    },
}

/// A file or an inline block: how `ca`, `cert`, `key`, `tls-auth`, `tls-crypt`,
/// `crl-verify`, `auth-user-pass` give their content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A path, relative to the working directory as in OpenVPN.
    File(PathBuf),
    /// The text of an inline block.
    Inline(InlineBlock),
}

impl Source {
    /// Reads the content (the file, or the inline text). Wiped on drop.
    pub fn load(&self) -> std::io::Result<Zeroizing<Vec<u8>>> {
        match self {
            Source::File(p) => std::fs::read(p).map(Zeroizing::new),
            Source::Inline(b) => Ok(Zeroizing::new(b.as_str().as_bytes().to_vec())),
        }
    }

    /// The path, for files.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::File(p) => Some(p),
            Source::Inline(_) => None,
        }
    }

    /// A short name for messages: the path or `[inline]`.
    pub fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Inline(_) => "[inline]".to_string(),
        }
    }
}

const MAX_INCLUDE_DEPTH: usize = 10;

/// Parses config text (one file's content) without touching the file system: `config`
/// includes are refused. `name` is used in error locations.
pub fn parse_str(name: &str, text: &str) -> Result<Options, ConfigError> {
    let file: Arc<str> = Arc::from(name);
    let dirs = lexer::directives(text, &file)?;
    let mut all = Vec::with_capacity(dirs.len());
    for d in dirs {
        if d.name == "config" {
            return Err(ConfigError::new(
                d.loc.clone(),
                ConfigErrorKind::IncludeNotAllowed {
                    path: d.arg(0).unwrap_or("").to_string(),
                },
            ));
        }
        all.push(d);
    }
    Options::from_directives(&all, &file)
}

/// Reads a config file (following `config` includes) into [`Options`].
pub fn load_file(path: &Path) -> Result<Options, ConfigError> {
    let top: Arc<str> = Arc::from(path.display().to_string());
    let mut all = Vec::new();
    let mut cwd = None;
    read_file_into(path, &Location::whole(&top), 0, &mut cwd, &mut all)?;
    Options::from_directives(&all, &top)
}

/// Reads a command line (`--config file --verb 4 ...`, or a single config file name) into
/// [`Options`]. Options given later override earlier ones, as in OpenVPN.
pub fn load_args<S: AsRef<str>>(args: &[S]) -> Result<Options, ConfigError> {
    let top: Arc<str> = Arc::from("[command line]");
    let mut all = Vec::new();
    let mut cwd = None;
    for d in lexer::directives_from_args(args)? {
        if d.name == "cd" {
            change_dir(&d, &mut cwd)?;
            all.push(d);
        } else if d.name == "config" {
            let Some(p) = d.arg(0).filter(|_| d.args.len() == 1) else {
                return Err(ConfigError::new(
                    d.loc.clone(),
                    ConfigErrorKind::WrongArgs {
                        option: "config".into(),
                        usage: "config file",
                    },
                ));
            };
            let p = options::resolve(cwd.as_deref(), p);
            read_file_into(&p, &d.loc, 1, &mut cwd, &mut all)?;
        } else {
            all.push(d);
        }
    }
    Options::from_directives(&all, &top)
}

/// Follows a `cd dir` for the paths of later `config` includes (the option itself is
/// applied again by the options builder for file arguments).
fn change_dir(d: &Directive, cwd: &mut Option<PathBuf>) -> Result<(), ConfigError> {
    let Some(dir) = d.arg(0).filter(|_| d.args.len() == 1 && d.inline.is_none()) else {
        return Err(ConfigError::new(
            d.loc.clone(),
            ConfigErrorKind::WrongArgs {
                option: "cd".into(),
                usage: "cd directory",
            },
        ));
    };
    let next = options::resolve(cwd.as_deref(), dir);
    if !next.is_dir() {
        return Err(ConfigError::new(
            d.arg_loc(0),
            ConfigErrorKind::Io {
                path: next.display().to_string(),
                error: "not a directory".into(),
            },
        ));
    }
    *cwd = Some(next);
    Ok(())
}

/// Reads a file's directives, expanding `config` includes depth-first.
fn read_file_into(
    path: &Path,
    from: &Location,
    depth: usize,
    cwd: &mut Option<PathBuf>,
    out: &mut Vec<Directive>,
) -> Result<(), ConfigError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(ConfigError::new(
            from.clone(),
            ConfigErrorKind::IncludeTooDeep,
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            from.clone(),
            ConfigErrorKind::Io {
                path: path.display().to_string(),
                error: e.to_string(),
            },
        )
    })?;
    let file: Arc<str> = Arc::from(path.display().to_string());
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::new(
            Location {
                file: file.clone(),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: 0,
            },
            ConfigErrorKind::NotUtf8,
        )
    })?;
    for d in lexer::directives(&text, &file)? {
        if d.name == "cd" {
            change_dir(&d, cwd)?;
            out.push(d);
        } else if d.name == "config" {
            let Some(p) = d.arg(0).filter(|_| d.args.len() == 1 && d.inline.is_none()) else {
                return Err(ConfigError::new(
                    d.loc.clone(),
                    ConfigErrorKind::WrongArgs {
                        option: "config".into(),
                        usage: "config file",
                    },
                ));
            };
            let p = options::resolve(cwd.as_deref(), p);
            read_file_into(&p, &d.loc, depth + 1, cwd, out)?;
        } else {
            out.push(d);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_display() {
        let f: Arc<str> = Arc::from("s.conf");
        assert_eq!(
            Location {
                file: f.clone(),
                line: 3,
                column: 5
            }
            .to_string(),
            "s.conf:3:5"
        );
        assert_eq!(
            Location {
                file: f.clone(),
                line: 3,
                column: 0
            }
            .to_string(),
            "s.conf:3"
        );
        assert_eq!(Location::whole(&f).to_string(), "s.conf");
    }

    #[test]
    fn includes_follow_files_and_stop_loops() {
        let dir = std::env::temp_dir().join(format!("ctls-cfg-inc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.conf");
        let b = dir.join("b.conf");
        std::fs::write(&a, format!("client\nconfig {}\n", b.display())).unwrap();
        std::fs::write(
            &b,
            "dev tun\nremote 192.0.2.1 1194\n<ca>\nx\n</ca>\n<cert>\nx\n</cert>\n<key>\nx\n</key>\n",
        )
        .unwrap();
        let o = load_file(&a).unwrap();
        assert_eq!(o.remotes.len(), 1);
        // A file that includes itself.
        let c = dir.join("c.conf");
        std::fs::write(&c, format!("config {}\n", c.display())).unwrap();
        let e = load_file(&c).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::IncludeTooDeep);
        // Missing file: the error points at the including line.
        std::fs::write(&a, "config /nonexistent/ctls.conf\n").unwrap();
        let e = load_file(&a).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::Io { .. }));
        assert_eq!(e.loc.line, 1);
        // Not UTF-8: the line of the first bad byte.
        std::fs::write(&a, b"verb 3\nca \xff\n").unwrap();
        let e = load_file(&a).unwrap_err();
        assert_eq!((e.kind, e.loc.line), (ConfigErrorKind::NotUtf8, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cd_makes_later_paths_relative_to_it() {
        let dir = std::env::temp_dir().join(format!("ctls-cfg-cd-{}", std::process::id()));
        let sub = dir.join("server");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join("s.conf"),
            "server 10.8.0.0 255.255.255.0\nca ca.crt\ncert /abs/server.crt\nkey keys/server.key\nclient-config-dir ccd\nstatus st.log\n",
        )
        .unwrap();
        // As systemd's openvpn-server@.service does: --cd DIR --config NAME.conf
        let args = [
            "--cd".to_string(),
            sub.display().to_string(),
            "--config".into(),
            "s.conf".into(),
        ];
        let o = load_args(&args).unwrap();
        assert_eq!(o.ca, Some(Source::File(sub.join("ca.crt"))));
        assert_eq!(o.cert, Some(Source::File("/abs/server.crt".into())));
        assert_eq!(o.key, Some(Source::File(sub.join("keys/server.key"))));
        assert_eq!(o.client_config_dir, Some(sub.join("ccd")));
        assert_eq!(o.status.unwrap().path, sub.join("st.log"));
        // Paths before the cd stay as written; a missing directory is an error.
        let o = parse_str(
            "t",
            "ca a.crt\ncd /etc/x\ncert b.crt\nkey k\nclient\nremote h\n",
        )
        .unwrap();
        assert_eq!(o.ca, Some(Source::File("a.crt".into())));
        assert_eq!(o.cert, Some(Source::File("/etc/x/b.crt".into())));
        let e = load_args(&["--cd", "/nonexistent/ctls", "--client"]).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::Io { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parse_str_refuses_includes() {
        let e = parse_str("t", "config other.conf\n").unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::IncludeNotAllowed { .. }));
    }

    #[test]
    fn command_line_with_config_file() {
        let dir = std::env::temp_dir().join(format!("ctls-cfg-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("c.conf");
        std::fs::write(
            &a,
            "client\ndev tun\nremote 192.0.2.1\nca ca.crt\ncert c.crt\nkey c.key\nverb 3\n",
        )
        .unwrap();
        let args = [
            "--config".to_string(),
            a.display().to_string(),
            "--verb".into(),
            "5".into(),
        ];
        let o = load_args(&args).unwrap();
        assert_eq!(o.verb, 5);
        let o = load_args(&[a.display().to_string()]).unwrap();
        assert_eq!(o.verb, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "server",
            "client",
            "dev",
            "proto",
            "port",
            "remote",
            "ca",
            "cert",
            "key",
            "push",
            "route",
            "route-ipv6",
            "keepalive",
            "tls-auth",
            "data-ciphers",
            "verb",
            "server-ipv6",
            "ifconfig-pool",
            "peer-fingerprint",
            "verify-x509-name",
            "reneg-sec",
            "comp-lzo",
            "<ca>",
            "</ca>",
            "<key>",
            "--verb",
            "mode",
            "topology",
            "tls-version-min",
            "max-clients",
        ];
        const ARGS: &[&str] = &[
            "10.8.0.0",
            "255.255.255.0",
            "1194",
            "udp",
            "tcp",
            "tun",
            "\"a b\"",
            "'q'",
            "\\",
            "#",
            ";x",
            "fd00::/64",
            "AES-256-GCM",
            "0",
            "1",
            "x\\ y",
            "\"",
            "'",
            "<ca>",
            "10 60",
        ];

        fn line() -> impl Strategy<Value = String> {
            (
                prop::sample::select(NAMES),
                prop::collection::vec(prop::sample::select(ARGS), 0..5),
            )
                .prop_map(|(n, a)| format!("{n} {}", a.join(" ")))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Arbitrary text never panics; an error always names a line inside the text.
            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
                if let Err(e) = parse_str("p", &text) {
                    let lines = u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX);
                    prop_assert!(e.loc.line <= lines);
                    prop_assert!(!e.to_string().is_empty());
                }
            }

            /// Config-shaped text (real option names, odd arguments and quoting) never
            /// panics either.
            #[test]
            fn config_shaped_text_never_panics(lines in prop::collection::vec(line(), 0..30)) {
                let text = lines.join("\n");
                let _ = parse_str("p", &text);
            }

            /// Word columns always point inside the line.
            #[test]
            fn tokenizer_columns_stay_in_the_line(line in "[ -~\t]{0,120}") {
                let f: Arc<str> = Arc::from("p");
                if let Ok(words) = lexer::tokenize_line(&line, &f, 1) {
                    for w in words {
                        prop_assert!(w.column >= 1 && (w.column as usize) <= line.chars().count() + 1);
                    }
                }
            }
        }
    }
}
