//! Progress on stderr for the long commands (recover, verify, bench).
//!
//! Drawn only when stderr is a terminal: piped or redirected, a command
//! prints exactly what it printed before, so scripts and logs never see
//! spinner frames or carriage returns.

use indicatif::{ProgressBar, ProgressStyle};
use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

/// A spinner or a bar with a message and the elapsed time, cleared when
/// dropped. Does nothing at all when stderr is not a terminal.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A spinner for one long call whose progress the library does not report.
    pub fn spinner(message: impl Into<Cow<'static, str>>) -> Progress {
        Self::start(
            ProgressBar::new_spinner(),
            "{spinner} {msg} ({elapsed})",
            message,
        )
    }

    /// A bar of `steps` steps; `step` moves it on.
    pub fn bar(steps: u64, message: impl Into<Cow<'static, str>>) -> Progress {
        Self::start(
            ProgressBar::new(steps),
            "{spinner} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            message,
        )
    }

    /// Moves on to the next step and shows its name; the position counts
    /// the steps started.
    pub fn step(&self, message: impl Into<Cow<'static, str>>) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
            bar.set_message(message);
        }
    }

    fn start(bar: ProgressBar, template: &str, message: impl Into<Cow<'static, str>>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let style = ProgressStyle::with_template(template)
            .expect("the templates are valid")
            .progress_chars("=> ");
        let bar = bar.with_style(style).with_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Clear the line, so what the command prints next starts clean.
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
