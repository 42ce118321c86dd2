//! Series selectors, PromQL style: `name{label="value", other=~"re.*"}`,
//! with `=`, `!=`, `=~` and `!~` matchers (regexes anchored, as in
//! Prometheus). Used by the discovery API's `match[]` and by the aggregate
//! stage's `match`.

use regex::Regex;

use super::{Labels, METRIC_NAME_LABEL};

/// A selector that does not parse: the text, the byte where parsing stopped, why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid selector {selector:?} at byte {at}: {message}")]
pub struct SelectorError {
    pub selector: String,
    pub at: usize,
    pub message: String,
}

/// How one label is compared.
#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    Matches(Regex),
    NotMatches(Regex),
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: Op,
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match &self.op {
            Op::Equal(v) => value == v,
            Op::NotEqual(v) => value != v,
            Op::Matches(re) => re.is_match(value),
            Op::NotMatches(re) => !re.is_match(value),
        }
    }
}

/// A series selector: `name{label="value", other=~"re.*"}`; every matcher must hold.
#[derive(Debug, Clone)]
pub struct Selector {
    matchers: Vec<Matcher>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        SelectorParser { text, pos: 0 }.parse()
    }

    /// Whether a series is selected; a missing label reads as "".
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        self.matchers.iter().all(|m| {
            let value = labels.iter().find(|(n, _)| *n == m.label).map_or("", |(_, v)| *v);
            m.matches(value)
        })
    }

    /// Whether a sample's label set is selected; a missing label reads as "".
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.label).unwrap_or("")))
    }

    /// The metric name every selected series has, when an `=` matcher on
    /// `__name__` fixes it (lets callers index selectors by name).
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers.iter().find_map(|m| match &m.op {
            Op::Equal(v) if m.label == METRIC_NAME_LABEL => Some(v.as_str()),
            _ => None,
        })
    }
}

struct SelectorParser<'a> {
    text: &'a str,
    pos: usize,
}

impl SelectorParser<'_> {
    fn error(&self, message: impl Into<String>) -> SelectorError {
        SelectorError { selector: self.text.to_string(), at: self.pos, message: message.into() }
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn name(&mut self, metric: bool) -> Option<String> {
        self.skip_space();
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':');
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
        let mut chars = self.rest().char_indices();
        match chars.next() {
            Some((_, c)) if ok_first(c) => {}
            _ => return None,
        }
        let len = chars.find(|(_, c)| !ok(*c)).map_or(self.rest().len(), |(i, _)| i);
        let name = self.rest()[..len].to_string();
        self.pos += len;
        Some(name)
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        self.skip_space();
        let quote = match self.rest().chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err(self.error("expected a quoted value")),
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, c)) => out.push(c),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }

    fn parse(mut self) -> Result<Selector, SelectorError> {
        let mut matchers = Vec::new();
        if let Some(name) = self.name(true) {
            matchers.push(Matcher { label: METRIC_NAME_LABEL.into(), op: Op::Equal(name) });
        }
        if self.eat("{") && !self.eat("}") {
            loop {
                let label = self.name(false).ok_or_else(|| self.error("expected a label name"))?;
                let op = if self.eat("=~") {
                    "=~"
                } else if self.eat("!~") {
                    "!~"
                } else if self.eat("!=") {
                    "!="
                } else if self.eat("=") {
                    "="
                } else {
                    return Err(self.error("expected =, !=, =~ or !~"));
                };
                let value = self.string()?;
                let anchored =
                    || crate::model::regex::anchored(&value).map_err(|e| self.error(format!("invalid regex: {e}")));
                let op = match op {
                    "=" => Op::Equal(value.clone()),
                    "!=" => Op::NotEqual(value.clone()),
                    "=~" => Op::Matches(anchored()?),
                    _ => Op::NotMatches(anchored()?),
                };
                matchers.push(Matcher { label, op });
                if self.eat("}") {
                    break;
                }
                if !self.eat(",") {
                    return Err(self.error("expected , or }"));
                }
                if self.eat("}") {
                    break;
                }
            }
        }
        self.skip_space();
        if !self.rest().is_empty() {
            return Err(self.error("unexpected text after the selector"));
        }
        // As Prometheus: a selector must not match every series.
        if !matchers.iter().any(|m| !m.matches("")) {
            return Err(self.error("a selector needs at least one matcher that does not match the empty string"));
        }
        Ok(Selector { matchers })
    }
}
