//! Where a kustomize `images:` entry's fields live in a kustomization.

use crate::path::{Segment, YamlPath};
use crate::tree::{Tree, lookup};

/// Which field of a kustomize `images:` entry to set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageField {
    NewTag,
    Digest,
    NewName,
}

impl ImageField {
    pub fn key(self) -> &'static str {
        match self {
            ImageField::NewTag => "newTag",
            ImageField::Digest => "digest",
            ImageField::NewName => "newName",
        }
    }
}

/// What looking for an image entry in one document found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageLookup {
    /// The path of the field.
    Found(YamlPath),
    /// The entry exists but lacks the field (the path of the entry); nothing adds keys, so
    /// the caller says which.
    FieldMissing(YamlPath),
    NotHere,
}

/// Finds `images[name=NAME].FIELD` in a kustomization document.
pub fn image_path<T: Tree>(doc: &T, name: &str, field: ImageField) -> ImageLookup {
    let is_kustomization = matches!(
        doc.get_text("kind").as_deref(),
        None | Some("Kustomization")
    );
    let Some(images) = doc.get("images").and_then(Tree::items) else {
        return ImageLookup::NotHere;
    };
    if !is_kustomization {
        return ImageLookup::NotHere;
    }
    let Some(index) = images
        .iter()
        .position(|i| i.get_text("name").as_deref() == Some(name))
    else {
        return ImageLookup::NotHere;
    };
    let entry = YamlPath::new(vec![Segment::Key("images".into()), Segment::Index(index)]);
    let path = entry.join([Segment::Key(field.key().into())]);
    if lookup(doc, &path).is_ok() {
        ImageLookup::Found(path)
    } else {
        ImageLookup::FieldMissing(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    const KUSTOMIZATION: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n- name: server\n  newTag: v1\n- name: model\n  newName: reg/model\n  digest: sha256:aa\n";

    fn find(text: &str, name: &str, field: ImageField) -> ImageLookup {
        let doc: Value = serde_yaml_ng::from_str(text).unwrap();
        image_path(&doc, name, field)
    }

    fn path(text: &str) -> YamlPath {
        YamlPath::parse(text).unwrap()
    }

    #[test]
    fn finds_the_named_entry_field() {
        let cases = [
            (
                "model",
                ImageField::Digest,
                ImageLookup::Found(path("images[1].digest")),
            ),
            (
                "model",
                ImageField::NewName,
                ImageLookup::Found(path("images[1].newName")),
            ),
            (
                "server",
                ImageField::NewTag,
                ImageLookup::Found(path("images[0].newTag")),
            ),
            // A missing field or entry is reported, never invented.
            (
                "model",
                ImageField::NewTag,
                ImageLookup::FieldMissing(path("images[1]")),
            ),
            ("nope", ImageField::NewTag, ImageLookup::NotHere),
        ];
        for (name, field, want) in cases {
            assert_eq!(find(KUSTOMIZATION, name, field), want, "{name} {field:?}");
        }
    }

    #[test]
    fn only_kustomizations_have_image_entries() {
        let bare = "images:\n- name: model\n  newTag: v1\n";
        assert_eq!(
            find(bare, "model", ImageField::NewTag),
            ImageLookup::Found(path("images[0].newTag")),
            "a kustomization may leave out kind"
        );
        let other = "kind: ConfigMap\nimages:\n- name: model\n  newTag: v1\n";
        assert_eq!(
            find(other, "model", ImageField::NewTag),
            ImageLookup::NotHere
        );
    }
}
