//! Long steps, shown to a person while they run (indicatif spinners); pipes, files and
//! tests get the same facts as plain lines.
//!
//! - [`Narrator`]: what `strata up` prints. On a terminal, a setup step gets a spinner
//!   and its output (`.strata/logs/SERVICE/setup.log`) is streamed above it as it is
//!   written, `[SERVICE setup] line`; elsewhere the App Service's events are printed as
//!   they come, "setup still running" every 5 s included.
//! - [`Spinner`]: one step on stderr, for `strata down` waiting for processes to exit.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use strata_appservice::{Event, EventKind};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often a streamed setup log is read.
const TAIL_EVERY: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_millis(100);
/// The widest last-line shown beside a spinner.
const MESSAGE_CHARS: usize = 60;

fn spinner_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", "✓"])
}

/// What `strata up` prints: the App Service's events, and on a terminal the setup steps
/// with their output.
pub struct Narrator {
    /// Some when a person watches stdout.
    bars: Option<MultiProgress>,
    /// Where the services' logs are: `STATE_DIR/logs/SERVICE/setup.log`.
    logs: PathBuf,
    setups: HashMap<String, Tail>,
}

/// A setup step being streamed.
struct Tail {
    bar: ProgressBar,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Narrator {
    pub fn new(state_dir: PathBuf, interactive: bool) -> Narrator {
        Narrator {
            bars: interactive.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout())),
            logs: state_dir.join("logs"),
            setups: HashMap::new(),
        }
    }

    /// Prints a line above the spinners. A closed stdout does not stop the node: the
    /// line is dropped.
    pub fn say(&self, line: &str) {
        say(self.bars.as_ref(), line);
    }

    /// Prints an event (and on a terminal, starts or ends a setup step's spinner).
    pub async fn event(&mut self, e: &Event) {
        let Some(bars) = self.bars.clone() else {
            return self.print_event(e);
        };
        match e.kind {
            EventKind::SetupStarted => {
                self.print_event(e);
                self.end_setup(&e.service).await;
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style(
                    "{spinner} {prefix} setup running {elapsed}  {wide_msg:.dim}",
                ));
                bar.set_prefix(e.service.clone());
                bar.enable_steady_tick(TICK);
                let (stop, stopped) = oneshot::channel();
                let log = self.logs.join(&e.service).join("setup.log");
                let task = tokio::spawn(tail(log, e.service.clone(), bars, bar.clone(), stopped));
                self.setups.insert(e.service.clone(), Tail { bar, stop, task });
            }
            // The spinner counts the time and shows the last line.
            EventKind::SetupProgress if self.setups.contains_key(&e.service) => {}
            EventKind::SetupFinished | EventKind::SetupRetrying | EventKind::SetupFailed => {
                self.end_setup(&e.service).await;
                self.print_event(e);
            }
            _ => self.print_event(e),
        }
    }

    /// Ends every spinner (the node is stopping).
    pub async fn finish(&mut self) {
        let services: Vec<String> = self.setups.keys().cloned().collect();
        for service in services {
            self.end_setup(&service).await;
        }
    }

    /// Prints what is left of the setup step's output, then removes its spinner.
    async fn end_setup(&mut self, service: &str) {
        if let Some(t) = self.setups.remove(service) {
            let _ = t.stop.send(());
            let _ = t.task.await;
            t.bar.finish_and_clear();
            if let Some(bars) = &self.bars {
                bars.remove(&t.bar);
            }
        }
    }

    fn print_event(&self, e: &Event) {
        let who = e.instance.as_deref().unwrap_or(&e.service);
        for (i, line) in e.message.lines().enumerate() {
            if i == 0 {
                self.say(&format!("[{who}] {line}"));
            } else {
                self.say(&format!("[{who}]   {line}"));
            }
        }
    }
}

fn say(bars: Option<&MultiProgress>, line: &str) {
    let print = || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    match bars {
        Some(bars) => bars.suspend(print),
        None => print(),
    }
}

/// Streams the lines of a setup log as they are written, until told to stop (then once
/// more, to the end).
async fn tail(log: PathBuf, service: String, bars: MultiProgress, bar: ProgressBar, mut stop: oneshot::Receiver<()>) {
    let mut offset = 0u64;
    let mut partial = String::new();
    loop {
        let last = tokio::select! {
            _ = &mut stop => true,
            _ = tokio::time::sleep(TAIL_EVERY) => false,
        };
        let mut fresh = Vec::new();
        if let Ok(mut file) = tokio::fs::File::open(&log).await {
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                if let Ok(n) = file.read_to_end(&mut fresh).await {
                    offset += n as u64;
                }
            }
        }
        partial.push_str(&String::from_utf8_lossy(&fresh));
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            show(&bars, &bar, &service, line.trim_end());
        }
        if last {
            if !partial.is_empty() {
                show(&bars, &bar, &service, partial.trim_end());
            }
            return;
        }
    }
}

fn show(bars: &MultiProgress, bar: &ProgressBar, service: &str, line: &str) {
    say(Some(bars), &format!("[{service} setup] {line}"));
    if !line.trim().is_empty() {
        bar.set_message(line.trim().chars().take(MESSAGE_CHARS).collect::<String>());
    }
}

/// One step shown on stderr while it runs, when a person watches stderr.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn new(interactive: bool, what: &str) -> Spinner {
        Spinner(interactive.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(spinner_style("{spinner} {msg} {elapsed}"));
            bar.set_message(what.to_string());
            bar.enable_steady_tick(TICK);
            bar
        }))
    }

    pub fn set(&self, what: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(what);
        }
    }

    /// Ends the spinner, leaving `what` on its line.
    pub fn done(&self, what: String) {
        if let Some(bar) = &self.0 {
            bar.set_style(spinner_style("{spinner} {msg}"));
            bar.finish_with_message(what);
        }
    }

    /// Ends the spinner and clears its line.
    pub fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
