//! A GitOps repository on disk, for the demo and the real-node tests: a bare repository (the
//! "remote" the lambda server mirrors and the deploy runs push to) and a working clone through
//! which the caller plays the people who change it: training or a data scientist records a model,
//! a reviewer merges the deployer's pull request.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::git::{changed_lines, git};

pub struct GitOpsRepo {
    /// The bare repository, the one every other party clones and pushes to.
    pub bare: PathBuf,
    work: PathBuf,
}

impl GitOpsRepo {
    /// Commits every file already under `work` and pushes it as `main` of a new bare repository
    /// at `bare`; `work` then stays the working clone.
    pub fn publish(work: &Path, bare: &Path, message: &str) -> Result<GitOpsRepo> {
        let parent = bare
            .parent()
            .context("a bare repository path has a parent")?;
        git(parent, &["init", "--bare", "-q", &bare.to_string_lossy()])?;
        git(work, &["init", "-q"])?;
        git(work, &["add", "-A"])?;
        git(work, &["commit", "-q", "-m", message])?;
        git(work, &["remote", "add", "origin", &bare.to_string_lossy()])?;
        git(work, &["push", "-q", "origin", "HEAD:main"])?;
        Ok(GitOpsRepo {
            bare: bare.to_owned(),
            work: work.to_owned(),
        })
    }

    /// `file://…` of the bare repository, for processes on this machine.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The working clone, checked out at main as the remote has it now: for reading files.
    pub fn main(&self) -> Result<&Path> {
        git(&self.work, &["fetch", "-q", "origin"])?;
        git(&self.work, &["checkout", "-q", "-B", "main", "origin/main"])?;
        Ok(&self.work)
    }

    /// The model ids recorded on main, oldest first by name.
    pub fn models(&self) -> Result<Vec<String>> {
        model_ids(self.main()?)
    }

    /// Commits a model record to main, as training's last step or a data scientist registering
    /// a model by hand does; its data revision is main's commit before it. Returns the commit.
    pub fn add_model(&self, id: &str, created: &str, message: &str) -> Result<String> {
        let work = self.main()?;
        let data_revision = git(work, &["rev-parse", "HEAD"])?;
        std::fs::write(
            work.join(format!("models/{id}.yaml")),
            record(id, created, data_revision.trim()),
        )?;
        git(work, &["add", "-A"])?;
        git(work, &["commit", "-q", "-m", message])?;
        self.push_main()
    }

    /// The `+` and `-` lines `branch` changes in `file` against main: the change as a reviewer
    /// reads it.
    pub fn branch_diff(&self, branch: &str, file: &str) -> Result<String> {
        let work = self.main()?;
        git(work, &["fetch", "-q", "origin", branch])?;
        let diff = git(
            work,
            &[
                "diff",
                "--unified=0",
                "origin/main...FETCH_HEAD",
                "--",
                file,
            ],
        )?;
        Ok(changed_lines(&diff))
    }

    /// Merges `branch` into main, as a reviewer clicking "Merge" would; returns the merge commit.
    pub fn merge(&self, branch: &str) -> Result<String> {
        let work = self.main()?;
        git(work, &["fetch", "-q", "origin", branch])?;
        let message = format!("Merge {branch}");
        git(
            work,
            &[
                "-c",
                "user.name=Reviewer",
                "merge",
                "-q",
                "--no-ff",
                "-m",
                &message,
                "FETCH_HEAD",
            ],
        )?;
        self.push_main()
    }

    fn push_main(&self) -> Result<String> {
        git(&self.work, &["push", "-q", "origin", "HEAD:main"])?;
        Ok(git(&self.work, &["rev-parse", "HEAD"])?.trim().to_owned())
    }
}

/// A model record as `models/<id>.yaml` holds it (the format of `examples/gitops-repo`).
pub fn record(id: &str, created: &str, data_revision: &str) -> String {
    format!(
        "id: {id}\ncreated: {created}\ndataRevision: {data_revision}\nmetrics:\n  accuracy: 0.91\n"
    )
}

/// The model ids recorded under `dir/models`, oldest first by name.
pub fn model_ids(dir: &Path) -> Result<Vec<String>> {
    let models = dir.join("models");
    let mut ids: Vec<String> = std::fs::read_dir(&models)
        .with_context(|| format!("reading {}", models.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".yaml")
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository like the demo's: one model, a manifest pinning it.
    fn seeded(dir: &Path) -> GitOpsRepo {
        let work = dir.join("work");
        std::fs::create_dir_all(work.join("models")).unwrap();
        std::fs::create_dir_all(work.join("manifests")).unwrap();
        std::fs::write(work.join("manifests/pin.yaml"), "model: m-1\n").unwrap();
        std::fs::write(
            work.join("models/m-1.yaml"),
            record("m-1", "2026-11-01T08:00:00Z", "0"),
        )
        .unwrap();
        GitOpsRepo::publish(&work, &dir.join("gitops.git"), "seed").unwrap()
    }

    /// What `modelsync bump-pr` does: a branch off main that changes the pin.
    fn push_bump(dir: &Path, repo: &GitOpsRepo, branch: &str, model: &str) {
        let clone = dir.join("bump");
        git(
            dir,
            &["clone", "-q", &repo.file_url(), &clone.to_string_lossy()],
        )
        .unwrap();
        std::fs::write(
            clone.join("manifests/pin.yaml"),
            format!("model: {model}\n"),
        )
        .unwrap();
        git(&clone, &["commit", "-q", "-am", "bump"]).unwrap();
        git(&clone, &["push", "-q", "origin", &format!("HEAD:{branch}")]).unwrap();
    }

    #[test]
    fn a_recorded_model_is_on_main_with_main_as_its_data_revision() {
        let dir = tempfile::tempdir().unwrap();
        let repo = seeded(dir.path());
        let before = git(&repo.bare, &["rev-parse", "main"]).unwrap();
        let commit = repo
            .add_model("m-2", "2026-11-02T08:00:00Z", "Record m-2")
            .unwrap();
        assert_eq!(
            git(&repo.bare, &["rev-parse", "main"]).unwrap().trim(),
            commit
        );
        assert_eq!(repo.models().unwrap(), ["m-1", "m-2"]);
        let text = std::fs::read_to_string(repo.main().unwrap().join("models/m-2.yaml")).unwrap();
        assert!(
            text.contains(&format!("dataRevision: {}", before.trim())),
            "{text}"
        );
    }

    #[test]
    fn a_merged_branch_is_what_its_diff_showed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = seeded(dir.path());
        push_bump(dir.path(), &repo, "bump", "m-2");
        assert_eq!(
            repo.branch_diff("bump", "manifests/pin.yaml").unwrap(),
            "-model: m-1\n+model: m-2"
        );
        let merged = repo.merge("bump").unwrap();
        assert_eq!(
            git(&repo.bare, &["rev-parse", "main"]).unwrap().trim(),
            merged
        );
        let pin = std::fs::read_to_string(repo.main().unwrap().join("manifests/pin.yaml")).unwrap();
        assert_eq!(pin, "model: m-2\n");
        let author = git(&repo.bare, &["log", "-1", "--format=%an", "main"]).unwrap();
        assert_eq!(author.trim(), "Reviewer");
    }
}
