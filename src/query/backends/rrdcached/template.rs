//! Paths back into labels: the inverse of the rrdcached sink's `path_template`.
//!
//! The sink renders a path from a template and sanitizes it (every character
//! outside `[A-Za-z0-9._-]` becomes `_`, a label value never spans a `/`, empty
//! and dots-only components become underscores). Reading goes the other way: a
//! file listed by rrdcached is matched against the same template and each
//! `{label}` gets the text it covers. What the sanitizing lost stays lost: a
//! value read back is the *sanitized* value (`sw 1` comes back as `sw_1`), and
//! a path that two different label sets render to (say `{a}-{b}.rrd` and
//! `x-y-z.rrd`) is reported as ambiguous rather than guessed.

use crate::sinks::rrdcached::encode::{Part, PathTemplate, is_safe};

/// Upper bound on matching work per path (backtracking over label lengths):
/// far above any real template, low enough that no path can stall a render.
const MAX_MATCH_STEPS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text as the sink writes it after sanitizing.
    Literal(String),
    Label(String),
}

/// A path template prepared for matching paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pieces: Vec<Piece>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "path template {template:?}: `{{{first}}}{{{second}}}` are adjacent, so a path cannot be split back into the two labels"
    )]
    AdjacentLabels { template: String, first: String, second: String },
}

/// How one path matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inversion {
    /// Not a file of this template.
    NoMatch,
    /// The labels (name, value), in template order, each name once.
    Labels(Vec<(String, String)>),
    /// At least two label sets render to this path; the first found (labels
    /// as long as possible from the left) and the second.
    Ambiguous(Vec<(String, String)>, Vec<(String, String)>),
}

/// Sanitizes literal text the way the sink's `sanitize_path` treats it.
fn sanitize_literal(text: &str) -> String {
    text.chars().map(|c| if c == '/' || is_safe(c) { c } else { '_' }).collect()
}

/// The value a label has in a path: what the sink writes for `value`.
pub fn sanitize_value(value: &str) -> String {
    let s: String = value.chars().map(|c| if is_safe(c) { c } else { '_' }).collect();
    s
}

impl PathPattern {
    pub fn new(template: &PathTemplate, source: &str) -> Result<PathPattern, PatternError> {
        // Split into components so that empty and dots-only literal components
        // are rewritten as the sink rewrites them.
        let mut components: Vec<Vec<Piece>> = vec![Vec::new()];
        for part in template.parts() {
            match part {
                Part::Label(name) => components.last_mut().map_or((), |c| c.push(Piece::Label(name.clone()))),
                Part::Literal(text) => {
                    for (i, chunk) in text.split('/').enumerate() {
                        if i > 0 {
                            components.push(Vec::new());
                        }
                        if !chunk.is_empty() {
                            if let Some(c) = components.last_mut() {
                                c.push(Piece::Literal(sanitize_literal(chunk)));
                            }
                        }
                    }
                }
            }
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let push_literal = |pieces: &mut Vec<Piece>, text: &str| match pieces.last_mut() {
            Some(Piece::Literal(l)) => l.push_str(text),
            _ => pieces.push(Piece::Literal(text.to_string())),
        };
        for (i, component) in components.iter().enumerate() {
            if i > 0 {
                push_literal(&mut pieces, "/");
            }
            let literal_only = component.iter().all(|p| matches!(p, Piece::Literal(_)));
            if literal_only {
                let text: String =
                    component.iter().map(|p| if let Piece::Literal(l) = p { l.as_str() } else { "" }).collect();
                let text = if text.is_empty() || text.bytes().all(|b| b == b'.') {
                    "_".repeat(text.len().max(1))
                } else {
                    text
                };
                push_literal(&mut pieces, &text);
                continue;
            }
            for piece in component {
                match piece {
                    Piece::Literal(l) => push_literal(&mut pieces, l),
                    Piece::Label(name) => {
                        if let Some(Piece::Label(prev)) = pieces.last() {
                            return Err(PatternError::AdjacentLabels {
                                template: source.to_string(),
                                first: prev.clone(),
                                second: name.clone(),
                            });
                        }
                        pieces.push(Piece::Label(name.clone()));
                    }
                }
            }
        }
        Ok(PathPattern { pieces, source: source.to_string() })
    }

    /// The template as configured.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The labels the template names, each once, in order.
    pub fn labels(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.pieces {
            if let Piece::Label(name) = p {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// The directory (relative to rrdcached's base, no leading or trailing
    /// `/`) that holds every file of the template once the labels in `known`
    /// are fixed: the leading components with no other label. Empty: the base.
    pub fn directory(&self, known: &[(&str, String)]) -> String {
        let mut text = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(l) => text.push_str(l),
                Piece::Label(name) => match known.iter().find(|(n, _)| n == name) {
                    Some((_, v)) => text.push_str(v),
                    None => break,
                },
            }
        }
        // Only whole components count: cut after the last `/`.
        match text.rfind('/') {
            Some(i) => text[..i].to_string(),
            None => String::new(),
        }
    }

    /// Matches `path` (relative to the base directory).
    pub fn invert(&self, path: &str) -> Inversion {
        let mut found: Vec<Vec<(String, String)>> = Vec::new();
        let mut captures: Vec<(&str, &str)> = Vec::new();
        let mut budget = MAX_MATCH_STEPS;
        walk(&self.pieces, path, 0, &mut captures, &mut found, &mut budget);
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (None, _) => Inversion::NoMatch,
            (Some(one), None) => Inversion::Labels(one),
            (Some(a), Some(b)) => Inversion::Ambiguous(a, b),
        }
    }
}

/// Backtracking match; stops after two solutions or when `budget` runs out.
fn walk<'p, 's>(
    pieces: &'p [Piece],
    path: &'s str,
    pos: usize,
    captures: &mut Vec<(&'p str, &'s str)>,
    found: &mut Vec<Vec<(String, String)>>,
    budget: &mut usize,
) {
    if found.len() >= 2 || *budget == 0 {
        return;
    }
    *budget -= 1;
    let Some((first, rest)) = pieces.split_first() else {
        if pos == path.len() {
            let mut labels: Vec<(String, String)> = Vec::new();
            for (n, v) in captures.iter() {
                if !labels.iter().any(|(m, _)| m == n) {
                    labels.push((n.to_string(), v.to_string()));
                }
            }
            found.push(labels);
        }
        return;
    };
    let tail = &path[pos..];
    match first {
        Piece::Literal(l) => {
            if tail.starts_with(l.as_str()) {
                walk(rest, path, pos + l.len(), captures, found, budget);
            }
        }
        Piece::Label(name) => {
            // A value is a run of safe characters; try the longest first.
            let run = tail.find(|c: char| !is_safe(c)).unwrap_or(tail.len());
            for len in (1..=run).rev() {
                let value = &tail[..len];
                if captures.iter().any(|(n, v)| *n == name.as_str() && *v != value) {
                    continue;
                }
                captures.push((name, value));
                walk(rest, path, pos + len, captures, found, budget);
                captures.pop();
                if found.len() >= 2 || *budget == 0 {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::sinks::rrdcached::config::MissingLabel;

    fn pattern(t: &str) -> PathPattern {
        PathPattern::new(&PathTemplate::parse(t).unwrap(), t).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// Renders with the sink's own code, then inverts.
    fn round_trip(template: &str, pairs: &[(&str, &str)]) -> Inversion {
        let t = PathTemplate::parse(template).unwrap();
        let l: Labels = pairs.iter().copied().collect();
        let mut path = String::new();
        t.render(&l, MissingLabel::Drop, "unknown", &mut path).unwrap();
        pattern(template).invert(&path)
    }

    #[test]
    fn simple_templates_invert() {
        assert_eq!(
            round_trip("{__name__}/{host}.rrd", &[("__name__", "cpu"), ("host", "web-1")]),
            Inversion::Labels(labels(&[("__name__", "cpu"), ("host", "web-1")]))
        );
        assert_eq!(
            round_trip("{device}/port-{port}.rrd", &[("device", "sw1"), ("port", "ge-0.0.1")]),
            Inversion::Labels(labels(&[("device", "sw1"), ("port", "ge-0.0.1")]))
        );
        assert_eq!(pattern("{host}/load.rrd").invert("h1/cpu.rrd"), Inversion::NoMatch);
        assert_eq!(pattern("{host}/load.rrd").invert("a/b/load.rrd"), Inversion::NoMatch);
        assert_eq!(pattern("{host}.rrd").invert(".rrd"), Inversion::NoMatch);
    }

    #[test]
    fn tricky_values_come_back_sanitized() {
        // The value contains the template's own literal text.
        assert_eq!(round_trip("{host}.rrd", &[("host", "a.rrd")]), Inversion::Labels(labels(&[("host", "a.rrd")])));
        assert_eq!(
            round_trip("{host}/port-{port}.rrd", &[("host", "port-1"), ("port", "x.rrd")]),
            Inversion::Labels(labels(&[("host", "port-1"), ("port", "x.rrd")]))
        );
        // Unsafe characters and slashes: the sanitized value.
        assert_eq!(
            round_trip("{__name__}/{host}.rrd", &[("__name__", "a:b"), ("host", "x/y z")]),
            Inversion::Labels(labels(&[("__name__", "a_b"), ("host", "x_y_z")]))
        );
        assert_eq!(round_trip("d/{host}.rrd", &[("host", "ünï")]), Inversion::Labels(labels(&[("host", "_n_")])));
        // A dots-only value in its own component becomes underscores.
        assert_eq!(round_trip("d/{host}/x.rrd", &[("host", "..")]), Inversion::Labels(labels(&[("host", "__")])));
        // Literals with unsafe characters are sanitized like the sink does.
        assert_eq!(round_trip("my dir/{host}.rrd", &[("host", "h")]), Inversion::Labels(labels(&[("host", "h")])));
        assert_eq!(pattern("my dir/{host}.rrd").invert("my_dir/h.rrd"), Inversion::Labels(labels(&[("host", "h")])));
    }

    #[test]
    fn a_label_named_twice_must_agree() {
        assert_eq!(pattern("{h}/{h}.rrd").invert("a/a.rrd"), Inversion::Labels(labels(&[("h", "a")])));
        assert_eq!(pattern("{h}/{h}.rrd").invert("a/b.rrd"), Inversion::NoMatch);
    }

    #[test]
    fn ambiguous_paths_are_reported() {
        let p = pattern("{a}-{b}.rrd");
        assert_eq!(p.invert("x-y.rrd"), Inversion::Labels(labels(&[("a", "x"), ("b", "y")])));
        match p.invert("x-y-z.rrd") {
            Inversion::Ambiguous(first, second) => {
                assert_eq!(first, labels(&[("a", "x-y"), ("b", "z")]));
                assert_eq!(second, labels(&[("a", "x"), ("b", "y-z")]));
            }
            other => panic!("expected ambiguous, got {other:?}"),
        }
    }

    #[test]
    fn adjacent_labels_cannot_be_inverted() {
        let t = PathTemplate::parse("{a}{b}.rrd").unwrap();
        assert!(matches!(PathPattern::new(&t, "{a}{b}.rrd"), Err(PatternError::AdjacentLabels { .. })));
    }

    #[test]
    fn directory_narrows_the_listing() {
        let p = pattern("{__name__}/{host}.rrd");
        assert_eq!(p.directory(&[("__name__", "cpu".into())]), "cpu");
        assert_eq!(p.directory(&[]), "");
        let q = pattern("rrd/{device}/port-{port}.rrd");
        assert_eq!(q.directory(&[]), "rrd");
        assert_eq!(q.directory(&[("device", "sw1".into())]), "rrd/sw1");
        assert_eq!(q.directory(&[("device", "sw1".into()), ("port", "1".into())]), "rrd/sw1");
        assert_eq!(p.labels(), vec!["__name__", "host"]);
    }

    #[test]
    fn pathological_paths_stay_bounded() {
        let p = pattern("{a}-{b}-{c}-{d}-{e}.rrd");
        let path = format!("{}.rrd", vec!["x"; 200].join("-"));
        // Many splits exist: ambiguous, found quickly.
        assert!(matches!(p.invert(&path), Inversion::Ambiguous(..)));
        let no = format!("{}.rrx", vec!["x"; 200].join("-"));
        assert_eq!(p.invert(&no), Inversion::NoMatch);
    }
}
