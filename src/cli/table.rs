//! Plain aligned text tables for terminal output.

use crate::text::escape_for_terminal;

/// Renders rows under a header, columns padded to their widest cell. Cells
/// hold what Contabo and the clusters answered (names, statuses), so each
/// is escaped for the terminal: one cell, one line, no escape sequences.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| escape_for_terminal(cell).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_to_the_widest_cell() {
        let out = super::render(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "alpha".into()],
                vec!["1234".into(), "b".into()],
            ],
        );
        assert_eq!(out, "ID    NAME\n1     alpha\n1234  b\n");
    }

    #[test]
    fn a_cell_cannot_add_a_line_or_an_escape_sequence() {
        let out = super::render(&["NAME"], &[vec!["a\x1b[2J\n+ order x".into()]]);
        assert_eq!(out, "NAME\na\\u{1b}[2J\\n+ order x\n");
    }
}
