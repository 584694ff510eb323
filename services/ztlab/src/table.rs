//! Plain aligned tables for terminal output.

use std::io::Write as _;

/// A table: a header and rows of cells.
#[derive(Debug)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        Self { header: header.iter().map(|s| (*s).to_owned()).collect(), rows: vec![] }
    }

    /// A table of `header` and `rows`.
    pub fn with_rows<const N: usize>(header: [&str; N], rows: impl IntoIterator<Item = Vec<String>>) -> Self {
        Self { rows: rows.into_iter().collect(), ..Self::new(header) }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = std::io::stdout().lock();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
    }
}
