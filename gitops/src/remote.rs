//! Facts about a git remote's URL: whether libgit2 reads it locally, and the credentials a
//! URL may carry, which are never shown.

use std::ops::Range;

/// Whether libgit2 reads `url` with its local transport, which cannot fetch shallow.
///
/// libgit2 picks a transport by scheme (case-insensitively), and takes anything else holding a
/// `:` for scp-like SSH (`host:path`, `user@host:path`). So a URL without a scheme is local
/// exactly when it has no `:`; an `@` in a path (`/srv/team@site/repo.git`) is just a character.
pub fn is_local(url: &str) -> bool {
    let scheme = url.get(..7).unwrap_or_default();
    scheme.eq_ignore_ascii_case("file://") || !url.contains(':')
}

/// Where `user:password@` sits in a URL with a scheme, `@` included.
fn userinfo(url: &str) -> Option<Range<usize>> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    Some(start..start + at + 1)
}

/// Whether the URL carries a user or a password (`https://token@host/...`).
pub fn has_credentials(url: &str) -> bool {
    userinfo(url).is_some()
}

/// The URL with any `user:password@` part masked, for logs and errors.
pub fn redact(url: &str) -> String {
    match userinfo(url) {
        Some(at) => format!("{}***@{}", &url[..at.start], &url[at.end..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_are_the_ones_libgit2_reads_locally() {
        let cases = [
            ("file:///srv/r.git", true),
            ("FILE:///srv/r.git", true),
            ("/srv/r.git", true),
            ("../r.git", true),
            ("r.git", true),
            ("/srv/team@site/r.git", true),
            ("./ops@2024/r.git", true),
            ("https://h.example/r.git", false),
            ("http://127.0.0.1:9/r.git", false),
            ("git://127.0.0.1/r.git", false),
            ("ssh://git@h.example/o/r.git", false),
            ("git@h.example:o/r.git", false),
            ("h.example:o/r.git", false),
            ("/srv/a:b/r.git", false),
        ];
        for (url, local) in cases {
            assert_eq!(is_local(url), local, "{url}");
        }
    }

    #[test]
    fn redacts_userinfo_and_only_that() {
        let cases = [
            (
                "https://u:tok@h.example/r.git",
                "https://***@h.example/r.git",
            ),
            ("https://tok@h.example/r.git", "https://***@h.example/r.git"),
            (
                "http://u:p@ss@127.0.0.1:8/r.git",
                "http://***@127.0.0.1:8/r.git",
            ),
            ("https://h.example/a@b", "https://h.example/a@b"),
            ("https://h.example?u=a@b", "https://h.example?u=a@b"),
            ("/srv/repo.git", "/srv/repo.git"),
            ("git@h.example:o/r.git", "git@h.example:o/r.git"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
            assert_eq!(has_credentials(url), url != shown, "{url}");
        }
    }
}
