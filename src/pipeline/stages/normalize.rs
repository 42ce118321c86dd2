//! Stage 1, stateless: clean names, sort labels, add static labels, relabel.
//!
//! Order inside the stage: names sanitized and empty values removed → labels
//! sorted, repeated names refused → static labels → relabel rules (they see
//! the static labels, as Prometheus' write relabeling sees external labels)
//! → the result checked once more. A sample that is already clean is only
//! read, never rewritten or reallocated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::relabel::{self, RelabelRule, Scratch, Verdict};
use crate::model::{Label, LabelRef, LabelStr, Labels, METRIC_NAME_LABEL, Sample, name_before};
use crate::pipeline::{DropTally, StatelessStage};
use crate::registry::is_valid_label_name;
use crate::telemetry::{DropReason, Stage};

/// `[pipelines.<name>.normalize]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// How names with characters outside `[a-zA-Z_:][a-zA-Z0-9_:]*` (metric)
    /// or `[a-zA-Z_][a-zA-Z0-9_]*` (label) are treated.
    #[serde(default)]
    pub invalid_names: InvalidNames,
    /// Labels added to every sample, e.g. `{ cluster = "c1" }`.
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    /// When a sample already has a static label: `false` (default) keeps the
    /// sample's own value, `true` overwrites it with the static one.
    #[serde(default)]
    pub static_labels_override: bool,
    /// Relabel rules, in order, with Prometheus `relabel_config` semantics.
    #[serde(default)]
    pub relabel: Vec<RelabelRule>,
}

/// Strictness of name checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidNames {
    /// Invalid characters become `_`; a leading digit gets a `_` prefix.
    #[default]
    Sanitize,
    /// Samples with an invalid name are dropped (`invalid_name`).
    Reject,
}

impl NormalizeConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, value) in &self.static_labels {
            if name == METRIC_NAME_LABEL || !is_valid_label_name(name) {
                return Err(format!("normalize.static_labels: {name:?} is not a label name one may add"));
            }
            if value.is_empty() {
                return Err(format!("normalize.static_labels.{name} is empty (empty labels are removed)"));
            }
        }
        for (i, rule) in self.relabel.iter().enumerate() {
            rule.check().map_err(|m| format!("normalize.relabel[{i}]: {m}"))?;
        }
        Ok(())
    }
}

/// The normalize stage of one pipeline.
#[derive(Debug)]
pub struct Normalize {
    invalid_names: InvalidNames,
    /// Sorted by name.
    static_labels: Vec<Label>,
    static_override: bool,
    rules: Vec<RelabelRule>,
}

impl Normalize {
    pub fn new(config: &NormalizeConfig) -> Self {
        Normalize {
            invalid_names: config.invalid_names,
            static_labels: config.static_labels.iter().map(|(n, v)| Label::new(n.as_str(), v.as_str())).collect(),
            static_override: config.static_labels_override,
            rules: config.relabel.clone(),
        }
    }

    /// Normalizes one label set in place; `Err` says why the sample must go.
    pub fn normalize(&self, labels: &mut Vec<Label>, scratch: &mut Scratch) -> Result<(), DropReason> {
        let has_name = match already_normal(labels.iter().map(Label::as_ref)) {
            Some(has_name) => has_name,
            None => self.clean_and_sort(labels)?,
        };
        for s in &self.static_labels {
            match labels.binary_search_by(|l| l.name.cmp(&s.name)) {
                Ok(i) if self.static_override => labels[i].value.clone_from(&s.value),
                Ok(_) => {}
                Err(i) => labels.insert(i, s.clone()),
            }
        }
        if self.rules.is_empty() {
            // Cleaning left no empty `__name__`; static labels cannot add one.
            return if has_name { Ok(()) } else { Err(DropReason::InvalidName) };
        }
        if relabel::apply_all(&self.rules, labels, scratch) == Verdict::Drop {
            return Err(DropReason::Relabel);
        }
        // Rules write only label names that are valid, but labelmap may
        // expand to anything; sanitize whatever they produced.
        if !is_clean(labels) {
            clean(labels)?;
            labels.sort_unstable();
            if labels.windows(2).any(|w| w[0].name == w[1].name) {
                return Err(DropReason::InvalidName);
            }
        }
        match relabel::get(labels, METRIC_NAME_LABEL) {
            Some(name) if !name.is_empty() => Ok(()),
            _ => Err(DropReason::InvalidName),
        }
    }
}

impl Normalize {
    /// Cleans, sorts and checks for repeated names; says whether `__name__` is there.
    fn clean_and_sort(&self, labels: &mut Vec<Label>) -> Result<bool, DropReason> {
        if !is_clean(labels) {
            if self.invalid_names == InvalidNames::Reject && labels.iter().any(|l| !name_ok(l)) {
                return Err(DropReason::InvalidName);
            }
            clean(labels)?;
        }
        if !labels.is_sorted() {
            labels.sort_unstable();
        }
        let mut has_name = false;
        for (i, l) in labels.iter().enumerate() {
            if i > 0 && labels[i - 1].name == l.name {
                return Err(DropReason::InvalidName);
            }
            has_name |= l.name == METRIC_NAME_LABEL;
        }
        Ok(has_name)
    }
}

/// The usual case, in one pass over the labels: every name valid, no empty
/// value, names strictly increasing (so sorted and unique). Says whether
/// `__name__` is there, or `None` when the labels need [`Normalize::clean_and_sort`].
/// Decides on the first byte of each name where that suffices, instead of
/// comparing whole labels (name, then value) as `is_sorted` would.
fn already_normal<'a>(labels: impl IntoIterator<Item = LabelRef<'a>>) -> Option<bool> {
    let mut has_name = false;
    let mut previous: Option<&[u8]> = None;
    for l in labels {
        let name = l.name.as_bytes();
        if l.value.is_empty() || previous.is_some_and(|p| !name_before(p, name)) {
            return None;
        }
        let is_name = name == METRIC_NAME_LABEL.as_bytes();
        let valid = if is_name { is_metric_name(l.value) } else { is_valid_label_name(l.name) };
        if !valid {
            return None;
        }
        has_name |= is_name;
        previous = Some(name);
    }
    Some(has_name)
}

impl Normalize {
    /// Normalizes a sample's labels, rewriting them only when something changes.
    pub(super) fn normalize_labels(&self, labels: &mut Labels, scratch: &mut Scratch) -> Result<(), DropReason> {
        if self.static_labels.is_empty() && self.rules.is_empty() {
            match already_normal(labels.iter()) {
                Some(true) => return Ok(()),
                Some(false) => return Err(DropReason::InvalidName),
                None => {}
            }
        }
        let mut owned = labels.to_vec();
        self.normalize(&mut owned, scratch)?;
        *labels = Labels::from(owned);
        Ok(())
    }
}

impl StatelessStage for Normalize {
    fn process(&self, samples: &mut Vec<Sample>, drops: &mut DropTally) {
        let mut scratch = Scratch::default();
        let (mut invalid, mut relabeled) = (0, 0);
        samples.retain_mut(|s| match self.normalize_labels(&mut s.labels, &mut scratch) {
            Ok(()) => true,
            Err(DropReason::Relabel) => {
                relabeled += 1;
                false
            }
            Err(_) => {
                invalid += 1;
                false
            }
        });
        drops.add(Stage::Normalize, DropReason::InvalidName, invalid);
        drops.add(Stage::Normalize, DropReason::Relabel, relabeled);
    }
}

fn name_ok(l: &Label) -> bool {
    if l.name == METRIC_NAME_LABEL { is_metric_name(&l.value) } else { is_valid_label_name(&l.name) }
}

fn is_metric_name(s: &str) -> bool {
    crate::registry::is_valid_metric_name(s)
}

/// Every name valid and no empty value: nothing to rewrite.
fn is_clean(labels: &[Label]) -> bool {
    labels.iter().all(|l| !l.value.is_empty() && name_ok(l))
}

/// Removes labels with empty values and sanitizes names; a name with nothing
/// to keep (empty) makes the sample invalid.
fn clean(labels: &mut Vec<Label>) -> Result<(), DropReason> {
    labels.retain(|l| !l.value.is_empty() || l.name == METRIC_NAME_LABEL);
    for l in labels.iter_mut() {
        if l.name == METRIC_NAME_LABEL {
            if l.value.is_empty() {
                return Err(DropReason::InvalidName);
            }
            if !is_metric_name(&l.value) {
                l.value = sanitize(&l.value, true);
            }
        } else {
            if l.name.is_empty() {
                return Err(DropReason::InvalidName);
            }
            if !is_valid_label_name(&l.name) {
                l.name = sanitize(&l.name, false);
            }
        }
    }
    Ok(())
}

/// Replaces every character outside `[a-zA-Z0-9_]` (plus `:` for metric
/// names) with `_`, and prefixes a leading digit with `_`.
pub fn sanitize(name: &str, metric: bool) -> LabelStr {
    let mut out = LabelStr::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        let ok = c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
        out.push(if ok { c } else { '_' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use figment::providers::Format;
    use proptest::prelude::*;

    fn config(toml_text: &str) -> NormalizeConfig {
        let c: NormalizeConfig =
            figment::Figment::from(figment::providers::Toml::string(toml_text)).extract().expect("normalize config");
        c.check().expect("valid normalize config");
        c
    }

    fn run(stage: &Normalize, pairs: &[(&str, &str)]) -> Result<Vec<(String, String)>, DropReason> {
        let mut l: Labels = pairs.iter().copied().collect();
        stage.normalize_labels(&mut l, &mut Scratch::default())?;
        Ok(l.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn sanitizes_names_and_sorts() {
        let n = Normalize::new(&NormalizeConfig::default());
        assert_eq!(
            run(&n, &[("__name__", "http.requests-total"), ("z", "1"), ("9lives", "x"), ("a:b", "y"), ("ü", "z")]),
            Ok(pairs(&[("_", "z"), ("_9lives", "x"), ("__name__", "http_requests_total"), ("a_b", "y"), ("z", "1")]))
        );
        assert_eq!(run(&n, &[("__name__", "1m:rate")]), Ok(pairs(&[("__name__", "_1m:rate")])));
    }

    #[test]
    fn removes_empty_values_and_refuses_repeated_names() {
        let n = Normalize::new(&NormalizeConfig::default());
        assert_eq!(run(&n, &[("__name__", "m"), ("a", ""), ("b", "1")]), Ok(pairs(&[("__name__", "m"), ("b", "1")])));
        assert_eq!(run(&n, &[("__name__", "m"), ("a", "1"), ("a", "2")]), Err(DropReason::InvalidName));
        // Sanitizing may make two names equal: that is a repeated name too.
        assert_eq!(run(&n, &[("__name__", "m"), ("a.b", "1"), ("a_b", "2")]), Err(DropReason::InvalidName));
        assert_eq!(run(&n, &[("__name__", ""), ("a", "1")]), Err(DropReason::InvalidName));
        assert_eq!(run(&n, &[("a", "1")]), Err(DropReason::InvalidName));
        assert_eq!(run(&n, &[("__name__", "m"), ("", "1")]), Err(DropReason::InvalidName));
    }

    #[test]
    fn reject_mode_drops_instead_of_rewriting() {
        let n = Normalize::new(&config("invalid_names = \"reject\""));
        assert_eq!(run(&n, &[("__name__", "a.b")]), Err(DropReason::InvalidName));
        assert_eq!(run(&n, &[("__name__", "ok"), ("bad-label", "1")]), Err(DropReason::InvalidName));
        assert_eq!(run(&n, &[("__name__", "ok"), ("empty", "")]), Ok(pairs(&[("__name__", "ok")])));
    }

    #[test]
    fn static_labels_and_their_precedence() {
        let keep_own = Normalize::new(&config("static_labels = { cluster = \"c1\", region = \"eu\" }"));
        assert_eq!(
            run(&keep_own, &[("__name__", "m"), ("cluster", "mine")]),
            Ok(pairs(&[("__name__", "m"), ("cluster", "mine"), ("region", "eu")]))
        );
        let overwrite = Normalize::new(&config("static_labels = { cluster = \"c1\" }\nstatic_labels_override = true"));
        assert_eq!(
            run(&overwrite, &[("__name__", "m"), ("cluster", "mine")]),
            Ok(pairs(&[("__name__", "m"), ("cluster", "c1")]))
        );
    }

    #[test]
    fn relabel_sees_static_labels_and_can_drop() {
        let n = Normalize::new(&config(
            r#"
static_labels = { cluster = "c1" }
[[relabel]]
action = "labeldrop"
regex = "tmp_.*"
[[relabel]]
source_labels = ["cluster", "host"]
separator = "/"
target_label = "origin"
[[relabel]]
action = "drop"
source_labels = ["__name__"]
regex = "debug_.*"
[[relabel]]
action = "labelmap"
regex = "meta_(.*)"
"#,
        ));
        assert_eq!(
            run(&n, &[("__name__", "m"), ("host", "h"), ("tmp_x", "1"), ("meta_9k", "v")]),
            Ok(pairs(&[
                // labelmap produced "9k", which the stage then sanitized.
                ("_9k", "v"),
                ("__name__", "m"),
                ("cluster", "c1"),
                ("host", "h"),
                ("meta_9k", "v"),
                ("origin", "c1/h"),
            ]))
        );
        assert_eq!(run(&n, &[("__name__", "debug_x")]), Err(DropReason::Relabel));
    }

    #[test]
    fn relabel_removing_the_name_makes_the_sample_invalid() {
        let n = Normalize::new(&config("[[relabel]]\naction = \"labeldrop\"\nregex = \"__name__\""));
        assert_eq!(run(&n, &[("__name__", "m"), ("a", "1")]), Err(DropReason::InvalidName));
    }

    #[test]
    fn stage_counts_drops_by_reason() {
        let n = Normalize::new(&config("[[relabel]]\naction = \"drop\"\nsource_labels = [\"a\"]\nregex = \"x\""));
        let mk = |pairs: &[(&str, &str)]| Sample::new(pairs.iter().copied().collect(), 1.0, 1);
        let mut samples = vec![
            mk(&[("__name__", "m"), ("a", "x")]),
            mk(&[("__name__", "m"), ("a", "y")]),
            mk(&[("a", "y")]),
            mk(&[("__name__", "m"), ("b", "1"), ("b", "2")]),
        ];
        let mut drops = DropTally::default();
        n.process(&mut samples, &mut drops);
        assert_eq!(samples.len(), 1);
        let mut counted: Vec<_> = drops.drain().collect();
        counted.sort_by_key(|c| c.1);
        assert_eq!(
            counted,
            vec![(Stage::Normalize, DropReason::InvalidName, 2), (Stage::Normalize, DropReason::Relabel, 1)]
        );
    }

    #[test]
    fn clean_samples_are_not_reallocated() {
        let n = Normalize::new(&NormalizeConfig::default());
        let long = "a_value_longer_than_twenty_four_bytes_so_it_lives_on_the_heap";
        let mut l: Labels = [("__name__", "m"), ("host", long)].into_iter().collect();
        let packed = l.packed_parts()[0].as_ptr();
        n.normalize_labels(&mut l, &mut Scratch::default()).unwrap();
        assert_eq!(l.packed_parts()[0].as_ptr(), packed);
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad: NormalizeConfig = figment::Figment::from(figment::providers::Toml::string(
            "[[relabel]]\naction = \"hashmod\"\ntarget_label = \"x\"",
        ))
        .extract()
        .unwrap();
        assert!(bad.check().unwrap_err().starts_with("normalize.relabel[0]: "));
        let bad: NormalizeConfig =
            figment::Figment::from(figment::providers::Toml::string("static_labels = { \"a-b\" = \"1\" }"))
                .extract()
                .unwrap();
        assert!(bad.check().unwrap_err().contains("a-b"));
    }

    fn metric_name_ok(s: &str) -> bool {
        crate::registry::is_valid_metric_name(s)
    }

    proptest! {
        #[test]
        fn output_names_are_valid_and_normalizing_twice_changes_nothing(
            name in "\\PC{1,12}",
            labels in proptest::collection::vec(("\\PC{1,8}", "\\PC{0,6}"), 0..6),
        ) {
            let n = Normalize::new(&NormalizeConfig::default());
            let mut l: Labels = std::iter::once(("__name__".to_string(), name)).chain(labels).collect();
            let mut scratch = Scratch::default();
            if n.normalize_labels(&mut l, &mut scratch).is_ok() {
                for label in &l {
                    if label.name == METRIC_NAME_LABEL {
                        prop_assert!(metric_name_ok(label.value), "metric name {:?}", label.value);
                    } else {
                        prop_assert!(is_valid_label_name(label.name), "label name {:?}", label.name);
                        prop_assert!(!label.value.is_empty());
                    }
                }
                let names: Vec<&str> = l.iter().map(|l| l.name).collect();
                prop_assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted/unique: {:?}", l);
                let once = l.clone();
                prop_assert!(n.normalize_labels(&mut l, &mut scratch).is_ok());
                prop_assert_eq!(once, l);
            }
        }

        #[test]
        fn sanitize_is_idempotent_and_valid(s in "\\PC{1,16}") {
            let m = sanitize(&s, true);
            prop_assert!(metric_name_ok(&m));
            prop_assert_eq!(sanitize(&m, true), m.clone());
            let l = sanitize(&s, false);
            prop_assert!(is_valid_label_name(&l));
            prop_assert_eq!(sanitize(&l, false), l.clone());
        }
    }
}
