//! Answering a git remote's request for credentials, through libgit2's callback, so secrets
//! never go into a URL or a repository's config.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};

/// What a remote may be offered, already read from wherever it is kept.
#[derive(Clone, Default)]
pub struct Secrets {
    /// The user name; without it, the one in the URL, else `git`.
    pub username: Option<String>,
    /// An HTTPS password or token.
    pub password: Option<String>,
    /// A private key file for SSH.
    pub ssh_key: Option<PathBuf>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

/// What to tell the person running the tool, in its own words (flags differ between tools).
#[derive(Clone, Copy, Debug)]
pub struct Advice {
    /// The remote asks for a kind of credentials none of the secrets is.
    pub missing: &'static str,
    /// The remote refused what was sent.
    pub rejected: &'static str,
}

impl Secrets {
    /// Callbacks for one remote operation, offering each kind of credentials once. libgit2
    /// asks again after a refusal; asked again for a kind already sent, the callback fails with
    /// `advice.rejected` instead of retrying forever. The errors carry [`ErrorCode::Auth`].
    pub fn callbacks(&self, advice: Advice) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        let sent = Cell::new(CredentialType::empty());
        callbacks.credentials(move |_url, user_from_url, allowed| {
            let offer = self
                .offer(allowed)
                .ok_or_else(|| auth_error(advice.missing))?;
            if sent.get().contains(offer.kind()) {
                return Err(auth_error(advice.rejected));
            }
            sent.set(sent.get() | offer.kind());
            let user = self.username.as_deref().or(user_from_url).unwrap_or("git");
            match offer {
                Offer::SshKey(key) => Cred::ssh_key(user, None, key, None),
                Offer::Password(password) => Cred::userpass_plaintext(user, password),
                Offer::Username => Cred::username(user),
            }
        });
        callbacks
    }

    /// The best answer to a request allowing `allowed`: a key, then a password, then a name.
    fn offer(&self, allowed: CredentialType) -> Option<Offer<'_>> {
        match (&self.ssh_key, &self.password) {
            (Some(key), _) if allowed.contains(CredentialType::SSH_KEY) => Some(Offer::SshKey(key)),
            (_, Some(password)) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Some(Offer::Password(password))
            }
            _ if allowed.contains(CredentialType::USERNAME) => Some(Offer::Username),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Offer<'a> {
    SshKey(&'a Path),
    Password(&'a str),
    Username,
}

impl Offer<'_> {
    fn kind(&self) -> CredentialType {
        match self {
            Offer::SshKey(_) => CredentialType::SSH_KEY,
            Offer::Password(_) => CredentialType::USER_PASS_PLAINTEXT,
            Offer::Username => CredentialType::USERNAME,
        }
    }
}

fn auth_error(message: &str) -> git2::Error {
    git2::Error::new(ErrorCode::Auth, ErrorClass::Callback, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let secrets = Secrets {
            username: Some("x-access-token".into()),
            password: Some("s3cret".into()),
            ssh_key: None,
        };
        let shown = format!("{secrets:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn offers_a_key_then_a_password_then_a_name() {
        let key = Path::new("id_ed25519");
        let all = Secrets {
            username: None,
            password: Some("pw".into()),
            ssh_key: Some(key.into()),
        };
        let none = Secrets::default();
        let ssh = CredentialType::SSH_KEY | CredentialType::USERNAME;
        let https = CredentialType::USER_PASS_PLAINTEXT;
        let cases = [
            (&all, ssh, Some(Offer::SshKey(key))),
            (&all, https, Some(Offer::Password("pw"))),
            (&all, CredentialType::USERNAME, Some(Offer::Username)),
            (&none, ssh, Some(Offer::Username)),
            (&none, https, None),
            (&all, CredentialType::DEFAULT, None),
        ];
        for (secrets, allowed, want) in cases {
            assert_eq!(secrets.offer(allowed), want, "{allowed:?}");
        }
    }
}
