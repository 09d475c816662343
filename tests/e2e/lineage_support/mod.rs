//! What the lineage tests run beside the controller: an OpenLineage receiver on loopback that
//! records every POST, and OpenLineage's own JSON Schemas (with modelsync's facet schemas) to
//! validate each event against, read from disk, never fetched.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub authorization: Option<String>,
    pub body: Value,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// A lineage server stand-in: answers 201 to `POST /api/v1/lineage` and records the events.
pub struct Receiver {
    pub addr: SocketAddr,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Listens on `addr`: a test that first kept the port closed brings the server up there.
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let log = Log::default();
        let app = Router::new()
            .route("/api/v1/lineage", post(record))
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, log, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// The events of one run, in the order they came.
    pub fn events_of(&self, run_id: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .map(|r| r.body)
            .filter(|e| e["run"]["runId"] == run_id)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(log): State<Log>, headers: HeaderMap, body: String) -> StatusCode {
    let Ok(body) = serde_json::from_str(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    log.lock().unwrap().push(Received {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
    StatusCode::CREATED
}

/// The OpenLineage spec folder: `<workspace root>/../shared/spec/openlineage`.
pub fn spec_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("../shared/spec/openlineage");
    assert!(
        dir.join("OpenLineage.json").is_file(),
        "OpenLineage's JSON Schemas are not at {} (expected OpenLineage.json and facets/ there, \
         beside the repository in shared/spec/openlineage); put the 2-0-2 spec there to run \
         the lineage tests",
        dir.display()
    );
    dir
}

/// Serves schemas by their `$id` from files: references resolve offline.
struct LocalSchemas(HashMap<String, Value>);

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .get(uri.as_str())
            .cloned()
            .ok_or_else(|| format!("{uri} is not among the local schemas").into())
    }
}

/// Validators for a RunEvent and for each facet schema, keyed by the facets' field name.
pub struct Schemas {
    event: jsonschema::Validator,
    /// Facet key (as in `facets: {key: ...}`) to the validator of a `facets` object holding it.
    facets: HashMap<String, jsonschema::Validator>,
}

impl Schemas {
    pub fn load() -> Schemas {
        let dir = spec_dir();
        let docs_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/lineage");
        let mut files: Vec<PathBuf> = vec![dir.join("OpenLineage.json")];
        for d in [dir.join("facets"), docs_dir] {
            for entry in std::fs::read_dir(&d).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        let mut by_id = HashMap::new();
        let mut facet_docs = Vec::new();
        for file in files {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let id = doc["$id"].as_str().unwrap().to_owned();
            if id.contains("/facets/") {
                facet_docs.push(doc.clone());
            }
            by_id.insert(id, doc);
        }
        let build = |schema: &Value| {
            jsonschema::options()
                .should_validate_formats(true)
                .with_retriever(LocalSchemas(by_id.clone()))
                .build(schema)
                .unwrap()
        };
        let event = build(&serde_json::json!({
            "$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json"
        }));
        let mut facets = HashMap::new();
        for doc in facet_docs {
            for key in doc["properties"].as_object().unwrap().keys() {
                facets.insert(key.clone(), build(&doc));
            }
        }
        Schemas { event, facets }
    }

    /// Every problem with `event`: the RunEvent schema, then each facet with a known schema.
    /// Custom facets must have a schema here too, so none goes unchecked.
    pub fn problems(&self, event: &Value) -> Vec<String> {
        let mut out: Vec<String> = self
            .event
            .iter_errors(event)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        let mut facet_sets = vec![("run", &event["run"]["facets"])];
        for side in ["inputs", "outputs"] {
            for d in event[side].as_array().into_iter().flatten() {
                facet_sets.push((side, &d["facets"]));
            }
        }
        for (place, facets) in facet_sets {
            for (key, facet) in facets.as_object().into_iter().flatten() {
                match self.facets.get(key) {
                    Some(v) => out.extend(
                        v.iter_errors(&serde_json::json!({ key: facet }))
                            .map(|e| format!("{place} facet {key}{}: {e}", e.instance_path())),
                    ),
                    None => out.push(format!("{place} facet {key} has no schema to check it")),
                }
            }
        }
        out
    }
}
