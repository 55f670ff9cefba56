//! The one table: every workload's metrics for chat-server and ncat side by
//! side, their ratio and chat-server's targets, as aligned Markdown. A target
//! relative to another workload of the same run ((i) against (c)) shows its
//! ratio in the target cell.

use std::fmt::Write as _;

use crate::{
    server::Kind,
    workloads::{Measured, Value, Workload},
};

/// Results of one workload: for each server measured, its metrics.
pub struct Result {
    /// The workload.
    pub workload: Workload,
    /// chat-server's metrics, if it was measured.
    pub chat: Option<Measured>,
    /// ncat's metrics, if it was measured.
    pub ncat: Option<Measured>,
}

impl Result {
    /// The metrics of `kind`'s run.
    pub fn of(&mut self, kind: Kind) -> &mut Option<Measured> {
        match kind {
            Kind::ChatServer => &mut self.chat,
            Kind::Ncat => &mut self.ncat,
        }
    }
}

fn get<'a>(m: &'a Option<Measured>, name: &str) -> Option<&'a Value> {
    m.as_ref()?.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "-".into(),
        Some(Value::Text(t)) => t.clone(),
        Some(Value::Num(n, d)) => format!("{n:.d$}", d = *d),
    }
}

fn ratio(chat: Option<&Value>, ncat: Option<&Value>) -> String {
    match (chat.and_then(Value::num), ncat.and_then(Value::num)) {
        (Some(c), Some(n)) if n != 0.0 => format!("{:.2}", c / n),
        (Some(0.0), Some(_)) => "=".into(),
        _ => "-".into(),
    }
}

/// chat-server's metric `name` in the first workload `id` of `results`.
fn reference<'a>(results: &'a [Result], of: Option<(char, &str)>) -> Option<&'a Value> {
    let (id, name) = of?;
    let r = results.iter().find(|r| r.workload.id == id)?;
    get(&r.chat, name)
}

/// Renders the table.
pub fn table(results: &[Result]) -> String {
    let mut rows = vec![[
        "workload".to_string(),
        "metric".into(),
        "chat-server".into(),
        "ncat".into(),
        "chat/ncat".into(),
        "chat-server target".into(),
    ]];
    for r in results {
        let mut names: Vec<&str> = Vec::new();
        for m in [&r.chat, &r.ncat].into_iter().flatten() {
            for (n, _) in m {
                if !names.contains(n) {
                    names.push(n);
                }
            }
        }
        for (k, name) in names.iter().enumerate() {
            let (c, n) = (get(&r.chat, name), get(&r.ncat, name));
            let goal = if r.chat.is_none() {
                String::new()
            } else {
                r.workload
                    .goals
                    .iter()
                    .filter(|g| g.metric() == *name)
                    .map(|g| g.judge(c, n, reference(results, g.reference())))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let label = if k == 0 {
                format!("({}) {}", r.workload.id, r.workload.title)
            } else {
                String::new()
            };
            rows.push([label, name.to_string(), show(c), show(n), ratio(c, n), goal]);
        }
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..6).map(width).collect();
    let mut out = String::new();
    for (k, row) in rows.iter().enumerate() {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            let pad = w - cell.chars().count();
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out.push('\n');
        if k == 0 {
            out.push('|');
            for w in &widths {
                let _ = write!(out, "{}|", "-".repeat(w + 2));
            }
            out.push('\n');
        }
    }
    out
}
