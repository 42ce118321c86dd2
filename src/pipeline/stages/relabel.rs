//! Relabel rules with Prometheus `relabel_config` semantics.
//!
//! Rules run in order over a sample's label set (sorted by name, names unique);
//! a rule either changes labels or tells the caller to drop the sample.
//! Regexes are fully anchored and compiled once, when the config is read.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer};

use super::md5;
use crate::model::{Label, LabelStr};
use crate::registry::is_valid_label_name;

/// A regex matched against the whole input (`^(?:...)$`), as Prometheus does.
#[derive(Clone)]
pub struct AnchoredRegex {
    source: String,
    regex: Regex,
}

impl AnchoredRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(AnchoredRegex { source: source.to_string(), regex: crate::model::regex::anchored(source)? })
    }

    /// The regex as written in the config (without the anchors).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    fn is_default(&self) -> bool {
        self.source == defaults::REGEX
    }
}

impl Default for AnchoredRegex {
    fn default() -> Self {
        AnchoredRegex::new(defaults::REGEX).expect("the default relabel regex compiles")
    }
}

impl fmt::Debug for AnchoredRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl<'de> Deserialize<'de> for AnchoredRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        AnchoredRegex::new(&source)
            .map_err(|e| serde::de::Error::custom(format!("invalid relabel regex {source:?}: {e}")))
    }
}

/// What a rule does (Prometheus names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// `target_label` = `replacement` (with `$1`… groups) when `regex` matches the source value.
    #[default]
    Replace,
    /// Drop the sample unless `regex` matches the source value.
    Keep,
    /// Drop the sample when `regex` matches the source value.
    Drop,
    /// Drop the sample unless the source value equals `target_label`'s value.
    KeepEqual,
    /// Drop the sample when the source value equals `target_label`'s value.
    DropEqual,
    /// `target_label` = MD5 of the source value modulo `modulus`.
    HashMod,
    /// Copy every label whose name matches `regex` to the name `replacement` expands to.
    LabelMap,
    /// Remove every label whose name matches `regex`.
    LabelDrop,
    /// Remove every label whose name does not match `regex`.
    LabelKeep,
    /// `target_label` = the source value in lower case.
    Lowercase,
    /// `target_label` = the source value in upper case.
    Uppercase,
}

/// One `relabel` entry: `{ action, source_labels, separator, regex, target_label, replacement, modulus }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelRule {
    /// What to do; default `replace`.
    #[serde(default)]
    pub action: RelabelAction,
    /// Labels whose values, joined by `separator`, form the source value (missing ones count as empty).
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the source labels' values; default `;`.
    #[serde(default = "defaults::separator")]
    pub separator: String,
    /// Matched against the whole source value (or label name for `labelmap`/`labeldrop`/`labelkeep`); default `(.*)`.
    #[serde(default)]
    pub regex: AnchoredRegex,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, or compared by `keepequal`/`dropequal`.
    #[serde(default)]
    pub target_label: Option<String>,
    /// Value written by `replace` (or name by `labelmap`); `$1`, `${name}` refer to regex groups; default `$1`.
    #[serde(default = "defaults::replacement")]
    pub replacement: String,
    /// Divisor of `hashmod`.
    #[serde(default)]
    pub modulus: u64,
}

pub mod defaults {
    pub const REGEX: &str = "(.*)";
    pub const SEPARATOR: &str = ";";
    pub const REPLACEMENT: &str = "$1";

    pub fn separator() -> String {
        SEPARATOR.to_string()
    }
    pub fn replacement() -> String {
        REPLACEMENT.to_string()
    }
}

/// Whether a rule kept the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Drop,
}

/// A name that is a label name once `$1` / `${name}` references are expanded.
fn is_label_name_template(s: &str) -> bool {
    let mut rest = s;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('$') {
            let group_len = if let Some(inner) = after.strip_prefix('{') {
                let Some(close) = inner.find('}') else { return false };
                if close == 0 || !inner[..close].bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    return false;
                }
                close + 2
            } else {
                let n = after.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
                if n == 0 {
                    return false;
                }
                n
            };
            rest = &after[group_len..];
        } else {
            let c = rest.as_bytes()[0];
            let ok = c.is_ascii_alphabetic() || c == b'_' || (!first && c.is_ascii_digit());
            if !ok {
                return false;
            }
            rest = &rest[1..];
        }
        first = false;
    }
    !s.is_empty()
}

impl RelabelRule {
    /// Refuses rules Prometheus would refuse, naming the field at fault.
    pub fn check(&self) -> Result<(), String> {
        use RelabelAction::*;
        let action = format!("{:?}", self.action).to_lowercase();
        let target = self.target_label.as_deref().unwrap_or("");
        let needs_target = matches!(self.action, Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual);
        if needs_target && target.is_empty() {
            return Err(format!("action {action} needs target_label"));
        }
        match self.action {
            Replace if target.contains('$') => {
                if !is_label_name_template(target) {
                    return Err(format!("target_label {target:?} is not a label name template"));
                }
            }
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual => {
                if !is_valid_label_name(target) {
                    return Err(format!("target_label {target:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
                }
            }
            LabelMap => {
                if !is_label_name_template(&self.replacement) {
                    return Err(format!("replacement {:?} is not a label name template", self.replacement));
                }
            }
            Keep | Drop | LabelDrop | LabelKeep => {}
        }
        if self.action == HashMod && self.modulus == 0 {
            return Err("action hashmod needs a modulus above 0".into());
        }
        if matches!(self.action, Lowercase | Uppercase) && self.replacement != defaults::REPLACEMENT {
            return Err(format!("action {action} takes no replacement"));
        }
        if matches!(self.action, KeepEqual | DropEqual)
            && (!self.regex.is_default()
                || self.modulus != 0
                || self.separator != defaults::SEPARATOR
                || self.replacement != defaults::REPLACEMENT)
        {
            return Err(format!("action {action} takes only source_labels and target_label"));
        }
        if matches!(self.action, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || self.target_label.is_some()
                || self.modulus != 0
                || self.separator != defaults::SEPARATOR
                || self.replacement != defaults::REPLACEMENT)
        {
            return Err(format!("action {action} takes only regex"));
        }
        if self.modulus != 0 && self.action != HashMod {
            return Err(format!("modulus is only for action hashmod, not {action}"));
        }
        for (i, l) in self.source_labels.iter().enumerate() {
            if !is_valid_label_name(l) {
                return Err(format!("source_labels[{i}] {l:?} is not a label name"));
            }
        }
        Ok(())
    }

    fn target(&self) -> &str {
        self.target_label.as_deref().unwrap_or("")
    }

    /// The source labels' values joined by the separator; borrowed when one label is enough.
    fn source_value<'a>(&self, labels: &'a [Label], joined: &'a mut String) -> &'a str {
        match self.source_labels.as_slice() {
            [] => "",
            [one] => get(labels, one).unwrap_or(""),
            many => {
                joined.clear();
                for (i, name) in many.iter().enumerate() {
                    if i > 0 {
                        joined.push_str(&self.separator);
                    }
                    joined.push_str(get(labels, name).unwrap_or(""));
                }
                joined
            }
        }
    }

    /// Applies this rule, the `index`th of its list, to `labels` (sorted by
    /// name, names unique; kept so).
    pub fn apply(&self, index: usize, labels: &mut Vec<Label>, scratch: &mut Scratch) -> Verdict {
        use RelabelAction::*;
        let joined = &mut scratch.joined;
        match self.action {
            Keep | Drop => {
                let matched = self.regex.is_match(self.source_value(labels, joined));
                if matched == (self.action == Keep) { Verdict::Keep } else { Verdict::Drop }
            }
            KeepEqual | DropEqual => {
                let target = get(labels, self.target()).unwrap_or("");
                let equal = self.source_value(labels, joined) == target;
                if equal == (self.action == KeepEqual) { Verdict::Keep } else { Verdict::Drop }
            }
            Replace => {
                let change = {
                    let value = self.source_value(labels, joined);
                    self.replace(value)
                };
                match change {
                    Replacement::Unchanged => {}
                    Replacement::Delete => delete(labels, self.target()),
                    Replacement::Set(name, value) => set(labels, &name, value),
                }
                Verdict::Keep
            }
            Lowercase | Uppercase => {
                let value: LabelStr = {
                    let v = self.source_value(labels, joined);
                    if self.action == Lowercase { v.to_lowercase().into() } else { v.to_uppercase().into() }
                };
                set(labels, self.target(), value);
                Verdict::Keep
            }
            HashMod => {
                let digest = md5::digest(self.source_value(labels, joined).as_bytes());
                let mut low = [0u8; 8];
                low.copy_from_slice(&digest[8..]);
                let bucket = u64::from_be_bytes(low) % self.modulus;
                set(labels, self.target(), LabelStr::from(bucket.to_string()));
                Verdict::Keep
            }
            LabelMap => {
                let mut copies: Vec<(String, LabelStr)> = Vec::new();
                for l in labels.iter() {
                    if !scratch.name_matches(index, &self.regex, &l.name) {
                        continue;
                    }
                    if let Some(caps) = self.regex.regex.captures(&l.name) {
                        let mut name = String::new();
                        caps.expand(&self.replacement, &mut name);
                        copies.push((name, l.value.clone()));
                    }
                }
                for (name, value) in copies {
                    // An expansion that is no label name cannot become one; skip it.
                    if !name.is_empty() {
                        set(labels, &name, value);
                    }
                }
                Verdict::Keep
            }
            LabelDrop => {
                labels.retain(|l| !scratch.name_matches(index, &self.regex, &l.name));
                Verdict::Keep
            }
            LabelKeep => {
                labels.retain(|l| scratch.name_matches(index, &self.regex, &l.name));
                Verdict::Keep
            }
        }
    }

    fn replace(&self, value: &str) -> Replacement {
        let target = self.target();
        let templated = target.contains('$') || self.replacement.contains('$');
        if !templated {
            // No group is referenced: a match test is enough, no captures needed.
            if !self.regex.is_match(value) {
                return Replacement::Unchanged;
            }
            if self.replacement.is_empty() {
                return Replacement::Delete;
            }
            return Replacement::Set(target.to_string(), LabelStr::from(self.replacement.as_str()));
        }
        let Some(caps) = self.regex.regex.captures(value) else {
            return Replacement::Unchanged;
        };
        let mut name = String::new();
        caps.expand(target, &mut name);
        if !is_valid_label_name(&name) {
            return Replacement::Unchanged;
        }
        let mut out = String::new();
        caps.expand(&self.replacement, &mut out);
        if out.is_empty() {
            // Prometheus deletes the configured target_label here, not the expanded one.
            return Replacement::Delete;
        }
        Replacement::Set(name, LabelStr::from(out))
    }
}

/// Working memory reused across the samples of a batch.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The joined source values of the rule being applied.
    joined: String,
    /// Per rule, label names already tested against its regex: names repeat
    /// from sample to sample, and a memo lookup is far cheaper than a regex run.
    name_matches: Vec<Vec<(LabelStr, bool)>>,
}

/// Distinct names remembered per rule; more are tested every time.
const NAME_MEMO: usize = 64;

impl Scratch {
    fn name_matches(&mut self, rule: usize, regex: &AnchoredRegex, name: &str) -> bool {
        if self.name_matches.len() <= rule {
            self.name_matches.resize_with(rule + 1, Vec::new);
        }
        let memo = &mut self.name_matches[rule];
        if let Some(&(_, matched)) = memo.iter().find(|(n, _)| n == name) {
            return matched;
        }
        let matched = regex.is_match(name);
        if memo.len() < NAME_MEMO {
            memo.push((LabelStr::from(name), matched));
        }
        matched
    }
}

enum Replacement {
    Unchanged,
    Delete,
    Set(String, LabelStr),
}

/// Applies `rules` in order; stops at the first that drops the sample.
pub fn apply_all(rules: &[RelabelRule], labels: &mut Vec<Label>, scratch: &mut Scratch) -> Verdict {
    for (index, rule) in rules.iter().enumerate() {
        if rule.apply(index, labels, scratch) == Verdict::Drop {
            return Verdict::Drop;
        }
    }
    Verdict::Keep
}

fn position(labels: &[Label], name: &str) -> Result<usize, usize> {
    labels.binary_search_by(|l| l.name.as_str().cmp(name))
}

/// The value of `name` in a label set sorted by name.
pub fn get<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    position(labels, name).ok().map(|i| labels[i].value.as_str())
}

/// Sets `name` (an empty value deletes it, as in Prometheus), keeping the order.
pub fn set(labels: &mut Vec<Label>, name: &str, value: LabelStr) {
    if value.is_empty() {
        delete(labels, name);
        return;
    }
    match position(labels, name) {
        Ok(i) => labels[i].value = value,
        Err(i) => labels.insert(i, Label { name: name.into(), value }),
    }
}

pub fn delete(labels: &mut Vec<Label>, name: &str) {
    if let Ok(i) = position(labels, name) {
        labels.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use figment::providers::Format;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        let mut l: Labels = pairs.iter().copied().collect();
        l.sort();
        l.to_vec()
    }

    fn rule(toml_text: &str) -> RelabelRule {
        let r: RelabelRule = figment::Figment::from(figment::providers::Toml::string(toml_text))
            .extract()
            .unwrap_or_else(|e| panic!("rule {toml_text:?}: {e}"));
        r.check().unwrap_or_else(|e| panic!("rule {toml_text:?}: {e}"));
        r
    }

    fn run(rules: &[&str], input: &[(&str, &str)]) -> Option<Vec<Label>> {
        let rules: Vec<RelabelRule> = rules.iter().map(|r| rule(r)).collect();
        let mut l = labels(input);
        let mut scratch = Scratch::default();
        (apply_all(&rules, &mut l, &mut scratch) == Verdict::Keep).then_some(l)
    }

    fn check_err(toml_text: &str) -> String {
        let r: RelabelRule = match figment::Figment::from(figment::providers::Toml::string(toml_text)).extract() {
            Ok(r) => r,
            Err(e) => return e.to_string(),
        };
        r.check().err().unwrap_or_else(|| panic!("rule accepted: {toml_text}"))
    }

    // The cases below follow the Prometheus relabel_config documentation and
    // the behaviour of its reference implementation, action by action.

    #[test]
    fn replace_with_groups() {
        let out = run(
            &[r#"source_labels = ["a"]
                regex = "f(.*)"
                target_label = "d"
                replacement = "ch${1}-ch${1}""#],
            &[("a", "foo"), ("b", "bar")],
        );
        assert_eq!(out, Some(labels(&[("a", "foo"), ("b", "bar"), ("d", "choo-choo")])));
    }

    #[test]
    fn replace_joins_sources_with_separator_and_missing_is_empty() {
        let out = run(
            &[r#"source_labels = ["a", "missing", "b"]
                separator = "|"
                regex = "(.*)\\|\\|(.*)"
                target_label = "joined"
                replacement = "$1+$2""#],
            &[("a", "x"), ("b", "y")],
        );
        assert_eq!(out.unwrap(), labels(&[("a", "x"), ("b", "y"), ("joined", "x+y")]));
    }

    #[test]
    fn replace_is_anchored() {
        // "o" alone matches inside "foo", but anchoring requires the whole value.
        let r = [r#"source_labels = ["a"]
                   regex = "o"
                   target_label = "hit"
                   replacement = "yes""#];
        assert_eq!(run(&r, &[("a", "foo")]).unwrap(), labels(&[("a", "foo")]));
        assert_eq!(run(&r, &[("a", "o")]).unwrap(), labels(&[("a", "o"), ("hit", "yes")]));
    }

    #[test]
    fn replace_without_match_changes_nothing_and_empty_result_deletes() {
        let no_match = [r#"source_labels = ["a"]
                          regex = "x(.*)"
                          target_label = "a""#];
        assert_eq!(run(&no_match, &[("a", "foo")]).unwrap(), labels(&[("a", "foo")]));
        let empty = [r#"source_labels = ["a"]
                       regex = "foo(.*)"
                       target_label = "b""#];
        assert_eq!(run(&empty, &[("a", "foo"), ("b", "old")]).unwrap(), labels(&[("a", "foo")]));
    }

    #[test]
    fn replace_with_templated_target() {
        let r = [r#"source_labels = ["a"]
                   regex = "some-([^-]+)-(.*)"
                   target_label = "${1}"
                   replacement = "$2""#];
        assert_eq!(
            run(&r, &[("a", "some-name-value")]).unwrap(),
            labels(&[("a", "some-name-value"), ("name", "value")])
        );
        // An expansion that is not a label name changes nothing.
        assert_eq!(run(&r, &[("a", "some-9x-value")]).unwrap(), labels(&[("a", "some-9x-value")]));
    }

    #[test]
    fn replace_defaults_copy_a_label() {
        let r = [r#"source_labels = ["instance"]
                   target_label = "host""#];
        assert_eq!(run(&r, &[("instance", "a:9100")]).unwrap(), labels(&[("host", "a:9100"), ("instance", "a:9100")]));
    }

    #[test]
    fn replace_static_value_without_sources() {
        let r = [r#"target_label = "env"
                   replacement = "prod""#];
        assert_eq!(run(&r, &[("a", "1")]).unwrap(), labels(&[("a", "1"), ("env", "prod")]));
    }

    #[test]
    fn keep_and_drop() {
        let keep = [r#"action = "keep"
                      source_labels = ["__name__"]
                      regex = "node_.*""#];
        assert!(run(&keep, &[("__name__", "node_load1")]).is_some());
        assert!(run(&keep, &[("__name__", "go_gc")]).is_none());
        // Anchored: a substring match is not a match.
        assert!(run(&keep, &[("__name__", "x_node_load1")]).is_none());

        let drop = [r#"action = "drop"
                      source_labels = ["env", "team"]
                      regex = "dev;.*""#];
        assert!(run(&drop, &[("env", "dev"), ("team", "a")]).is_none());
        assert!(run(&drop, &[("env", "prod"), ("team", "a")]).is_some());
        // A missing label is the empty string: "(.*)" style regexes still see it.
        let drop_missing = [r#"action = "drop"
                              source_labels = ["env"]
                              regex = """#];
        assert!(run(&drop_missing, &[("a", "1")]).is_none());
        assert!(run(&drop_missing, &[("env", "x")]).is_some());
    }

    #[test]
    fn keepequal_and_dropequal() {
        let keep = [r#"action = "keepequal"
                      source_labels = ["a"]
                      target_label = "b""#];
        assert!(run(&keep, &[("a", "1"), ("b", "1")]).is_some());
        assert!(run(&keep, &[("a", "1"), ("b", "2")]).is_none());
        let drop = [r#"action = "dropequal"
                      source_labels = ["a"]
                      target_label = "b""#];
        assert!(run(&drop, &[("a", "1"), ("b", "1")]).is_none());
        assert!(run(&drop, &[("a", "1"), ("b", "2")]).is_some());
    }

    #[test]
    fn labeldrop_and_labelkeep_match_whole_names() {
        let drop = [r#"action = "labeldrop"
                      regex = "tmp_.*""#];
        assert_eq!(
            run(&drop, &[("__name__", "m"), ("tmp_a", "1"), ("x_tmp_b", "2")]).unwrap(),
            labels(&[("__name__", "m"), ("x_tmp_b", "2")])
        );
        let keep = [r#"action = "labelkeep"
                      regex = "__name__|job""#];
        assert_eq!(
            run(&keep, &[("__name__", "m"), ("job", "j"), ("jobs", "x"), ("a", "1")]).unwrap(),
            labels(&[("__name__", "m"), ("job", "j")])
        );
    }

    #[test]
    fn labelmap_copies_matching_names() {
        let r = [r#"action = "labelmap"
                   regex = "__meta_kubernetes_pod_label_(.+)""#];
        assert_eq!(
            run(&r, &[("__meta_kubernetes_pod_label_app", "web"), ("x", "1")]).unwrap(),
            labels(&[("__meta_kubernetes_pod_label_app", "web"), ("app", "web"), ("x", "1")])
        );
        let prefixed = [r#"action = "labelmap"
                          regex = "(a|b)"
                          replacement = "copy_${1}""#];
        assert_eq!(
            run(&prefixed, &[("a", "1"), ("b", "2"), ("c", "3")]).unwrap(),
            labels(&[("a", "1"), ("b", "2"), ("c", "3"), ("copy_a", "1"), ("copy_b", "2")])
        );
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus' own test: md5("baz") modulo 1000 is 976.
        let r = [r#"action = "hashmod"
                   source_labels = ["c"]
                   target_label = "d"
                   modulus = 1000"#];
        assert_eq!(
            run(&r, &[("a", "foo"), ("b", "bar"), ("c", "baz")]).unwrap(),
            labels(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")])
        );
    }

    #[test]
    fn lowercase_and_uppercase() {
        let lower = [r#"action = "lowercase"
                       source_labels = ["a", "b"]
                       separator = "_"
                       target_label = "l""#];
        assert_eq!(
            run(&lower, &[("a", "FoO"), ("b", "ÄB")]).unwrap(),
            labels(&[("a", "FoO"), ("b", "ÄB"), ("l", "foo_äb")])
        );
        let upper = [r#"action = "uppercase"
                       source_labels = ["a"]
                       target_label = "a""#];
        assert_eq!(run(&upper, &[("a", "foo")]).unwrap(), labels(&[("a", "FOO")]));
    }

    #[test]
    fn name_memo_is_per_rule_and_reused_across_samples() {
        let rules: Vec<RelabelRule> =
            ["action = \"labeldrop\"\nregex = \"a\"", "action = \"labelkeep\"\nregex = \"b|c\""]
                .iter()
                .map(|r| rule(r))
                .collect();
        let mut scratch = Scratch::default();
        for _ in 0..3 {
            let mut l = labels(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
            assert_eq!(apply_all(&rules, &mut l, &mut scratch), Verdict::Keep);
            assert_eq!(l, labels(&[("b", "2"), ("c", "3")]));
        }
        assert_eq!(scratch.name_matches[0].len(), 4);
        assert_eq!(scratch.name_matches[1].len(), 3, "a was gone before rule 1 ran");
    }

    #[test]
    fn rules_run_in_order_and_stop_at_drop() {
        let rules = [
            r#"source_labels = ["a"]
               target_label = "b""#,
            r#"action = "drop"
               source_labels = ["b"]
               regex = "gone""#,
            r#"target_label = "never"
               replacement = "x""#,
        ];
        assert!(run(&rules, &[("a", "gone")]).is_none());
        assert_eq!(run(&rules, &[("a", "kept")]).unwrap(), labels(&[("a", "kept"), ("b", "kept"), ("never", "x")]));
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert!(check_err("regex = \"(\"").contains("invalid relabel regex"));
        assert!(check_err("action = \"replace\"").contains("needs target_label"));
        assert!(check_err("action = \"hashmod\"\ntarget_label = \"x\"").contains("modulus"));
        assert!(check_err("action = \"labeldrop\"\nregex = \"a\"\nsource_labels = [\"x\"]").contains("only regex"));
        assert!(check_err("action = \"replace\"\ntarget_label = \"1bad\"").contains("not a label name"));
        assert!(check_err("action = \"labelmap\"\nreplacement = \"-\"").contains("template"));
        assert!(
            check_err("action = \"keepequal\"\ntarget_label = \"x\"\nregex = \"a\"").contains("only source_labels")
        );
        assert!(
            check_err("action = \"lowercase\"\ntarget_label = \"x\"\nreplacement = \"y\"").contains("no replacement")
        );
        assert!(check_err("action = \"shout\"").contains("shout"));
        assert!(check_err("action = \"keep\"\nsource_labels = [\"a\"]\nregexp = \"x\"").contains("regexp"));
    }

    #[test]
    fn label_name_templates() {
        for ok in ["a", "_a1", "$1", "${1}", "x_${name}_y", "$1$2"] {
            assert!(is_label_name_template(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "${}", "$", "${a"] {
            assert!(!is_label_name_template(bad), "{bad}");
        }
    }
}
