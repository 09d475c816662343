//! The YAML editor on a corpus of real-looking GitOps files.
//!
//! Each folder under `tests/corpus` holds `input.yaml`, `sets.txt` (one `--set` per line),
//! optionally `document.txt` (a `--document` selector) and `follows.txt` (paths of aliases
//! that follow a changed anchored value), and `expected.yaml`: the input with only
//! the target values changed, byte for byte. Folders under `tests/corpus-errors` hold
//! `error.txt` instead: lines the error message must contain.

use std::fs;
use std::path::{Path, PathBuf};

use modelsync_bump_pr::change::{Change, DocSelector};
use modelsync_bump_pr::path::{Segment, YamlPath};
use modelsync_bump_pr::yaml_edit::{Edit, EditError, edit};

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "corpus {dir} looks empty: {cases:?}");
    cases
}

fn run_case(case: &Path) -> (String, Result<Edit, EditError>) {
    let input = fs::read_to_string(case.join("input.yaml")).unwrap();
    let changes: Vec<Change> = fs::read_to_string(case.join("sets.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.parse().unwrap())
        .collect();
    let selector: Option<DocSelector> = fs::read_to_string(case.join("document.txt"))
        .ok()
        .map(|s| s.trim().parse().unwrap());
    let result = edit("input.yaml", &input, &changes, selector.as_ref());
    (input, result)
}

#[test]
fn only_the_target_scalars_change() {
    for case in cases("corpus") {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (input, result) = run_case(&case);
        let edited = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = fs::read_to_string(case.join("expected.yaml")).unwrap();
        assert_eq!(
            edited.text, expected,
            "{name}: output differs from expected.yaml"
        );
        // Independent of expected.yaml: every line that is not a target's line is untouched,
        // and line ends are kept.
        let changed_lines = input
            .split_inclusive('\n')
            .zip(edited.text.split_inclusive('\n'))
            .filter(|(a, b)| a != b)
            .count();
        let changed_values = edited.applied.iter().filter(|a| a.changed()).count();
        assert!(
            changed_lines <= changed_values,
            "{name}: {changed_lines} lines changed for {changed_values} values"
        );
        assert_eq!(
            input.matches("\r\n").count(),
            edited.text.matches("\r\n").count(),
            "{name}: line ends changed"
        );
        assert_eq!(
            edited.changed(),
            input != edited.text,
            "{name}: changed() disagrees with the text"
        );
        // The result loads with an independent YAML library to the values asked for.
        let sets = fs::read_to_string(case.join("sets.txt")).unwrap();
        for applied in &edited.applied {
            assert!(
                sets.contains(&applied.new),
                "{name}: applied value {:?} was not asked for",
                applied.new
            );
        }
        let docs = |text: &str| -> Vec<serde_yaml_ng::Value> {
            use serde::Deserialize;
            serde_yaml_ng::Deserializer::from_str(text)
                .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
                .collect()
        };
        let mut want = docs(&input);
        for applied in &edited.applied {
            set_in(&mut want[applied.document], &applied.path, &applied.new);
        }
        // Aliases of a changed anchored value follow it; follows.txt lists where they are.
        if let Ok(follows) = fs::read_to_string(case.join("follows.txt")) {
            let applied = &edited.applied[0];
            for path in follows.lines() {
                let path = YamlPath::parse(path).unwrap();
                set_in(&mut want[applied.document], &path, &applied.new);
            }
        }
        assert_eq!(
            docs(&edited.text),
            want,
            "{name}: loads differently than asked"
        );
    }
}

/// Sets `path` in a value loaded by serde_yaml_ng, an independent reading of the same file.
fn set_in(value: &mut serde_yaml_ng::Value, path: &YamlPath, new: &str) {
    use serde_yaml_ng::Value;
    let mut node = value;
    for segment in &path.segments {
        node = match segment {
            Segment::Key(k) => node.get_mut(k.as_str()).expect("key"),
            Segment::Index(i) => node.get_mut(*i).expect("index"),
            Segment::Select { key, value } => node
                .as_sequence_mut()
                .expect("list")
                .iter_mut()
                .find(|item| item.get(key.as_str()).and_then(Value::as_str) == Some(value))
                .expect("selected item"),
        };
    }
    *node = Value::String(new.to_string());
}

#[test]
fn a_second_edit_with_the_same_values_changes_nothing() {
    for case in cases("corpus") {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (_, result) = run_case(&case);
        let first = result.unwrap();
        let changes: Vec<Change> = fs::read_to_string(case.join("sets.txt"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let selector: Option<DocSelector> = fs::read_to_string(case.join("document.txt"))
            .ok()
            .map(|s| s.trim().parse().unwrap());
        let second = edit("input.yaml", &first.text, &changes, selector.as_ref()).unwrap();
        assert!(!second.changed(), "{name}: second edit reports a change");
        assert_eq!(second.text, first.text, "{name}");
    }
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    for case in cases("corpus-errors") {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let (_, result) = run_case(&case);
        let message = match result {
            Ok(edit) => panic!("{name}: expected an error, got {:?}", edit.text),
            Err(e) => e.to_string(),
        };
        assert!(message.contains("input.yaml"), "{name}: {message}");
        for needle in fs::read_to_string(case.join("error.txt")).unwrap().lines() {
            assert!(
                message.contains(needle),
                "{name}: message lacks {needle:?}: {message}"
            );
        }
    }
}
