//! Paths inside a repository, as a user names them in a flag or a config file.

use std::path::{Component, Path};

/// A path that does not name something inside the repository.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepoPathError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} must be a relative path inside the repository, without '..'")]
    Outside(String),
}

/// Checks `text` is relative and never climbs out with `..`; returns it with `.` steps dropped
/// and `/` separators, as git names tree entries.
pub fn repo_path(text: &str) -> Result<String, RepoPathError> {
    let mut parts = Vec::new();
    for component in Path::new(text).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(RepoPathError::Outside(text.to_owned())),
        }
    }
    if parts.is_empty() {
        return Err(RepoPathError::Empty);
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_stay_inside_the_repository() {
        let cases = [
            ("./deploy/pin.yaml", Ok("deploy/pin.yaml")),
            ("models/", Ok("models")),
            ("a/./b", Ok("a/b")),
            ("../x.yaml", Err(RepoPathError::Outside("../x.yaml".into()))),
            ("a/../../x", Err(RepoPathError::Outside("a/../../x".into()))),
            (
                "/etc/passwd",
                Err(RepoPathError::Outside("/etc/passwd".into())),
            ),
            ("", Err(RepoPathError::Empty)),
            ("./", Err(RepoPathError::Empty)),
        ];
        for (text, want) in cases {
            assert_eq!(repo_path(text), want.map(str::to_owned), "{text:?}");
        }
    }
}
