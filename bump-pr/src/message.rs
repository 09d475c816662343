//! What the commit and the pull request say, composed from one set of facts so the title, the
//! body and the commit can never name different models.

use crate::yaml_edit::Applied;

/// The trailer that marks a commit as made by bump-pr for one branch.
pub const BUMP_TRAILER: &str = "Modelsync-Bump";
/// The trailer naming the model a commit pins.
pub const MODEL_TRAILER: &str = "Modelsync-Model";

/// A commit author, from `--author "Name <email>"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl std::str::FromStr for Author {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = || format!("invalid --author {s:?}: expected \"Name <email>\"");
        let (name, rest) = s.split_once('<').ok_or_else(fail)?;
        let email = rest.strip_suffix('>').ok_or_else(fail)?.trim();
        let name = name.trim();
        if name.is_empty() || email.is_empty() || !email.contains('@') {
            return Err(fail());
        }
        Ok(Author {
            name: name.to_string(),
            email: email.to_string(),
        })
    }
}

/// The facts a bump is described by.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub model: &'a str,
    pub modelsync: Option<&'a str>,
    pub run: Option<&'a str>,
    pub file: &'a str,
    pub branch: &'a str,
    pub applied: &'a [Applied],
}

impl Facts<'_> {
    /// Replaces `{model}`, `{modelsync}`, `{run}`, `{file}` and `{branch}` in a template.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{model}", self.model)
            .replace("{modelsync}", self.modelsync.unwrap_or(""))
            .replace("{run}", self.run.unwrap_or(""))
            .replace("{file}", self.file)
            .replace("{branch}", self.branch)
    }

    fn change_lines(&self) -> Vec<String> {
        self.applied
            .iter()
            .filter(|a| a.changed())
            .map(|a| {
                format!(
                    "- `{}` in `{}`: `{}` → `{}`",
                    a.path, self.file, a.old, a.new
                )
            })
            .collect()
    }

    fn provenance(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(ms) = self.modelsync {
            lines.push(format!("ModelSync: {ms}"));
        }
        if let Some(run) = self.run {
            lines.push(format!("PipelineRun: {run}"));
        }
        lines
    }
}

/// The commit message: the title, what changed, where it came from, and the trailers that let a
/// later run recognise its own commit.
pub fn commit_message(title: &str, facts: &Facts<'_>) -> String {
    let mut out = format!("{title}\n\n");
    for line in facts.change_lines() {
        out.push_str(&line);
        out.push('\n');
    }
    let provenance = facts.provenance();
    if !provenance.is_empty() {
        out.push('\n');
        for line in provenance {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n{BUMP_TRAILER}: {}\n{MODEL_TRAILER}: {}\n",
        facts.branch, facts.model
    ));
    out
}

/// The pull request body: the user's text, then the generated summary of the same commit.
pub fn pr_body(user_body: &str, facts: &Facts<'_>, superseded: &[u64]) -> String {
    let mut out = String::new();
    if !user_body.trim().is_empty() {
        out.push_str(user_body.trim_end());
        out.push_str("\n\n");
    }
    out.push_str(&format!("Pins model `{}`.\n\n", facts.model));
    for line in facts.change_lines() {
        out.push_str(&line);
        out.push('\n');
    }
    for line in facts.provenance() {
        out.push_str(&format!("\n{line}"));
    }
    if !facts.provenance().is_empty() {
        out.push('\n');
    }
    if !superseded.is_empty() {
        let list = superseded
            .iter()
            .map(|n| format!("#{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "\nSupersedes {list}, closed without merging; that pull request was not reopened.\n"
        ));
    }
    out.push_str(&format!(
        "\n<sub>Opened by modelsync bump-pr; it force-pushes `{}` and keeps this pull request in step. Push your own commits elsewhere: bump-pr stops rather than overwrite them.</sub>\n",
        facts.branch
    ));
    out
}

/// Whether a commit with this author e-mail and message is bump-pr's own on `branch`.
pub fn is_own_commit(author_email: &str, message: &str, me: &Author, branch: &str) -> bool {
    let marked = message.lines().any(|line| {
        line.split_once(':')
            .is_some_and(|(k, v)| k.trim() == BUMP_TRAILER && v.trim() == branch)
    });
    marked && author_email.eq_ignore_ascii_case(&me.email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::YamlPath;

    fn applied() -> Vec<Applied> {
        vec![Applied {
            target: "data.model".into(),
            path: YamlPath::parse("data.model").unwrap(),
            document: 0,
            old: "m-1".into(),
            new: "m-2".into(),
        }]
    }

    fn facts(applied: &[Applied]) -> Facts<'_> {
        Facts {
            model: "m-2",
            modelsync: Some("prod/label-bot"),
            run: Some("deploy-abc12"),
            file: "pin.yaml",
            branch: "modelsync/label-bot",
            applied,
        }
    }

    #[test]
    fn parses_authors() {
        let a: Author = "Model Bot <bot@example.com>".parse().unwrap();
        assert_eq!(a.name, "Model Bot");
        assert_eq!(a.email, "bot@example.com");
        for bad in ["Bot", "Bot <>", "<a@b>", "Bot <nope>", "Bot a@b>"] {
            assert!(bad.parse::<Author>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commit_names_model_modelsync_and_run_and_marks_itself() {
        let applied = applied();
        let f = facts(&applied);
        let msg = commit_message(&f.fill("Bump model to {model}"), &f);
        assert!(msg.starts_with("Bump model to m-2\n\n"));
        assert!(msg.contains("`data.model` in `pin.yaml`: `m-1` → `m-2`"));
        assert!(msg.contains("ModelSync: prod/label-bot"));
        assert!(msg.contains("PipelineRun: deploy-abc12"));
        let me: Author = "Bot <bot@example.com>".parse().unwrap();
        assert!(is_own_commit(
            "bot@example.com",
            &msg,
            &me,
            "modelsync/label-bot"
        ));
        assert!(!is_own_commit(
            "human@example.com",
            &msg,
            &me,
            "modelsync/label-bot"
        ));
        assert!(!is_own_commit(
            "bot@example.com",
            &msg,
            &me,
            "modelsync/other"
        ));
        assert!(!is_own_commit(
            "bot@example.com",
            "fix typo",
            &me,
            "modelsync/label-bot"
        ));
    }

    #[test]
    fn body_names_the_same_model_and_old_prs() {
        let applied = applied();
        let f = facts(&applied);
        let body = pr_body(&f.fill("Model {model} is ready."), &f, &[7]);
        assert!(body.starts_with("Model m-2 is ready.\n\nPins model `m-2`."));
        assert!(body.contains("Supersedes #7"));
        assert!(!body.contains("m-1`."), "{body}");
    }
}
