//! The terminal screen: a fetch loop on the runtime, the draw/key loop on the caller's thread.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::client::{StatusClient, TopError};
use super::view::{self, SortBy};
use crate::status::Status;

/// How often the report is fetched and the screen redrawn.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// How long the key loop waits for a key before redrawing.
const KEY_POLL: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Shared {
    last: Option<Status>,
    error: Option<String>,
}

/// Runs until `q`, Esc or Ctrl-C. Keys: `r` rate, `d` drops, `n` name.
pub fn run(client: StatusClient, runtime: &tokio::runtime::Handle, sort: SortBy) -> Result<(), TopError> {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let url = client.url().to_string();
    let fetched = shared.clone();
    let fetcher = runtime.spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let answer = client.fetch().await;
            let mut s = fetched.lock();
            match answer {
                Ok(status) => {
                    s.last = Some(status);
                    s.error = None;
                }
                Err(e) => s.error = Some(e.to_string()),
            }
        }
    });
    let mut terminal = ratatui::try_init()?;
    let mut sort = sort;
    let result = (|| -> Result<(), TopError> {
        loop {
            {
                let s = shared.lock();
                terminal.draw(|f| draw(f, &url, &s, sort))?;
            }
            if event::poll(KEY_POLL)?
                && let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
            {
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                    KeyCode::Char('r') => sort = SortBy::Rate,
                    KeyCode::Char('d') => sort = SortBy::Drops,
                    KeyCode::Char('n') => sort = SortBy::Name,
                    _ => {}
                }
            }
        }
    })();
    ratatui::try_restore()?;
    fetcher.abort();
    result
}

fn draw(f: &mut Frame, url: &str, s: &Shared, sort: SortBy) {
    let help = Line::from(vec![
        " q".bold(),
        " quit  ".into(),
        "r".bold(),
        " sort by rate  ".into(),
        "d".bold(),
        " by drops  ".into(),
        "n".bold(),
        " by name  ".into(),
        url.to_string().dim(),
    ]);
    let Some(status) = &s.last else {
        let text = s.error.clone().unwrap_or_else(|| format!("waiting for {url}"));
        let [top, bottom] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(f.area());
        f.render_widget(Paragraph::new(text), top);
        f.render_widget(help, bottom);
        return;
    };
    let tables = view::tables(status, sort);
    let mut constraints = vec![Constraint::Length(1)];
    if s.error.is_some() {
        constraints.push(Constraint::Length(1));
    }
    for t in &tables.tables {
        constraints.push(Constraint::Length(t.rows.len().max(1) as u16 + 3));
    }
    constraints.push(Constraint::Min(0));
    constraints.push(Constraint::Length(1));
    let areas = Layout::vertical(constraints).split(f.area());
    let mut i = 0;
    f.render_widget(Paragraph::new(tables.summary.clone()).bold(), areas[i]);
    i += 1;
    if let Some(e) = &s.error {
        f.render_widget(Paragraph::new(format!("stale: {e}")).red(), areas[i]);
        i += 1;
    }
    for t in &tables.tables {
        let widths: Vec<Constraint> = t
            .header
            .iter()
            .enumerate()
            .map(|(c, h)| {
                let w = t.rows.iter().map(|r| r.get(c).map_or(0, |x| x.chars().count())).max().unwrap_or(0);
                Constraint::Length(w.max(h.len()) as u16)
            })
            .collect();
        let rows: Vec<Row> = if t.rows.is_empty() {
            vec![Row::new(vec!["(none)".to_string()])]
        } else {
            t.rows.iter().map(|r| Row::new(r.clone())).collect()
        };
        let table = Table::new(rows, widths)
            .header(Row::new(t.header.clone()).style(Style::default().add_modifier(Modifier::UNDERLINED)))
            .column_spacing(2)
            .block(Block::bordered().title(t.title));
        f.render_widget(table, areas[i]);
        i += 1;
    }
    f.render_widget(help, areas[areas.len() - 1]);
}
