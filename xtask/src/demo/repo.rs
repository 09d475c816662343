//! The demo's GitOps repository: a bare repository (the "remote") and a working clone used to
//! play the people and pipelines that change it (training records a model, a reviewer merges).

use std::path::{Path, PathBuf};

use anyhow::Result;
use modelsync_testenv::git::{changed_lines, git};

pub struct Repo {
    pub bare: PathBuf,
    work: PathBuf,
}

const MANIFEST: &str =
    "# The model the production lambda serves. modelsync's deployer bumps it by pull request.
apiVersion: v1
kind: ConfigMap
metadata:
  name: label-bot-model
  namespace: label-bot
data:
  model: m-20261101   # pinned model id
";

pub fn record(id: &str, created: &str, data_revision: &str) -> String {
    format!(
        "id: {id}\ncreated: {created}\ndataRevision: {data_revision}\nmetrics:\n  auc: 0.9{}\n",
        id.len() % 10
    )
}

impl Repo {
    /// A repository with one old model record and a manifest pinning it.
    pub fn seed(dir: &Path) -> Result<Repo> {
        let bare = dir.join("gitops.git");
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        git(dir, &["init", "--bare", "-q", bare.to_str().unwrap()])?;
        git(&work, &["init", "-q"])?;
        std::fs::create_dir_all(work.join("models"))?;
        std::fs::create_dir_all(work.join("manifests"))?;
        std::fs::create_dir_all(work.join("data"))?;
        std::fs::write(
            work.join("data/issues.csv"),
            "id,title,label\n1,crash on start,bug\n",
        )?;
        std::fs::write(work.join("manifests/model.yaml"), MANIFEST)?;
        std::fs::write(
            work.join("models/m-20261101.yaml"),
            record("m-20261101", "2026-11-01T08:00:00Z", "0000000"),
        )?;
        git(&work, &["add", "-A"])?;
        git(
            &work,
            &[
                "commit",
                "-q",
                "-m",
                "Label bot: data, first model, production pin",
            ],
        )?;
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()])?;
        git(&work, &["push", "-q", "origin", "HEAD:main"])?;
        Ok(Repo { bare, work })
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    fn sync(&self) -> Result<()> {
        git(&self.work, &["fetch", "-q", "origin"])?;
        git(&self.work, &["checkout", "-q", "-B", "main", "origin/main"])?;
        Ok(())
    }

    /// Commits a model record to main, as the training pipeline's last step does.
    pub fn add_model(&self, id: &str, created: &str, by: &str) -> Result<String> {
        self.sync()?;
        let head = git(&self.work, &["rev-parse", "--short", "HEAD"])?;
        std::fs::write(
            self.work.join(format!("models/{id}.yaml")),
            record(id, created, head.trim()),
        )?;
        git(&self.work, &["add", "-A"])?;
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("Record model {id} ({by})")],
        )?;
        git(&self.work, &["push", "-q", "origin", "HEAD:main"])?;
        Ok(git(&self.work, &["rev-parse", "--short", "HEAD"])?
            .trim()
            .to_owned())
    }

    /// The diff a bump branch carries against main, in the manifest.
    pub fn branch_diff(&self, branch: &str) -> Result<String> {
        self.sync()?;
        git(&self.work, &["fetch", "-q", "origin", branch])?;
        let diff = git(
            &self.work,
            &[
                "diff",
                "--unified=0",
                "origin/main...FETCH_HEAD",
                "--",
                "manifests/model.yaml",
            ],
        )?;
        Ok(changed_lines(&diff))
    }

    /// Merges a bump branch into main, as the reviewer clicking "Merge" would.
    pub fn merge(&self, branch: &str) -> Result<()> {
        self.sync()?;
        git(&self.work, &["fetch", "-q", "origin", branch])?;
        git(
            &self.work,
            &[
                "-c",
                "user.name=Reviewer",
                "merge",
                "-q",
                "--no-ff",
                "-m",
                &format!("Merge {branch}"),
                "FETCH_HEAD",
            ],
        )?;
        git(&self.work, &["push", "-q", "origin", "HEAD:main"])?;
        Ok(())
    }
}
