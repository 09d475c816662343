//! The modelsync image's recipe, read from the repository's `Dockerfile` every time an image is
//! built, so the daemonless build and `docker build` cannot drift apart: the Dockerfile is the
//! one place that says which base, packages, user, environment and entrypoint the image has.
//!
//! The parser is strict on purpose. Every instruction of the runtime stage (the last `FROM`) and
//! every command of its `RUN` lines must be one the daemonless builder knows how to apply;
//! anything else is an error naming this file, so a new line in the Dockerfile fails the tests
//! instead of being silently left out of the image the tests run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// What the runtime stage of the Dockerfile makes, in the terms the daemonless builder applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// The runtime stage's base image, like `debian:bookworm-slim`.
    pub base: String,
    /// The Debian suite of that base, like `bookworm`.
    pub suite: String,
    /// Packages the runtime stage installs with apt, in the Dockerfile's order.
    pub packages: Vec<String>,
    /// Whether apt runs with `--no-install-recommends`.
    pub no_install_recommends: bool,
    /// The `groupadd` / `useradd` commands, each as its argument vector, in order.
    pub accounts: Vec<Vec<String>>,
    /// Where the release binary goes in the image, like `/usr/local/bin/modelsync`.
    pub binary_path: String,
    /// Arguments of the build stage's `cargo build` (like `--release --locked -p modelsync`).
    pub cargo_build_args: Vec<String>,
    /// `USER`, like `65532:65532`.
    pub user: Option<String>,
    /// `ENV` entries as `KEY=value`, in order.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
}

/// The repository's `Dockerfile`.
pub fn dockerfile_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Dockerfile")
}

/// Docker's Debian images set this PATH in their config; a `docker build` image inherits it.
pub const DEBIAN_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Recipe {
    /// Reads and parses the repository's `Dockerfile`.
    pub fn load() -> Result<Recipe> {
        let path = dockerfile_path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the image recipe {}", path.display()))?;
        Recipe::parse(&text).with_context(|| format!("reading the recipe in {}", path.display()))
    }

    /// Parses a Dockerfile with a build stage named in `COPY --from` and a runtime stage last.
    pub fn parse(text: &str) -> Result<Recipe> {
        let instructions = instructions(text)?;
        let stage_starts: Vec<usize> = instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| i.keyword == "FROM")
            .map(|(n, _)| n)
            .collect();
        let Some(&runtime_start) = stage_starts.last() else {
            bail!("there is no FROM instruction");
        };
        let runtime = &instructions[runtime_start..];
        let from: Vec<&str> = runtime[0].args.split_whitespace().collect();
        let base = match from.as_slice() {
            [image] | [image, _, _] => (*image).to_owned(),
            _ => bail!(
                "line {}: cannot read `FROM {}`",
                runtime[0].line,
                runtime[0].args
            ),
        };
        let suite = debian_suite(&base)?;

        let mut recipe = Recipe {
            base,
            suite,
            packages: Vec::new(),
            no_install_recommends: false,
            accounts: Vec::new(),
            binary_path: String::new(),
            cargo_build_args: Vec::new(),
            user: None,
            env: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            working_dir: None,
        };
        let mut copied_from = None;
        for ins in &runtime[1..] {
            let at = || format!("line {}: {} {}", ins.line, ins.keyword, ins.args);
            match ins.keyword.as_str() {
                "RUN" => recipe.apply_run(&ins.args).with_context(at)?,
                "COPY" => {
                    if copied_from.is_some() {
                        bail!("{}: only one COPY (the binary) is understood", at());
                    }
                    let words = shell_words(&ins.args).with_context(at)?;
                    match words.as_slice() {
                        [from, _source, dest] if from.starts_with("--from=") => {
                            copied_from = Some(from["--from=".len()..].to_owned());
                            recipe.binary_path = dest.clone();
                        }
                        _ => bail!("{}: expected `COPY --from=<stage> <binary> <path>`", at()),
                    }
                }
                "USER" => recipe.user = Some(ins.args.trim().to_owned()),
                "ENV" => recipe.env.extend(env_entries(&ins.args).with_context(at)?),
                "ENTRYPOINT" => recipe.entrypoint = exec_form(&ins.args).with_context(at)?,
                "CMD" => recipe.cmd = exec_form(&ins.args).with_context(at)?,
                "WORKDIR" => recipe.working_dir = Some(ins.args.trim().to_owned()),
                other => bail!(
                    "{}: the daemonless image builder does not apply {other} instructions; \
                     teach tests/support/src/image/recipe.rs (and the builders using it) about \
                     it, or keep the runtime stage to RUN, COPY, USER, ENV, ENTRYPOINT, CMD and \
                     WORKDIR",
                    at()
                ),
            }
        }
        let Some(stage) = copied_from else {
            bail!("the runtime stage copies no binary from the build stage");
        };
        recipe.cargo_build_args = cargo_build_args(&instructions[..runtime_start], &stage)?;
        if recipe.entrypoint.is_empty() {
            bail!("the runtime stage has no ENTRYPOINT");
        }
        Ok(recipe)
    }

    /// The image's environment: the Debian base's PATH, then the recipe's `ENV` entries.
    pub fn image_env(&self) -> Vec<String> {
        let mut env = vec![DEBIAN_PATH.to_owned()];
        for entry in &self.env {
            let key = entry.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(entry.clone());
        }
        env
    }

    /// A short hex digest of everything the image depends on in the recipe.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("{self:?}"));
        hex(&hasher.finalize())[..16].to_owned()
    }

    /// The numeric `uid` and `gid` of `USER`, when it is given numerically.
    pub fn numeric_user(&self) -> Option<(u32, u32)> {
        let user = self.user.as_deref()?;
        let (uid, gid) = user.split_once(':').unwrap_or((user, user));
        Some((uid.parse().ok()?, gid.parse().ok()?))
    }

    fn apply_run(&mut self, script: &str) -> Result<()> {
        for command in script.split("&&") {
            let words = shell_words(command)?;
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            match words.as_slice() {
                ["apt-get", "update"] => {}
                ["apt-get", "install", rest @ ..] => {
                    for word in rest {
                        match *word {
                            "-y" | "--yes" | "-q" | "-qq" => {}
                            "--no-install-recommends" => self.no_install_recommends = true,
                            flag if flag.starts_with('-') => {
                                bail!("apt-get install option {flag} is not understood")
                            }
                            package => self.packages.push(package.to_owned()),
                        }
                    }
                }
                // The daemonless rootfs never keeps apt's lists (mmdebstrap cleans them).
                ["rm", "-rf", "/var/lib/apt/lists/*"] => {}
                ["groupadd" | "useradd", ..] => {
                    self.accounts
                        .push(words.iter().map(|w| (*w).to_owned()).collect());
                }
                _ => bail!(
                    "the command `{}` is not one the daemonless image builder applies; teach \
                     tests/support/src/image/recipe.rs about it",
                    command.trim()
                ),
            }
        }
        Ok(())
    }
}

/// One Dockerfile instruction with its continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
    line: usize,
}

fn instructions(text: &str) -> Result<Vec<Instruction>> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        // Docker drops comment lines, also in the middle of a continued instruction.
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continued) = match trimmed.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (trimmed, false),
        };
        let entry = current.get_or_insert_with(|| (n + 1, String::new()));
        if !entry.1.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body.trim());
        if !continued {
            let (line, joined) = current.take().unwrap_or_default();
            let (keyword, args) = joined
                .split_once(char::is_whitespace)
                .unwrap_or((&joined, ""));
            out.push(Instruction {
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_owned(),
                line,
            });
        }
    }
    if let Some((line, _)) = current {
        bail!("line {line}: the instruction continues past the end of the file");
    }
    Ok(out)
}

/// `debian:bookworm-slim` -> `bookworm`.
fn debian_suite(base: &str) -> Result<String> {
    let (image, tag) = base.rsplit_once(':').unwrap_or((base, "latest"));
    if image.rsplit('/').next() != Some("debian") {
        bail!(
            "the runtime base {base} is not a Debian image; the daemonless builder makes Debian \
             root filesystems only"
        );
    }
    let suite = tag.trim_end_matches("-slim");
    if suite.is_empty() || !suite.chars().all(|c| c.is_ascii_lowercase()) {
        bail!("the runtime base {base} does not name a Debian suite like bookworm-slim");
    }
    Ok(suite.to_owned())
}

/// The build stage's `cargo build` arguments: the daemonless build runs the same command.
fn cargo_build_args(before_runtime: &[Instruction], stage: &str) -> Result<Vec<String>> {
    let starts = before_runtime.iter().rposition(|i| {
        i.keyword == "FROM" && {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            matches!(words.as_slice(), [_, as_, name] if as_.eq_ignore_ascii_case("as") && *name == stage)
        }
    });
    let Some(start) = starts else {
        bail!("the binary is copied from stage {stage}, which no `FROM ... AS {stage}` names");
    };
    for ins in before_runtime[start..]
        .iter()
        .filter(|i| i.keyword == "RUN")
    {
        for command in ins.args.split("&&") {
            let words = shell_words(command)?;
            if let Some(at) = words
                .windows(2)
                .position(|w| w[0] == "cargo" && w[1] == "build")
            {
                return Ok(words[at + 2..].to_vec());
            }
        }
    }
    bail!("stage {stage} has no `cargo build` command")
}

/// `ENV A=1 B="two words"` or the legacy `ENV A value`.
fn env_entries(args: &str) -> Result<Vec<String>> {
    let words = shell_words(args)?;
    if let [key, ..] = words.as_slice()
        && !key.contains('=')
    {
        return Ok(vec![format!("{key}={}", words[1..].join(" "))]);
    }
    Ok(words)
}

/// `["a", "b"]`; the shell form would run under `/bin/sh -c`, which the recipe never uses.
fn exec_form(args: &str) -> Result<Vec<String>> {
    serde_json::from_str(args).with_context(|| {
        format!("expected the JSON (exec) form like [\"/usr/local/bin/modelsync\"], got {args}")
    })
}

/// Splits a shell command into words with plain quoting; variables and globs are kept as text.
fn shell_words(command: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated ' in `{command}`"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(c) => word.push(c),
                        None => bail!("unterminated \" in `{command}`"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            ';' | '|' | '>' | '<' | '`' => {
                bail!("`{command}` uses shell syntax ({c}) the recipe reader does not follow")
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# build
FROM rust:1-bookworm AS build
RUN cargo build --release --locked -p modelsync \
 && install -D -m 0755 target/release/modelsync /out/modelsync
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 # a comment inside the continuation
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home nonroot
COPY --from=build /out/modelsync /usr/local/bin/modelsync
USER 65532:65532
ENV HOME=/home/nonroot
ENTRYPOINT ["/usr/local/bin/modelsync"]
CMD ["--help"]
"#;

    #[test]
    fn reads_the_runtime_stage() {
        let r = Recipe::parse(SAMPLE).unwrap();
        assert_eq!(r.base, "debian:bookworm-slim");
        assert_eq!(r.suite, "bookworm");
        assert_eq!(r.packages, ["ca-certificates", "libssl3"]);
        assert!(r.no_install_recommends);
        assert_eq!(r.accounts.len(), 2);
        assert_eq!(r.accounts[0], ["groupadd", "--gid", "65532", "nonroot"]);
        assert_eq!(r.binary_path, "/usr/local/bin/modelsync");
        assert_eq!(
            r.cargo_build_args,
            ["--release", "--locked", "-p", "modelsync"]
        );
        assert_eq!(r.numeric_user(), Some((65532, 65532)));
        assert_eq!(r.entrypoint, ["/usr/local/bin/modelsync"]);
        assert_eq!(r.cmd, ["--help"]);
        assert_eq!(
            r.image_env(),
            [DEBIAN_PATH.to_owned(), "HOME=/home/nonroot".to_owned()]
        );
    }

    #[test]
    fn refuses_what_it_cannot_apply() {
        let extra_run = SAMPLE.replace("USER 65532", "RUN chmod 700 /home/nonroot\nUSER 65532");
        let err = format!("{:#}", Recipe::parse(&extra_run).unwrap_err());
        assert!(err.contains("chmod 700"), "{err}");
        let extra_ins = SAMPLE.replace("USER 65532", "EXPOSE 8080\nUSER 65532");
        let err = format!("{:#}", Recipe::parse(&extra_ins).unwrap_err());
        assert!(err.contains("EXPOSE"), "{err}");
        let other_base = SAMPLE.replace("debian:bookworm-slim", "alpine:3");
        assert!(Recipe::parse(&other_base).is_err());
        let shell_cmd = SAMPLE.replace(r#"CMD ["--help"]"#, "CMD --help");
        assert!(Recipe::parse(&shell_cmd).is_err());
    }

    #[test]
    fn digest_follows_the_recipe() {
        let a = Recipe::parse(SAMPLE).unwrap();
        let b = Recipe::parse(&SAMPLE.replace("libssl3", "libssl3 bash")).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), Recipe::parse(SAMPLE).unwrap().digest());
    }
}
