//! Model records kept in the mirrored repository (format in `lambdas/README.md`).

use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

use super::ModelRecord;

/// Why model records could not be read. Every message starts with the file (or folder) at
/// fault, as the repository names it.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The file or folder exists but could not be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The file is neither YAML nor JSON.
    #[error("{path}: not YAML or JSON: {source}")]
    Syntax {
        path: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A record has no `created`.
    #[error(
        "{path}: record {id}: field created is missing (an RFC 3339 time like 2026-01-01T00:00:00Z)"
    )]
    CreatedMissing { path: String, id: String },
    /// A record's `created` is not an RFC 3339 time.
    #[error(
        "{path}: record {id}: field created: {value:?} is not an RFC 3339 time like 2026-01-01T00:00:00Z"
    )]
    CreatedNotATime {
        path: String,
        id: String,
        value: String,
    },
    /// A mapping with an `id` whose other fields are not a record's.
    #[error("{path}: not a model record: {source}")]
    NotARecord {
        path: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// Neither one record, a list of them, nor `{models: [...]}`.
    #[error(
        "{path}: not a model record (id, created, dataRevision, metrics), a list of them, or {{models: [...]}}"
    )]
    Shape { path: String },
}

/// A records file holds one record, a list of them, or `{models: [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RecordsFile {
    One(ModelRecord),
    List(Vec<ModelRecord>),
    Wrapped { models: Vec<ModelRecord> },
}

/// Parses one records file; `name` is only used in messages.
pub fn parse(name: &str, text: &str) -> Result<Vec<ModelRecord>, RecordsError> {
    let path = || name.to_owned();
    // Untagged enums hide the field that was wrong, so try the one-record shape first for its
    // precise message when the file is a mapping with an id.
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|source| RecordsError::Syntax {
            path: path(),
            source,
        })?;
    if value.is_null() {
        return Ok(Vec::new());
    }
    let items: Vec<&serde_yaml_ng::Value> = match (&value, value.get("models")) {
        (_, Some(serde_yaml_ng::Value::Sequence(list))) => list.iter().collect(),
        (serde_yaml_ng::Value::Sequence(list), _) => list.iter().collect(),
        (one, _) => vec![one],
    };
    for item in items {
        check_created(name, item)?;
    }
    if value.get("id").is_some() {
        return serde_yaml_ng::from_value::<ModelRecord>(value)
            .map(|r| vec![r])
            .map_err(|source| RecordsError::NotARecord {
                path: path(),
                source,
            });
    }
    match serde_yaml_ng::from_value::<RecordsFile>(value) {
        Ok(RecordsFile::One(r)) => Ok(vec![r]),
        Ok(RecordsFile::List(list) | RecordsFile::Wrapped { models: list }) => Ok(list),
        Err(_) => Err(RecordsError::Shape { path: path() }),
    }
}

/// chrono's own message does not say which field or format, so check `created` first.
fn check_created(name: &str, record: &serde_yaml_ng::Value) -> Result<(), RecordsError> {
    let id = record.get("id").and_then(|v| v.as_str()).unwrap_or("?");
    match record.get("created") {
        None => Err(RecordsError::CreatedMissing {
            path: name.to_owned(),
            id: id.to_owned(),
        }),
        Some(serde_yaml_ng::Value::String(s))
            if s.parse::<chrono::DateTime<chrono::Utc>>().is_err() =>
        {
            Err(RecordsError::CreatedNotATime {
                path: name.to_owned(),
                id: id.to_owned(),
                value: s.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Reads the records at `rel` (a file, or a folder of `.yaml`, `.yml` and `.json` files) in a
/// checked-out tree. A path that does not exist means no model has been recorded yet.
pub fn load(tree: &Path, rel: &str) -> Result<Vec<ModelRecord>, RecordsError> {
    let path = tree.join(rel);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(rel)(e)),
    };
    if meta.is_file() {
        let text = fs::read_to_string(&path).map_err(unreadable(rel))?;
        return parse(rel, &text);
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(&path).map_err(unreadable(rel))? {
        let name = entry.map_err(unreadable(rel))?.file_name();
        let name = name.to_string_lossy().into_owned();
        if [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            names.push(name);
        }
    }
    names.sort();
    let mut models = Vec::new();
    for name in names {
        let shown = format!("{}/{name}", rel.trim_end_matches('/'));
        let text = fs::read_to_string(path.join(&name)).map_err(unreadable(&shown))?;
        models.extend(parse(&shown, &text)?);
    }
    Ok(models)
}

/// Turns a failure to read `path` into the error naming it.
fn unreadable(path: &str) -> impl FnOnce(io::Error) -> RecordsError {
    let path = path.to_owned();
    move |source| RecordsError::Read { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape() {
        let one = "id: m1\ncreated: 2026-01-01T00:00:00Z\ndataRevision: abc\nmetrics: {auc: 0.9}\n";
        let got = parse("m1.yaml", one).unwrap();
        assert_eq!(got[0].data_revision.as_deref(), Some("abc"));
        assert_eq!(got[0].metrics["auc"], 0.9);
        let list = r#"[{"id":"a","created":"2026-01-01T00:00:00Z"},{"id":"b","created":"2026-01-02T00:00:00+02:00"}]"#;
        assert_eq!(parse("m.json", list).unwrap().len(), 2);
        let wrapped = "models:\n- id: a\n  created: 2026-01-01T00:00:00Z\n";
        assert_eq!(parse("m.yaml", wrapped).unwrap().len(), 1);
        assert!(parse("empty.yaml", "").unwrap().is_empty());
    }

    #[test]
    fn bad_records_name_the_file_and_field() {
        let err = parse("models/m1.yaml", "id: m1\ncreated: yesterday\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "models/m1.yaml: record m1: field created: \"yesterday\" is not an RFC 3339 time like 2026-01-01T00:00:00Z"
        );
        let err = parse("models/x.yaml", "name: x\n").unwrap_err().to_string();
        assert!(
            err.starts_with("models/x.yaml: record ?: field created is missing"),
            "{err}"
        );
        let err = parse("models/x.yaml", "- created: 2026-01-01T00:00:00Z\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("models/x.yaml: not a model record (id, created"),
            "{err}"
        );
    }

    #[test]
    fn loads_a_folder_and_treats_a_missing_path_as_no_models() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "models").unwrap(), vec![]);
        fs::create_dir(dir.path().join("models")).unwrap();
        fs::write(
            dir.path().join("models/a.yaml"),
            "id: a\ncreated: 2026-01-01T00:00:00Z\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("models/b.json"),
            r#"{"id":"b","created":"2026-01-02T00:00:00Z"}"#,
        )
        .unwrap();
        fs::write(dir.path().join("models/README.md"), "not a record").unwrap();
        let ids: Vec<String> = load(dir.path(), "models/")
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        fs::write(dir.path().join("models/c.yaml"), "id: [").unwrap();
        assert!(
            load(dir.path(), "models")
                .unwrap_err()
                .to_string()
                .starts_with("models/c.yaml: not YAML")
        );
    }
}
