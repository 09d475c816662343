//! Where a kustomize `images:` entry's fields live in a kustomization.

use crate::change::ImageField;
use crate::path::{Segment, YamlPath};
use crate::yaml_doc::{Node, lookup};

/// What looking for an image entry in one document found.
pub enum ImageLookup {
    /// The path of the field to set.
    Found(YamlPath),
    /// The entry exists but lacks the field; bump-pr never adds keys, so say which.
    FieldMissing(YamlPath),
    NotHere,
}

/// Finds `images[name=NAME].FIELD` in a kustomization document.
pub fn image_path(doc: &Node, name: &str, field: ImageField) -> ImageLookup {
    let is_kustomization = matches!(doc.get_str("kind"), None | Some("Kustomization"));
    let Some(Node::Sequence(images)) = doc.get("images") else {
        return ImageLookup::NotHere;
    };
    if !is_kustomization {
        return ImageLookup::NotHere;
    }
    let Some(index) = images.iter().position(|i| i.get_str("name") == Some(name)) else {
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
    use crate::yaml_doc::parse;

    const KUSTOMIZATION: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n- name: server\n  newTag: v1\n- name: model\n  newName: reg/model\n  digest: sha256:aa\n";

    #[test]
    fn finds_the_named_entry_field() {
        let doc = &parse(KUSTOMIZATION).unwrap().documents[0];
        match image_path(doc, "model", ImageField::Digest) {
            ImageLookup::Found(p) => assert_eq!(p.to_string(), "images[1].digest"),
            _ => panic!("digest of model not found"),
        }
        match image_path(doc, "server", ImageField::NewTag) {
            ImageLookup::Found(p) => assert_eq!(p.to_string(), "images[0].newTag"),
            _ => panic!("newTag of server not found"),
        }
    }

    #[test]
    fn a_missing_field_or_entry_is_reported_not_invented() {
        let doc = &parse(KUSTOMIZATION).unwrap().documents[0];
        assert!(matches!(
            image_path(doc, "model", ImageField::NewTag),
            ImageLookup::FieldMissing(p) if p.to_string() == "images[1]"
        ));
        assert!(matches!(
            image_path(doc, "nope", ImageField::NewTag),
            ImageLookup::NotHere
        ));
    }
}
