//! Errors found in the inventory, each tied to a file, line and column, so an
//! operator can jump straight to the mistake. Validation collects every error
//! of every file before reporting, so one run shows them all.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number, starting at 1.
    pub column: usize,
}

/// One error in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the inventory directory joined with its relative path.
    pub file: PathBuf,
    /// Where in the file; `None` when the problem is the file itself
    /// (missing, unreadable).
    pub position: Option<Position>,
    /// What is wrong and, after `; expected`, what would be right.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}:{}:{}: error: {}",
                shown_path(&self.file),
                p.line,
                p.column,
                self.message
            ),
            None => write!(f, "{}: error: {}", shown_path(&self.file), self.message),
        }
    }
}

/// A path as printed: a file name cannot smuggle a line break or a terminal
/// control sequence into the report.
fn shown_path(path: &Path) -> String {
    super::text::escaped(&path.display().to_string())
}

/// Every error found in one validation run, in file order then position
/// order. Its `Display` prints one error per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// How many errors were found.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no error was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The errors, in reporting order.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub(crate) fn from_sorted(items: Vec<Diagnostic>) -> Self {
        Self { items }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// The text of one inventory file, kept to turn byte offsets into positions.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

impl SourceFile {
    pub(crate) fn new(path: PathBuf, text: String) -> Self {
        Self { path, text }
    }

    /// The position of a byte offset. Offsets past the end (or inside a
    /// multi-byte character) are clamped rather than trusted.
    pub(crate) fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position { line, column }
    }
}

/// Collects errors while the inventory is read, each tagged with the index of
/// its file so the final report keeps files in reading order.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    files: Vec<SourceFile>,
    found: Vec<(usize, Diagnostic)>,
}

/// Index of a file registered with a [`Collector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId(usize);

impl Collector {
    pub(crate) fn add_file(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(self.files.len() - 1)
    }

    pub(crate) fn text(&self, file: FileId) -> &str {
        self.files.get(file.0).map_or("", |f| f.text.as_str())
    }

    pub(crate) fn path(&self, file: FileId) -> &Path {
        self.files
            .get(file.0)
            .map_or(Path::new(""), |f| f.path.as_path())
    }

    /// Records an error at a byte span of a file.
    pub(crate) fn at(&mut self, file: FileId, span: Range<usize>, message: impl Into<String>) {
        let Some(source) = self.files.get(file.0) else {
            return;
        };
        let diagnostic = Diagnostic {
            file: source.path.clone(),
            position: Some(source.position(span.start)),
            // Messages quote inventory values, which may hold the very
            // characters they are refused for.
            message: super::text::escaped(&message.into()),
        };
        self.found.push((file.0, diagnostic));
    }

    /// Records an error about a file as a whole (it may not even exist).
    pub(crate) fn about_file(&mut self, path: &Path, message: impl Into<String>) {
        // Registering the path as an (empty) file keeps the error in reading
        // order with the others.
        let FileId(index) = self.add_file(SourceFile::new(path.to_path_buf(), String::new()));
        self.found.push((
            index,
            Diagnostic {
                file: path.to_path_buf(),
                position: None,
                message: super::text::escaped(&message.into()),
            },
        ));
    }

    pub(crate) fn count(&self) -> usize {
        self.found.len()
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.found.is_empty()
    }

    pub(crate) fn finish(mut self) -> Diagnostics {
        self.found
            .sort_by(|(fa, a), (fb, b)| (fa, a.position).cmp(&(fb, b.position)));
        self.found.dedup_by(|(_, a), (_, b)| a == b);
        Diagnostics::from_sorted(self.found.into_iter().map(|(_, d)| d).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let f = SourceFile::new("x.toml".into(), "a = 1\nprix = \"€\"\nz".into());
        assert_eq!(f.position(0), Position { line: 1, column: 1 });
        assert_eq!(f.position(6), Position { line: 2, column: 1 });
        // `z` sits after a multi-byte euro sign on the previous line.
        let z = f.text.find('z').unwrap_or(0);
        assert_eq!(f.position(z), Position { line: 3, column: 1 });
        let quote = f.text.rfind('"').unwrap_or(0);
        assert_eq!(
            f.position(quote),
            Position {
                line: 2,
                column: 10
            }
        );
    }
}
