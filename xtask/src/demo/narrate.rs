//! The words both stories use: timestamped lines, what a lambda decided, what the controller
//! started, what `modelsync bump-pr` did.

use std::collections::HashMap;
use std::time::Instant;

use kube::ResourceExt;
use kube::api::DynamicObject;
use modelsync_api::ModelSync;
use modelsync_api::modelsync::{
    ANNOTATION_PARAMETERS, ANNOTATION_REASON, ANNOTATION_REVISION, LABEL_NAME,
};
use serde_json::Value;

/// Prints timestamped story lines.
#[derive(Clone, Copy)]
pub struct Narrator(Instant);

impl Narrator {
    pub fn start() -> Narrator {
        Narrator(Instant::now())
    }

    pub fn say(&self, who: &str, what: impl AsRef<str>) {
        let t = self.0.elapsed().as_secs_f64();
        let mut lines = what.as_ref().lines();
        println!("[{t:6.1}s] {who:<10} {}", lines.next().unwrap_or_default());
        for l in lines {
            println!("{:20}{l}", "");
        }
    }
}

/// A commit as the story shows it.
pub fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// Tells the decision recorded on a new run (its annotations), then the run itself.
pub fn new_run(say: Narrator, run: &DynamicObject) {
    let owner = run.labels().get(LABEL_NAME).cloned().unwrap_or_default();
    let note = |k: &str| run.annotations().get(k).cloned().unwrap_or_default();
    let params = note(ANNOTATION_PARAMETERS);
    let params = if params.is_empty() || params == "{}" {
        String::new()
    } else {
        format!(" {params}")
    };
    say.say(
        &owner,
        format!(
            "lambda says YES{params}: {} [commit {}]",
            note(ANNOTATION_REASON),
            note(ANNOTATION_REVISION)
        ),
    );
    say.say(
        &owner,
        format!(
            "controller created PipelineRun {} (pipeline {}{})",
            run.name_any(),
            run.data["spec"]["pipelineRef"]["name"]
                .as_str()
                .unwrap_or("?"),
            params_text(&run.data)
        ),
    );
}

fn params_text(run: &Value) -> String {
    let params: Vec<String> = run["spec"]["params"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| format!("{}={}", p["name"].as_str().unwrap_or("?"), p["value"]))
                .collect()
        })
        .unwrap_or_default();
    if params.is_empty() {
        String::new()
    } else {
        format!(", {}", params.join(" "))
    }
}

/// Tells each ModelSync's "no" decisions and errors once each; a "yes" is told with the run it
/// starts, from the run's annotations.
#[derive(Default)]
pub struct Decisions {
    told: HashMap<String, String>,
}

impl Decisions {
    pub fn tell(&mut self, say: Narrator, ms: &ModelSync) {
        let Some(status) = &ms.status else { return };
        let name = ms.name_any();
        if let Some(d) = status.last_decision.as_ref().filter(|d| !d.needs_sync) {
            let key = format!("{}|{:?}|{:?}", d.needs_sync, d.parameters, d.revision);
            if self.told.get(&name) != Some(&key) {
                self.told.insert(name.clone(), key);
                say.say(
                    &name,
                    format!(
                        "lambda says no: {} [commit {}]",
                        d.reason.as_deref().unwrap_or("(no reason)"),
                        d.revision.as_deref().unwrap_or("?")
                    ),
                );
            }
        }
        if let Some(c) = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")
        {
            let key = format!("error|{}", c.message);
            if self.told.get(&format!("{name}#err")) != Some(&key) {
                self.told.insert(format!("{name}#err"), key);
                say.say(&name, format!("{}: {}", c.reason, c.message));
            }
        }
    }
}

/// The results `modelsync bump-pr` wrote for a deploy run.
pub struct BumpPr {
    pub status: String,
    pub url: String,
    pub number: String,
    pub commit: String,
}

impl BumpPr {
    /// Reads the results by their Tekton result names.
    pub fn read(result: impl Fn(&str) -> String) -> BumpPr {
        BumpPr {
            status: result("status"),
            url: result("pr-url"),
            number: result("pr-number"),
            commit: result("commit-sha"),
        }
    }

    /// The pull request's number, when one was opened or updated.
    pub fn pr(&self) -> Option<u64> {
        self.number.parse().ok()
    }

    /// What the run did, with the change its branch makes.
    pub fn told(&self, diff: &str) -> String {
        format!(
            "ran `modelsync bump-pr` → PR #{} {} ({}), commit {}\n{diff}",
            self.number,
            self.status,
            self.url,
            short(&self.commit)
        )
    }
}
