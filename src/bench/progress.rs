//! The live display of a benchmark run, on standard error: a progress bar (indicatif) on a
//! terminal, a plain line every few seconds otherwise (a log, CI), or nothing. Reads the
//! recorder; must not depend on a protocol or the transport.

use super::report::{Live, Recorder};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// Nothing.
    Quiet,
}

/// The running display; [`Shown::finish`] ends it.
pub struct Shown {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Shown {
    /// Stops the display.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One line of figures.
fn line(live: &Live) -> String {
    let errors = if live.errors.is_empty() {
        "none".to_owned()
    } else {
        live.errors
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let secs = live.elapsed.as_secs_f64().max(1e-9);
    format!(
        "{} done, {} failed | {:.1} MiB/s now, {:.1} overall | ack p99 {} | errors {errors}",
        live.completed,
        live.failed,
        live.mib_s_now,
        live.sent as f64 / 1048576.0 / secs,
        live.ack_p99.map_or("-".to_owned(), |d| format!(
            "{:.0} ms",
            d.as_secs_f64() * 1e3
        )),
    )
}

/// Starts showing `rec`'s figures, out of `total` uploads when known.
#[must_use]
pub fn start(rec: Arc<Recorder>, total: Option<u64>, display: Display) -> Shown {
    let terminal = std::io::stderr().is_terminal();
    match display {
        Display::Quiet => Shown {
            task: None,
            bar: None,
        },
        Display::Auto if terminal => {
            let bar = total.map_or_else(
                indicatif::ProgressBar::new_spinner,
                indicatif::ProgressBar::new,
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    let live = rec.now();
                    bar.set_position(live.completed + live.failed);
                    bar.set_message(line(&live));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
            Shown {
                task: Some(task),
                bar: Some(shown),
            }
        }
        _ => {
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let live = rec.now();
                    eprintln!("[{:>6.1} s] {}", live.elapsed.as_secs_f64(), line(&live));
                }
            });
            Shown {
                task: Some(task),
                bar: None,
            }
        }
    }
}
