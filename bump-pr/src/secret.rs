//! The GitHub token, kept out of every output: its Debug and Display print a placeholder.

use std::fmt;
use std::path::Path;

/// A token read from `--token-file` or the environment.
#[derive(Clone)]
pub struct Token(String);

/// Environment variables read for a token when no `--token-file` is given, in order.
pub const TOKEN_ENV: [&str; 2] = ["MODELSYNC_GITHUB_TOKEN", "GITHUB_TOKEN"];

impl Token {
    /// Reads a token file (a mounted Secret); surrounding whitespace is dropped.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read --token-file {}: {e}; mount the token Secret there or set GITHUB_TOKEN",
                path.display()
            )
        })?;
        Self::new(text.trim().to_string()).ok_or_else(|| {
            anyhow::anyhow!(
                "--token-file {} is empty; put the GitHub token in it",
                path.display()
            )
        })
    }

    /// The first non-empty token among [`TOKEN_ENV`].
    pub fn from_env() -> Option<Self> {
        TOKEN_ENV
            .iter()
            .find_map(|name| std::env::var(name).ok())
            .and_then(|t| Self::new(t.trim().to_string()))
    }

    pub fn new(token: String) -> Option<Self> {
        (!token.is_empty()).then_some(Self(token))
    }

    /// The token itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let t = Token::new("ghp_secret123".into()).unwrap();
        assert!(!format!("{t:?} {t}").contains("secret"));
        assert_eq!(t.expose(), "ghp_secret123");
        assert!(Token::new(String::new()).is_none());
    }

    #[test]
    fn reads_a_trimmed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "ghp_abc\n").unwrap();
        assert_eq!(Token::from_file(&path).unwrap().expose(), "ghp_abc");
        std::fs::write(&path, "\n").unwrap();
        assert!(Token::from_file(&path).is_err());
        assert!(Token::from_file(&dir.path().join("missing")).is_err());
    }
}
